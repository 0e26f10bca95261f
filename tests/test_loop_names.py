"""The labeling loop's edges (issue 18): names that survive every format, one rule for names,
one list format, checked scores and URL prefixes, Label Studio's local files rooted at the
images folder, --exclude told apart by name, select.json deterministic.

Each test runs the real commands (in-process CLI) on a tag output written by hspnet's own row
writer, with the label and file names a hostile user would pick."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from loop_names_helpers import HOSTILE_LABELS, HOSTILE_NAMES, hostile_probs, make_hostile_tags, truth

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.split_io import read_split_csv
from hspnet_cli.tagsfile.listfile import format_list
from hspnet_cli.taxonomy import load_taxonomy

PROBS = hostile_probs(len(HOSTILE_NAMES), len(HOSTILE_LABELS))
TRUTH = truth(HOSTILE_NAMES, HOSTILE_LABELS, PROBS)


def split_back(runner, source: Path, root: Path, *extra: str) -> dict[str, list[int]]:
    out = root / "split"
    result = invoke(
        runner,
        "split",
        source,
        "-t",
        root / "taxonomy.yaml",
        "-o",
        out,
        "--mode",
        "full",
        "--absent",
        "negative",
        "--overwrite",
        *extra,
    )
    assert result.exit_code == 0, result.output
    labels = read_split_csv(out / "train.csv", load_taxonomy(root / "taxonomy.yaml"))
    return {image: row.tolist() for image, row in zip(labels.images, labels.matrix)}


def export(runner, tags: Path, to: str, out: Path, *extra: str) -> dict:
    result = invoke(runner, "export-labels", tags, "--to", to, "-o", out, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- item 1: one escape/unescape pair, every reader ---------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_split_reads_its_own_tags_with_hostile_labels_and_names(runner, tmp_path: Path, fmt: str) -> None:
    tags = make_hostile_tags(tmp_path, fmt=fmt)
    raw = tags.read_text(encoding="utf-8")
    if fmt == "csv":
        assert "\\x3dcircle" in raw and "\\x2bplus.png" in raw  # escaped on disk (no spreadsheet formulas)
    assert split_back(runner, tags, tmp_path) == TRUTH  # ...and exact after reading


def test_label_studio_config_choices_and_answers_agree_exactly(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(tmp_path)
    out = tmp_path / "ls" / "tasks.json"
    export(runner, tags, "label-studio", out)
    config = ET.parse(tmp_path / "ls" / "tasks.labeling-config.xml").getroot()
    assert [c.get("value") for c in config.iter("Choice")] == HOSTILE_LABELS
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert [t["data"]["hspnet_path"] for t in tasks] == HOSTILE_NAMES
    chosen = {t["data"]["hspnet_path"]: t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks}
    assert all(set(c) <= set(HOSTILE_LABELS) for c in chosen.values())  # every choice is one of the config's
    # A reviewer accepts every prediction: Label Studio's export reads back to the tags exactly.
    exported = [
        {
            "id": i + 1,
            "data": t["data"],
            "annotations": [
                {
                    "id": i + 1,
                    "was_cancelled": False,
                    "result": [
                        {
                            "from_name": "labels",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": chosen[t["data"]["hspnet_path"]]},
                        }
                    ],
                }
            ],
        }
        for i, t in enumerate(tasks)
    ]
    (tmp_path / "export.json").write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    assert split_back(runner, tmp_path / "export.json", tmp_path) == TRUTH


def test_cvat_hf_and_fiftyone_round_trips_are_exact(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(tmp_path)
    # These tools read a backslash in a file name as a folder separator (test_labeltools_real.py
    # shows it): such a name is refused with its row named; the others go through exactly.
    for to, out in (("cvat", "c.xml"), ("hf", "metadata.jsonl"), ("fiftyone", "f")):
        refused = invoke(runner, "export-labels", tags, "--to", to, "-o", tmp_path / out)
        assert refused.exit_code == 2 and "row 5" in refused.output and "holds a backslash" in refused.output
        written = tmp_path / out
        assert not written.is_file() and not (written.is_dir() and any(written.iterdir()))  # nothing written
    plain = [n for n in HOSTILE_NAMES if "\\" not in n]
    (tmp_path / "plain.txt").write_bytes(format_list(plain))
    only = ("--only", tmp_path / "plain.txt")
    want = {n: v for n, v in TRUTH.items() if n in plain}
    export(runner, tags, "cvat", tmp_path / "cvat.xml", *only)
    text = (tmp_path / "cvat.xml").read_text(encoding="utf-8")
    assert 'label="back\\slash"' in text and "\\\\" not in text  # the label, not its escape
    assert split_back(runner, tmp_path / "cvat.xml", tmp_path) == want
    export(runner, tags, "hf", tmp_path / "metadata.jsonl", *only)
    back = split_back(runner, tmp_path / "metadata.jsonl", tmp_path)
    assert {k.removeprefix("images/"): v for k, v in back.items()} == want
    summary = export(runner, tags, "fiftyone", tmp_path / "fo", *only)
    labels = json.loads((tmp_path / "fo" / "labels.json").read_text(encoding="utf-8"))
    assert labels["classes"] == HOSTILE_LABELS
    assert sum(len(v) for v in labels["labels"].values()) == summary["tags"] == sum(v.count(1) for v in want.values())
    assert split_back(runner, tmp_path / "fo", tmp_path) == want


# --- item 2: one list format: '#' and '\' at the start survive ----------------------------------


def test_select_list_with_a_hash_name_feeds_tasks_and_exclude(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(tmp_path)
    n = len(HOSTILE_NAMES)
    out = tmp_path / "next.txt"
    result = invoke(runner, "select", tags, "-n", n, "-o", out, "--strategy", "random", "--to", "label-studio")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "\\#hash.png" in lines and "\\\\lead.png" in lines and len(lines) == n
    tasks = json.loads((tmp_path / "next.tasks.json").read_text(encoding="utf-8"))
    assert sorted(t["data"]["hspnet_path"] for t in tasks) == sorted(HOSTILE_NAMES)  # n paths, n tasks
    again = invoke(runner, "select", tags, "-n", 1, "-o", tmp_path / "again.txt", "--exclude", out)
    assert again.exit_code == 2 and f"all {n} tagged images are labelled already" in again.output
    listed = invoke(
        runner, "export-labels", tags, "--to", "label-studio", "-o", tmp_path / "only.json", "--only", out, "--json"
    )
    assert json.loads(listed.stdout)["rows"] == n


def test_list_format_round_trips_every_name_and_keeps_comments() -> None:
    from hspnet_cli.tagsfile.listfile import format_list, parse_line

    names = [*HOSTILE_NAMES, "\\", "#", "a\\#b.png", "  ", os.fsdecode(b"caf\xe9.png")]
    text = format_list(names).decode("utf-8", "surrogateescape")
    assert [parse_line(line) for line in text.splitlines(keepends=True)] == names
    assert parse_line("# a comment\n") is None and parse_line("   \n") is None and parse_line("\r\n") is None
    with pytest.raises(ValueError):
        format_list(["new\nline.png"])


# --- item 3: one rule for names, at discovery ---------------------------------------------------


def test_names_with_line_breaks_are_left_out_everywhere_and_split_reads_the_rest(
    runner, tmp_path: Path, demo_split
) -> None:
    from collections import Counter

    from hspnet_cli.annotate.queue import build_order
    from hspnet_cli.core.names import CONTROL_KEY, NOT_UTF8_KEY, LeftOut
    from hspnet_cli.sources.discover import discover_images, read_path_list

    root = tmp_path / "imgs"
    root.mkdir()
    src = (demo_split["images"] / "000000.png").read_bytes()
    for name in (b"ok.png", b"new\nline.png", b"tab\there.png", b"caf\xe9.png"):
        (Path(os.fsdecode(os.path.join(os.fsencode(root), name)))).write_bytes(src)
    skipped: Counter = Counter()
    assert sorted(discover_images(root, skipped)) == sorted(["ok.png", os.fsdecode(b"caf\xe9.png")])
    assert skipped[CONTROL_KEY] == 2
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"ok.png\ntab\there.png\n")
    left = LeftOut("test")
    assert list(read_path_list(listing, root, left)) == ["ok.png"] and left.counts[CONTROL_KEY] == 1
    left = LeftOut("annotate")
    assert list(build_order(root, left_out=left)) == ["ok.png"]  # the loop: UTF-8 names only
    assert left.counts == {CONTROL_KEY: 2, NOT_UTF8_KEY: 1}
    # What annotate writes for the folder, split reads: the log holds only names split takes.
    from hspnet_cli.annotate.store import LabelStore
    from hspnet_cli.taxonomy import load_taxonomy as load

    store = LabelStore(tmp_path / "labels.jsonl", load(demo_split["taxonomy"]), root)
    label = store.taxonomy.label_names[0]
    for image in build_order(root):
        store.record("answer", image, label=label)
    store.close()
    result = invoke(runner, "split", tmp_path / "labels.jsonl", "-t", demo_split["taxonomy"], "-o", tmp_path / "s")
    assert result.exit_code == 0, result.output


# --- item 10: tracebacks -> one-line errors -----------------------------------------------------


@pytest.mark.parametrize(
    "result, message",
    [(7, '"result" must be a list'), ({"a": 1}, '"result" must be a list'), ("x", '"result" must be a list')],
)
def test_label_studio_result_of_the_wrong_type_is_one_line(tmp_path: Path, result, message: str) -> None:
    from hspnet_cli.data.readers import read_annotations

    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": {"image": "a.png"}, "annotations": [{"result": result}]}]))
    (tmp_path / "t.yaml").write_text("name: t\nlabels: [cat, dog]\ngroups: {g: [cat, dog]}\n")
    with pytest.raises(UserError) as info:
        read_annotations(path, load_taxonomy(tmp_path / "t.yaml"))
    assert message in str(info.value) and "export.json:1" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("classes", [{"a": 1}, 3, "cat", [1, 2]])
def test_fiftyone_classes_of_the_wrong_type_are_one_line(tmp_path: Path, classes) -> None:
    from hspnet_cli.data.readers import read_annotations

    folder = tmp_path / "fo"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"classes": classes, "labels": {"a": 0}}))
    (folder / "data.json").write_text(json.dumps({"a.png": "a.png"}))
    (tmp_path / "t.yaml").write_text("name: t\nlabels: [cat, dog]\ngroups: {g: [cat, dog]}\n")
    with pytest.raises(UserError) as info:
        read_annotations(folder, load_taxonomy(tmp_path / "t.yaml"))
    assert '"classes" must be a list of class names' in str(info.value)


# --- item 11: scores and --url-prefix -----------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1.5", "-0.1"])
def test_export_labels_refuses_scores_that_are_not_probabilities(runner, tmp_path: Path, bad: str) -> None:
    tags = make_hostile_tags(
        tmp_path,
        names=["a.png", "b.png"],
        labels=["cat", "dog"],
        groups={"g": ["cat", "dog"]},
        probs=np.array([[0.9, 0.1], [0.8, 0.7]], np.float32),
    )
    lines = tags.read_text().splitlines()
    lines[2] = lines[2].replace("0.8", bad, 1)
    tags.write_text("\n".join(lines) + "\n")
    result = invoke(runner, "export-labels", tags, "--to", "label-studio", "-o", tmp_path / "t.json")
    assert result.exit_code == 2 and "row 2" in result.output and "not a probability" in result.output
    assert not (tmp_path / "t.json").exists()


def test_url_prefixes_are_checked_and_http_is_encoded_in_any_case(runner, tmp_path: Path) -> None:
    from hspnet_cli.data.readers.labelstudio import path_from_ref

    tags = make_hostile_tags(
        tmp_path,
        names=["#hash.png", "a b%.png"],
        labels=["cat", "dog"],
        groups={"g": ["cat", "dog"]},
        probs=np.array([[0.9, 0.1], [0.8, 0.7]], np.float32),
    )
    out = tmp_path / "t.json"
    for prefix in ("HTTPS://cdn.example.com/p/", "Http://h/p/", "https://h/p/", "S3://bucket/p/", "gs://b/p/"):
        export(runner, tags, "label-studio", out, "--overwrite", "--url-prefix", prefix)
        refs = [t["data"]["image"] for t in json.loads(out.read_text(encoding="utf-8"))]
        if prefix.lower().startswith("http"):  # a '#' never becomes a fragment, whatever the case
            assert refs == [prefix + "%23hash.png", prefix + "a%20b%25.png"], prefix
        else:  # object keys verbatim: the tools never decode them
            assert refs == [prefix + "#hash.png", prefix + "a b%.png"], prefix
        assert [path_from_ref(r, "t") for r in refs] == ["p/#hash.png", "p/a b%.png"]  # read back exactly
    for prefix in (
        "javascript:alert(1)//",
        "file:///etc/",
        "../images/",
        "JAVASCRIPT://x/",
        "ftp://h/p/",
        "https://h/../../p/",
        "https://h/p/?x=",
        "https:///p/",
        "data:text/html,",
    ):
        result = invoke(
            runner, "export-labels", tags, "--to", "label-studio", "-o", tmp_path / "x.json", "--url-prefix", prefix
        )
        assert result.exit_code == 2 and "--url-prefix" in result.output, prefix


# --- item 12: Label Studio local files rooted at the images folder ------------------------------


def test_label_studio_references_default_to_the_images_folder(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(
        tmp_path,
        names=["a/#1.png"],
        labels=["cat", "dog"],
        groups={"g": ["cat", "dog"]},
        probs=np.array([[0.9, 0.1]], np.float32),
    )
    summary = export(runner, tags, "label-studio", tmp_path / "t.json")
    task = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))[0]
    # The images folder's parent: the narrowest root Label Studio takes with a Local Storage for
    # the images folder (it refuses the root itself; test_labeltools_real.py runs the real server).
    assert task["data"]["image"] == "/data/local-files/?d=images/a/%231.png"
    root = tmp_path.absolute().as_posix()
    assert summary["image_refs"] == f"local-files under {root}"
    assert summary["serve"].endswith(f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}")
    assert summary["local_storage"] == (tmp_path / "images").absolute().as_posix()


# --- item 13: --exclude by name, header-only tags, deterministic select.json ---------------------


def test_exclude_list_whose_first_path_looks_like_another_format(runner, tmp_path: Path) -> None:
    names = ["a,b.png", "<x>.png", "{y}.png", "[z].png", "plain.png"]
    tags = make_hostile_tags(
        tmp_path,
        names=names,
        labels=["cat", "dog"],
        groups={"g": ["cat", "dog"]},
        probs=np.full((5, 2), 0.7, np.float32),
    )
    for first in names[:4]:
        labelled = tmp_path / "labelled.txt"
        labelled.write_text(f"{first}\nplain.png\n", encoding="utf-8")
        result = invoke(
            runner,
            "select",
            tags,
            "-n",
            5,
            "-o",
            tmp_path / "n.txt",
            "--strategy",
            "random",
            "--exclude",
            labelled,
            "--overwrite",
            "--json",
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["exclusions"][0]["kind"] == "list" and report["exclusions"][0]["matched"] == 2, first


def test_header_only_tags_say_no_tagged_images(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(
        tmp_path, names=[], labels=["cat", "dog"], groups={"g": ["cat", "dog"]}, probs=np.zeros((0, 2), np.float32)
    )
    result = invoke(runner, "select", tags, "-n", 2, "-o", tmp_path / "n.txt")
    assert result.exit_code == 2 and "no tagged images" in result.output and "labelled already" not in result.output


def test_select_outputs_are_byte_identical_across_runs(runner, tmp_path: Path) -> None:
    tags = make_hostile_tags(tmp_path)
    files = {}
    out = tmp_path / "sel" / "next.txt"
    out.parent.mkdir()
    for run in (1, 2):
        result = invoke(runner, "select", tags, "-n", 5, "-o", out, "--strategy", "diversity", "--seed", 3)
        assert result.exit_code == 0, result.output
        files[run] = {p.name: p.read_bytes() for p in out.parent.iterdir() if p.name != "next.timings.json"}
        assert "seconds" in json.loads((out.parent / "next.timings.json").read_text())
    assert files[1] == files[2] and set(files[1]) == {"next.txt", "next.picks.csv", "next.select.json"}
