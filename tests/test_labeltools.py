"""export-labels writes every tool's import format; split reads what the tools give back.

Round trips are label-exact: tags -> a tool's file -> ``hspnet split --mode full`` gives back
exactly the tags as positives and every other label as negative (or unknown, for single
positives). The real tools check the files in test_labeltools_real.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from labeltools_helpers import LABELS, NAMES, expected_matrix, make_tags

from hspnet_cli.data.readers import detect_format, read_annotations
from hspnet_cli.data.split_io import read_split_csv
from hspnet_cli.taxonomy import load_taxonomy

PROBS = np.random.default_rng(0).random((len(NAMES), len(LABELS))).round(4)


def split_full(runner, source: Path, root: Path, *extra: str) -> tuple[list[str], np.ndarray]:
    out = root / "split"
    result = invoke(
        runner, "split", source, "-t", root / "taxonomy.yaml", "-o", out, "--mode", "full", "--overwrite", *extra
    )
    assert result.exit_code == 0, result.output
    labels = read_split_csv(out / "train.csv", load_taxonomy(root / "taxonomy.yaml"))
    return labels.images, labels.matrix


def by_name(images: list[str], matrix: np.ndarray) -> dict[str, list[int]]:
    return {image: row.tolist() for image, row in zip(images, matrix)}


def truth() -> dict[str, list[int]]:
    return by_name(NAMES, expected_matrix(PROBS))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_hspnet_tags_read_back_as_full_labels(runner, tmp_path: Path, fmt: str) -> None:
    tags = make_tags(tmp_path, fmt, PROBS)
    assert detect_format(tags) == "tags"
    assert by_name(*split_full(runner, tags, tmp_path)) == truth()


def test_cvat_round_trip_is_label_exact_with_sizes_and_scores(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "csv", PROBS)
    out = tmp_path / "cvat" / "annotations.xml"
    result = invoke(runner, "export-labels", tags, "--to", "cvat", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == len(NAMES) and summary["tags"] == int((PROBS >= 0.5).sum())
    text = out.read_text(encoding="utf-8")
    assert 'name="a/dog,2.png" width="21" height="11"' in text  # header-read size
    assert 'name="b/q\'uote.png"' in text and "<name>tree</name>" in text
    top = int(np.argmax(PROBS[0]))
    assert f'<tag label="{LABELS[top]}" source="auto">\n      <attribute name="score">{PROBS[0, top]:.4f}' in text
    assert detect_format(out) == "cvat"
    assert by_name(*split_full(runner, out, tmp_path)) == truth()


def test_hf_metadata_round_trip_and_file_names_relative_to_it(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "jsonl", PROBS)
    out = tmp_path / "metadata.jsonl"  # above the images folder
    assert invoke(runner, "export-labels", tags, "--to", "hf", "-o", out).exit_code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["file_name"] for r in rows] == [f"images/{n}" for n in NAMES]
    assert rows[0]["labels"] == [LABELS[i] for i in np.argsort(-PROBS[0]) if PROBS[0, i] >= 0.5]
    assert detect_format(out) == "hf"
    images, matrix = split_full(runner, out, tmp_path)
    assert by_name([i.removeprefix("images/") for i in images], matrix) == truth()
    # imagefolder looks images up under the metadata file's folder: elsewhere is refused.
    bad = invoke(runner, "export-labels", tags, "--to", "hf", "-o", tmp_path / "elsewhere" / "x" / "metadata.jsonl")
    assert bad.exit_code == 2 and "imagefolder finds images under the metadata file's folder" in bad.output


def answered_export(tasks: list[dict], answers: dict[str, list[str] | None]) -> list[dict]:
    """What Label Studio's JSON export holds after a reviewer answered some tasks (the layout of
    a real 1.23 export; test_labeltools_real.py produces the real one)."""
    out = []
    for i, task in enumerate(tasks):
        chosen = answers.get(task["data"]["hspnet_path"])
        annotations = (
            []
            if chosen is None
            else [
                {
                    "id": i + 1,
                    "completed_by": 1,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "updated_at": "2026-12-01T22:00:00Z",
                    "result": [
                        {
                            "id": "r1",
                            "from_name": "labels",
                            "to_name": "image",
                            "type": "choices",
                            "origin": "manual",
                            "value": {"choices": chosen},
                        }
                    ],
                }
            ]
        )
        out.append(
            {
                "id": i + 1,
                "data": task["data"],
                "annotations": annotations,
                "drafts": [],
                "predictions": [1],
                "meta": {},
            }
        )
    return out


def test_label_studio_tasks_config_and_reviewed_export(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "csv", PROBS)
    out = tmp_path / "ls" / "tasks.json"
    result = invoke(runner, "export-labels", tags, "--to", "label-studio", "-o", out, "--local-files-root", tmp_path)
    assert result.exit_code == 0, result.output
    tasks = json.loads(out.read_text(encoding="utf-8"))
    config = (tmp_path / "ls" / "tasks.labeling-config.xml").read_text(encoding="utf-8")
    assert '<Choices name="labels" toName="image" choice="multiple"' in config
    assert all(f'<Choice value="{n}"' in config for n in LABELS)
    first = tasks[0]
    assert first["data"]["image"] == "/data/local-files/?d=images/a/cat%201.png"
    assert first["data"]["hspnet_path"] == "a/cat 1.png"
    pred = first["predictions"][0]
    chosen = [LABELS[i] for i in np.argsort(-PROBS[0]) if PROBS[0, i] >= 0.5]
    assert pred["result"][0]["value"]["choices"] == chosen
    assert pred["result"][0]["meta"]["scores"] == {n: float(PROBS[0, LABELS.index(n)]) for n in chosen}
    assert pred["model_version"] == "test scorer @0123456789ab"
    assert pred["score"] == min(PROBS[0, LABELS.index(n)] for n in chosen)
    # A reviewer accepts the first three, corrects the fourth, leaves the last two alone.
    answers = {
        t["data"]["hspnet_path"]: t["predictions"][0]["result"][0]["value"]["choices"]
        for t in tasks[:3]
        if "predictions" in t
    }
    answers[NAMES[3]] = ["tree", "sofa"]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(answered_export(tasks, answers), indent=2), encoding="utf-8")
    assert detect_format(export) == "labelstudio"
    images, matrix = split_full(runner, export, tmp_path)
    want = {n: [1 if label in answers[n] else -1 for label in LABELS] for n in answers}
    assert by_name(images, matrix) == want  # unanswered tasks: left out


def test_json_min_export_and_one_positive_per_image_is_single_positive(runner, tmp_path: Path) -> None:
    make_tags(tmp_path, "csv", PROBS)
    export = tmp_path / "min.json"
    rows = [
        {
            "image": "/data/local-files/?d=images/c.png",
            "hspnet_path": "c.png",
            "id": 1,
            "labels": "dog",
            "annotator": 1,
            "annotation_id": 1,
            "created_at": "x",
            "updated_at": "x",
            "lead_time": 1.5,
        },
        {
            "image": "s3://bucket/pics/a/cat%201.png",
            "id": 2,
            "labels": {"choices": ["cat"]},
            "annotator": 1,
            "annotation_id": 2,
            "created_at": "x",
            "updated_at": "x",
            "lead_time": 2.0,
        },
        {"image": "/data/local-files/?d=images/d/e/f.png", "hspnet_path": "d/e/f.png", "id": 3},
    ]
    export.write_text(json.dumps(rows), encoding="utf-8")
    images, matrix = split_full(runner, export, tmp_path)
    # One positive each: single positives, every other label unknown (0), never negative.
    assert by_name(images, matrix) == {"c.png": [0, 1, 0, 0, 0], "pics/a/cat%201.png": [1, 0, 0, 0, 0]}
    labels, report = read_annotations(export, load_taxonomy(tmp_path / "taxonomy.yaml"), absent="negative")
    assert labels.matrix.tolist() == [[-1, 1, -1, -1, -1], [1, -1, -1, -1, -1]]
    assert any("1 task(s) without an annotation left out as unlabelled" in n for n in report.notes)


def test_absent_unknown_makes_any_positives_only_file_partial(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "csv", PROBS)
    images, matrix = split_full(runner, tags, tmp_path, "--absent", "unknown")
    assert by_name(images, matrix) == {n: [max(v, 0) for v in row] for n, row in truth().items()}
    assert "absent: unknown" in (tmp_path / "split" / "split.yaml").read_text()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_fiftyone_layout_round_trip(runner, tmp_path: Path, fmt: str) -> None:
    tags = make_tags(tmp_path, fmt, PROBS)
    out = tmp_path / "fo"
    assert invoke(runner, "export-labels", tags, "--to", "fiftyone", "-o", out).exit_code == 0
    doc = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert doc["classes"] == LABELS
    media = json.loads((out / "data.json").read_text(encoding="utf-8"))
    assert media[NAMES[0]] == (tmp_path / "images" / NAMES[0]).as_posix()
    assert sorted(doc["labels"]) == sorted(n.rsplit(".", 1)[0] for n in NAMES)  # ids without extension
    first = doc["labels"]["a/cat 1"]
    # jsonl carries the tagger's float32 probabilities exactly; csv their 4 significant digits
    shown = (lambda p: float(f"{np.float32(p):.9g}")) if fmt == "jsonl" else float
    assert {LABELS[c["label"]]: c["confidence"] for c in first} == {
        LABELS[i]: shown(PROBS[0, i]) for i in range(len(LABELS)) if PROBS[0, i] >= 0.5
    }
    assert detect_format(out) == "fiftyone"
    assert by_name(*split_full(runner, out, tmp_path)) == truth()
    assert by_name(*split_full(runner, out / "labels.json", tmp_path)) == truth()


def test_image_references(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "csv", PROBS)
    out = tmp_path / "t.json"
    cases = {
        ("--url-prefix", "https://cdn.example.com/pics/"): "https://cdn.example.com/pics/a/cat%201.png",
        ("--url-prefix", "s3://bucket/pics/"): "s3://bucket/pics/a/cat 1.png",
        ("--absolute",): (tmp_path / "images" / "a" / "cat 1.png").as_posix(),
    }
    for args, ref in cases.items():
        result = invoke(runner, "export-labels", tags, "--to", "label-studio", "-o", out, "--overwrite", *args)
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text(encoding="utf-8"))[0]["data"]["image"] == ref
    both = invoke(
        runner,
        "export-labels",
        tags,
        "--to",
        "cvat",
        "-o",
        tmp_path / "a.xml",
        "--absolute",
        "--url-prefix",
        "https://x/",
    )
    assert both.exit_code == 2 and "give one" in both.output
    again = invoke(runner, "export-labels", tags, "--to", "label-studio", "-o", out)
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("cut.json", '[\n{"data": {"image": "a.png"}, "annotations": []},\n{"data": {"ima', "cut.json:3:"),
        (
            "bad.json",
            '[\n{"data": {"image": "a.png"}, "annotations": [{"result": [{"type": "choices", '
            '"value": {"choices": [3]}}]}]}\n]',
            "bad.json:2: expected chosen labels",
        ),
        ("noimage.json", '[{"data": {"text": "hi"}, "annotations": []}]', "noimage.json:1: the task has no image"),
        (
            "cut.xml",
            '<?xml version="1.0"?>\n<annotations>\n  <image id="0" name="a.png">\n    <tag label="cat">\n',
            "cut.xml:5:",
        ),
        (
            "notag.xml",
            '<annotations>\n<image id="0" name="a.png">\n<tag/>\n</image></annotations>',
            "notag.xml:3: <tag> without a label",
        ),
        (
            "metadata.jsonl",
            '{"file_name": "a.png", "labels": ["cat"]}\n{"file_name": "b.png", "labels": [1]}\n',
            'metadata.jsonl:2: "labels" must be a list of label names',
        ),
    ],
)
def test_bad_files_are_named_by_file_and_line(runner, tmp_path: Path, name: str, text: str, message: str) -> None:
    make_tags(tmp_path, "csv", PROBS)
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke(runner, "split", tmp_path / name, "-t", tmp_path / "taxonomy.yaml", "-o", tmp_path / "s")
    assert result.exit_code == 2
    assert message in result.output.replace("\n", ""), result.output
    assert "Traceback" not in result.output


def test_fiftyone_refuses_two_images_with_one_id_and_writes_nothing(runner, tmp_path: Path) -> None:
    tags = make_tags(tmp_path, "csv", PROBS[:2], names=["x.png", "x.jpg"])
    result = invoke(runner, "export-labels", tags, "--to", "fiftyone", "-o", tmp_path / "fo")
    assert result.exit_code == 2 and "FiftyOne ids drop the extension" in result.output
    assert not any((tmp_path / "fo").glob("*.json"))  # atomic: nothing half-written


def test_label_studio_csv_export_with_any_choices_name(runner, tmp_path: Path) -> None:
    """The CSV export a user's own project gives (Choices named 'choice'; it used to be taken for
    a wide CSV and fail on "column 'choice' holds 'dot'")."""
    make_tags(tmp_path, "csv", PROBS)
    export = tmp_path / "project-1.csv"
    export.write_text(
        "image,id,choice,annotator,annotation_id,created_at,updated_at,lead_time\n"
        "/data/local-files/?d=images/c.png,1,cat,1,7,2026-12-01,2026-12-01,3.2\n"
        '/data/local-files/?d=images/d/e/f.png,2,"{""choices"": [""dog"", ""tree""]}",1,8,x,x,1\n'
        "/data/local-files/?d=images/a/cat%201.png,3,,,,,,\n",
        encoding="utf-8",
    )
    assert detect_format(export) == "labelstudio"
    images, matrix = split_full(runner, export, tmp_path)
    assert by_name(images, matrix) == {"images/c.png": [1, -1, -1, -1, -1], "images/d/e/f.png": [-1, 1, -1, -1, 1]}


def test_label_studio_export_is_read_in_chunks_with_exact_lines(tmp_path: Path, monkeypatch) -> None:
    from hspnet_cli.core.errors import UserError
    from hspnet_cli.data.readers import labelstudio

    monkeypatch.setattr(labelstudio._JsonStream, "CHUNK", 7)  # every task crosses chunk ends
    tasks = [
        {"data": {"image": f"ü/{i}.png", "pad": "x" * (i % 23)}, "annotations": [{"result": []}]} for i in range(150)
    ]
    text = json.dumps(tasks, indent=2, ensure_ascii=False)
    path = tmp_path / "export.json"
    path.write_text(text, encoding="utf-8")
    got = list(labelstudio.iter_json_array(path))
    assert [obj for _, obj in got] == tasks
    lines = text.splitlines()
    assert all(lines[line - 1] == "  {" for line, _ in got)
    path.write_text(text[:-30], encoding="utf-8")
    with pytest.raises(UserError, match=rf"export.json:{len(lines) - 4}:\d+: not valid JSON"):
        list(labelstudio.iter_json_array(path))
