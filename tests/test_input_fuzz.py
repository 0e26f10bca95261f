"""Malformed input never escapes the error path (issue 11, item 6): every field each reader reads
is type-checked and named by file:line (JSON: line and JSON path), and mutated files of every
format and every YAML hspnet reads give a result or a UserError, never another exception."""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_readers import voc_xml

from hspnet_cli.core.errors import UserError
from hspnet_cli.data import read_annotations
from hspnet_cli.taxonomy import load_taxonomy

VOC = load_taxonomy("voc")
COCO_DOC = {
    "info": {"year": 2014},
    "images": [{"id": 9, "file_name": "a.jpg"}, {"id": 25, "file_name": "b.jpg"}],
    "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    "annotations": [{"id": 1, "image_id": 9, "category_id": 1}, {"id": 2, "image_id": 25, "category_id": 3}],
}


def _coco(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def _line_of(path: Path, needle: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line][nth]


@pytest.mark.parametrize(
    "where, value, needle, nth, expected",
    [
        (("annotations", 1, "image_id"), [25, 26], '"image_id"', 1, "annotations[1].image_id is a list ([25, 26])"),
        (("annotations", 0, "category_id"), {"id": 1}, '"category_id"', 0, "annotations[0].category_id is an object"),
        (("annotations", 1, "image_id"), "25", '"image_id"', 1, 'annotations[1].image_id is text ("25")'),
        (("images", 1, "id"), "25", '"id": "25"', 0, 'images[1].id is text ("25"); it must be a whole number'),
        (("images", 0, "id"), True, '"id": true', 0, "images[0].id is true/false (true)"),
        (("images", 1, "file_name"), 7, '"file_name": 7', 0, "images[1].file_name is a number (7); it must be text"),
        (("images", 0, "file_name"), None, '"file_name": null', 0, "images[0].file_name is null"),
        (("categories", 1, "name"), ["car"], '"name"', 1, "categories[1].name is a list"),
        (("categories", 0), "person", '"categories"', 0, "categories[0] is text"),
        (("annotations", 0), [9, 1], '"annotations"', 0, "annotations[0] is a list"),
    ],
)
def test_coco_field_types_are_named_by_line_and_json_path(
    tmp_path: Path, where: tuple, value: Any, needle: str, nth: int, expected: str
) -> None:
    doc = copy.deepcopy(COCO_DOC)
    target = doc
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    path = _coco(tmp_path, doc)
    with pytest.raises(UserError) as info:
        read_annotations(path, load_taxonomy("coco"))
    line = _line_of(path, needle, nth)
    if where[-1] == 0:  # a whole entry replaced: its value starts on the line after the list opens
        line += 1
    assert str(info.value).startswith(f"{path}:{line}: {expected}"), str(info.value)


def test_coco_missing_lists_and_odd_documents(tmp_path: Path) -> None:
    coco = load_taxonomy("coco")
    for key in ("categories", "images", "annotations"):
        doc = {k: v for k, v in COCO_DOC.items() if k != key}
        with pytest.raises(UserError, match=rf"no '{key}' list \(the key is missing\)"):
            read_annotations(_coco(tmp_path, doc), coco)
    doc = {**COCO_DOC, "images": {"id": 9}}
    with pytest.raises(UserError, match=r"no 'images' list \(it is an object"):
        read_annotations(_coco(tmp_path, doc), coco)
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested too deeply"):
        read_annotations(path, coco)
    path.write_text('{"images": [{"id": ' + "9" * 5000 + ', "file_name": "a.jpg"}]}')
    with pytest.raises(UserError, match=f"^{path}: not valid JSON"):
        read_annotations(path, coco)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('["a.jpg", ["dog"]]', "the line is a list"),
        ('{"image": 5, "labels": ["dog"]}', '"image" is a number (5); it must be the image path as text'),
        ('{"labels": ["dog"]}', '"image" is missing'),
        ('{"image": "a.jpg", "labels": "dog;cat"}', '"labels" must be a list of label names'),
        ('{"image": "a.jpg", "labels": ["dog", 3]}', "it holds a number (3)"),
        ('{"image": "a.jpg", "labels": ["dog", null]}', "it holds null"),
        ('{"image": "a.jpg", "labels": ["cat,dog"]}', "separated by ','"),
        ("[" * 50_000, "nested too deeply"),
    ],
)
def test_jsonl_field_types(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"image": "ok.jpg", "labels": ["dog"]}\n' + line + "\n")
    with pytest.raises(UserError) as info:
        read_annotations(path, VOC)
    assert str(info.value).startswith(f"{path}:2") and expected in str(info.value), str(info.value)


def test_voc_xml_bombs_and_external_entities_are_one_line(tmp_path: Path) -> None:
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    (voc / "Annotations" / "a.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">{lol}]><annotation><filename>&l9;</filename></annotation>'
    )
    with pytest.raises(UserError, match="malformed XML"):
        read_annotations(voc, VOC)
    secret = tmp_path / "secret.txt"
    secret.write_text("dog")
    (voc / "Annotations" / "a.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY s SYSTEM "file://{secret}">]>'
        "<annotation><filename>a.jpg</filename><object><name>&s;</name></object></annotation>"
    )
    with pytest.raises(UserError, match="malformed XML"):
        read_annotations(voc, VOC)


# --- fuzzing: mutate valid files, only results or UserErrors may come out ----------------------------


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = rng.choice(
                [
                    b",",
                    b";",
                    b'"',
                    b"\n",
                    b"\r",
                    b"\x00",
                    b"{",
                    b"[",
                    b"]",
                    b"}",
                    b":",
                    b"\\",
                    b"../",
                    b"\xff",
                    b"-1",
                    b"<",
                    b">",
                    b"&",
                    b"1e999",
                    b"\t",
                ]
            )
        elif kind == 2:
            del data[at : at + rng.randint(1, 8)]
        elif kind == 3:
            data = data[:at]
        else:
            data[at:at] = data[max(0, at - 20) : at]
    return bytes(data)


_ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    float("inf"),
    "",
    "x",
    "../../etc/passwd",
    [],
    [1, "a"],
    {},
    {"a": 1},
    [[[[]]]],
    "C:\\x",
    "a;b",
    "dog,cat",
]


def _mutate_json(value: Any, rng: random.Random) -> Any:
    """Replace, drop or retype one random node of a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: _mutate_json(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return value[:i] + [_mutate_json(value[i], rng)] + value[i + 1 :]
    return copy.deepcopy(rng.choice(_ODD_VALUES))


def _valid_files(tmp_path: Path) -> dict[str, tuple[Path, Callable[[Path], Any]]]:
    zeros = ",".join("0" for _ in VOC.label_names)
    texts = {
        "a.csv": "image,labels\na.jpg,dog;cat\nb.jpg,\nc.jpg,bird\n",
        "w.csv": "image,dog,cat,bird\na.jpg,1,0,\nb.jpg,0,-1,1\n",
        "a.jsonl": '{"image": "a.jpg", "labels": ["dog", "cat"]}\n{"image": "b.jpg", "labels": []}\n',
        "a.txt": "a.jpg,11 7\nb.jpg,2\n",
        "s.csv": "# hspnet-split v1 encoding: 1=positive 0=unknown -1=negative\nimage,"
        + ",".join(VOC.label_names)
        + f"\na.jpg,{zeros}\nb.jpg,{zeros.replace('0', '1', 1)}\n",
        "instances.json": json.dumps(COCO_DOC, indent=1),
    }
    files = {}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
        fmt = {"w.csv": "wide", "s.csv": "split"}.get(name)
        files[name] = (
            tmp_path / name,
            lambda p, fmt=fmt: read_annotations(p, VOC if "json" not in p.name else load_taxonomy("coco"), fmt=fmt),
        )
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", [("dog", 0), ("cat", 1)]))
    files["voc"] = (voc / "Annotations" / "a.xml", lambda p: read_annotations(voc, VOC))
    tax = tmp_path / "t.yaml"
    tax.write_text(
        "name: t\nlabels:\n- cat\n- {name: dog, prompt: a dog, wordnet: dog.n.01}\n"
        "groups:\n  animals: [cat, dog]\ngroup_features: {source: x, vectors: {animals: [0.1, 0.2]}}\n"
    )
    files["taxonomy"] = (tax, load_taxonomy)
    tax_json = tmp_path / "t.json"
    tax_json.write_text(json.dumps({"labels": ["cat", "dog"], "groups": {"a": ["cat"], "b": ["dog"]}}, indent=1))
    files["taxonomy json"] = (tax_json, load_taxonomy)
    from hspnet_cli.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text("preset: official\nmodel:\n  n_ctx: 8\n  method: hcp\ntrain:\n  lr: 0.001\n  epochs: 3\n")
    files["config"] = (config, load_config)
    return files


@pytest.mark.parametrize(
    "name",
    ["a.csv", "w.csv", "a.jsonl", "a.txt", "s.csv", "instances.json", "voc", "taxonomy", "taxonomy json", "config"],
)
def test_mutated_files_give_a_result_or_a_user_error(tmp_path: Path, name: str) -> None:
    path, read = _valid_files(tmp_path)[name]
    read(path)  # the unmutated file is valid
    original = path.read_bytes()
    rng = random.Random(f"hspnet-fuzz-{name}")
    outcomes = {"ok": 0, "refused": 0}
    for trial in range(300):
        if path.suffix == ".json" and trial % 2:
            data = json.dumps(_mutate_json(json.loads(original), rng), indent=1).encode()
        elif path.suffix == ".jsonl" and trial % 2:
            lines = original.decode().splitlines()
            i = rng.randrange(len(lines))
            lines[i] = json.dumps(_mutate_json(json.loads(lines[i]), rng))
            data = "\n".join(lines).encode()
        else:
            data = _mutate_bytes(original, rng)
        path.write_bytes(data)
        try:
            read(path)
            outcomes["ok"] += 1
        except UserError as exc:
            assert "\n" not in str(exc) or name.startswith("taxonomy"), str(exc)
            assert len(str(exc)) < 2000
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{type(exc).__name__}: {exc} (mutant {trial} of {name}: {data[:300]!r})")
    assert outcomes["refused"] > 30, outcomes  # the mutations do reach the error paths


def test_voc_difficult_flag_and_thresholds_file_are_checked(tmp_path: Path) -> None:
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(
        voc_xml("a.jpg", [("dog", 0)]).replace("<difficult>0</difficult>", "<difficult>yes</difficult>")
    )
    with pytest.raises(UserError, match=r"a\.xml: <object> #1 \('dog'\) has <difficult>yes</difficult>"):
        read_annotations(voc, VOC)
    from hspnet_cli.scoring.thresholds import load_thresholds

    path = tmp_path / "thresholds.json"
    for text in ("[" * 100_000, '{"format": ' + "1" * 5000 + "}", "\xff\xfe"):
        path.write_text(text, encoding="latin-1")
        with pytest.raises(UserError, match=f"^{path}: not valid JSON"):
            load_thresholds(path, VOC)


# --- issue 18: hostile names through every writer -> reader pair, and the annotate API ----------

_NAME_PARTS = [
    "=",
    "+",
    "-",
    "@",
    "#",
    "\\",
    '"',
    "'",
    ",",
    "<",
    ">",
    ";",
    "%",
    "?",
    "&",
    " ",
    "ü",
    "x",
    "7",
    "\udcff",
    "\udce9",
    "\n",
    "\t",
    "\r",
]
_LABEL_PARTS = ["=", "+", "-", "@", "#", "\\", '"', "'", ",", "<", ">", "%", "&", " ", "ü", "x", "q"]


def _hostile_name(rng: random.Random, parts: list[str], starts: str = "=+-@#\\ ") -> str:
    body = "".join(rng.choice(parts) for _ in range(rng.randint(1, 6)))
    return rng.choice(starts) + body


def _hostile_world(rng: random.Random, n: int = 10) -> tuple[list[str], list[str]]:
    """``n`` distinct file names (a few in a sub-folder, spaces at both ends allowed) and 5 labels."""
    names: list[str] = []
    while len(names) < n:
        name = _hostile_name(rng, _NAME_PARTS) + rng.choice(["", " "]) + ".png"
        if rng.random() < 0.3:
            name = _hostile_name(rng, [p for p in _NAME_PARTS if p not in "\n\t\r"]) + "/" + name
        if name not in names and "/ " not in "/" + name and not name.startswith(" /"):
            names.append(name)
    labels: list[str] = []
    while len(labels) < 5:
        label = (_hostile_name(rng, _LABEL_PARTS, "=+-@#\\<\"',") + "x").strip()
        if label not in labels:
            labels.append(label)
    return names, labels


@pytest.mark.parametrize("seed", range(6))
def test_hostile_names_survive_every_writer_reader_pair(tmp_path: Path, seed: int) -> None:
    """Tags (csv, jsonl), the four label tools, the list format and the annotate log: every
    name comes back exactly, or is refused in one line (names that are not UTF-8 by the loop's
    formats), or was left out at discovery (names with a control character)."""
    from collections import Counter

    from loop_names_helpers import hostile_probs, make_hostile_tags

    from hspnet_cli.annotate.store import LabelStore
    from hspnet_cli.core.names import CONTROL_KEY, has_control, is_utf8
    from hspnet_cli.data.readers.annotate_log import read_annotate_log
    from hspnet_cli.labeltools import export_labels
    from hspnet_cli.sources.discover import discover_images
    from hspnet_cli.tagsfile.listfile import format_list, listed_paths
    from hspnet_cli.tagsfile.reader import read_tags_output

    rng = random.Random(f"hostile-{seed}")
    names, labels = _hostile_world(rng)
    groups = {"=g": labels[:2], "@h": labels[2:]}
    kept = [n for n in names if not has_control(n)]
    loop = [n for n in kept if is_utf8(n)]  # what the labeling loop's formats carry
    (tmp_path / "scratch").mkdir()
    for name in names:  # discovery on a real folder: control characters left out and counted
        path = os.path.join(os.fsencode(tmp_path / "scratch"), os.fsencode(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    skipped: Counter = Counter()
    found = list(discover_images(tmp_path / "scratch", skipped))
    assert sorted(found) == sorted(kept) and (skipped[CONTROL_KEY] > 0) == (len(kept) < len(names)), names
    probs = hostile_probs(len(kept), len(labels))
    want = {n: [1 if p >= 0.5 else -1 for p in row] for n, row in zip(kept, probs)}
    want_loop = {n: v for n, v in want.items() if n in loop}
    tax = None

    def read_back(path: Path, fmt: str | None = None) -> dict[str, list[int]]:
        got, _ = read_annotations(path, tax, fmt=fmt, absent="negative")
        return {image: row.tolist() for image, row in zip(got.images, got.matrix)}

    def refused_in_one_line(call: Callable[[], Any]) -> None:
        with pytest.raises(UserError) as info:
            call()
        assert "\n" not in str(info.value) and "not valid UTF-8" in str(info.value)

    for fmt in ("csv", "jsonl"):
        root = tmp_path / fmt
        tags = make_hostile_tags(root, names=kept, labels=labels, groups=groups, fmt=fmt, probs=probs)
        tax = load_taxonomy(root / "taxonomy.yaml")
        assert read_tags_output(tags).paths == kept  # tags: byte-exact, any bytes
        if len(loop) < len(kept):
            refused_in_one_line(lambda tags=tags: read_back(tags))
        else:
            assert read_back(tags) == want
        listing = root / "list.txt"  # the list format: any bytes
        listing.write_bytes(format_list(kept))
        assert list(listed_paths(listing, root / "images", "--list", "IMAGES_DIR")) == kept
    root = tmp_path / "csv"
    for to, out in (
        ("label-studio", root / "ls" / "tasks.json"),
        ("cvat", root / "cvat.xml"),
        ("hf", root / "metadata.jsonl"),
        ("fiftyone", root / "fo"),
    ):
        # Label Studio carries backslashes; the file-based tools read them as separators: refused.
        carried = loop if to == "label-studio" else [n for n in loop if "\\" not in n]
        want_tool = {n: v for n, v in want_loop.items() if n in carried}
        only = root / f"{to}.txt"
        only.write_bytes(format_list(carried))
        if len(carried) < len(kept):
            with pytest.raises(UserError) as info:
                export_labels(root / "tags.csv", to, out, image_sizes=False, overwrite=True)
            assert "\n" not in str(info.value) and (
                "not valid UTF-8" in str(info.value) or "holds a backslash" in str(info.value)
            )
        summary = export_labels(root / "tags.csv", to, out, image_sizes=False, overwrite=True, only=only)
        assert summary["rows"] == len(carried) and summary["tags"] == sum(v.count(1) for v in want_tool.values())
        source = out
        if to == "label-studio":  # a reviewer accepted every prediction
            tasks = json.loads(out.read_text(encoding="utf-8"))
            config = (out.parent / "tasks.labeling-config.xml").read_text(encoding="utf-8")
            import xml.etree.ElementTree as ET

            assert [c.get("value") for c in ET.fromstring(config).iter("Choice")] == labels
            source = root / "ls" / "export.json"
            source.write_text(
                json.dumps(
                    [
                        {
                            "id": i,
                            "data": t["data"],
                            "annotations": [
                                {
                                    "result": [
                                        {
                                            "type": "choices",
                                            "value": {
                                                "choices": t.get(
                                                    "predictions", [{"result": [{"value": {"choices": []}}]}]
                                                )[0]["result"][0]["value"]["choices"]
                                            },
                                        }
                                    ]
                                }
                            ],
                        }
                        for i, t in enumerate(tasks)
                    ]
                ),
                encoding="utf-8",
            )
        got = read_back(source) if carried else {}
        if to == "hf":
            got = {k.removeprefix("images/"): v for k, v in got.items()}
        assert got == want_tool, to
    log = root / "labels.jsonl"  # the annotate log
    store = LabelStore(log, tax, root / "images")
    for name in loop:
        store.record("answer", name, label=labels[0])
    store.close()
    raw = read_annotate_log(log)
    assert [r.image for r in raw.records] == loop


def _fuzz_body(rng: random.Random) -> bytes:
    valid = rng.choice(
        [
            {"client": "f", "want": 2},
            {"client": "f", "image": "0.png", "kind": "answer", "label": "x", "seconds": 1.5, "annotator": "a"},
            {"client": "f", "seq": 1, "annotator": "a"},
            {"client": "f"},
        ]
    )
    body = json.dumps(_mutate_json(valid, rng)).encode()
    if rng.random() < 0.5:
        body = rng.choice(
            [
                lambda b: _mutate_bytes(b, rng),
                lambda b: b.replace(b"1.5", b"NaN"),
                lambda b: b.replace(b"2", b"9" * 500),
                lambda b: b"[" * 3000 + b + b"]" * 3000,
                lambda b: b.replace(b'"f"', b'"' + b"f" * 200_000 + b'"'),
                lambda b: b.replace(b'"a"', b'"\xff\xfe"'),
            ]
        )(body)
    return body


def test_the_annotate_api_answers_mutated_bodies_without_a_500(tmp_path: Path, demo_split) -> None:
    from annotate_helpers import Server
    from PIL import Image
    from test_annotate_hostile import raw_post

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (50 * i, 0, 0)).save(images / f"{i}.png")
    srv = Server(images, demo_split["taxonomy"], tmp_path / "labels.jsonl", token="hostile-token-0123456789abcdef")
    rng = random.Random("annotate-api-fuzz")
    seen: dict[int, int] = {}
    try:
        for trial in range(150):
            path = rng.choice(["/api/next", "/api/answer", "/api/undo", "/api/release"])
            body = _fuzz_body(rng)
            status, answer = raw_post(srv, path, body)
            seen[status] = seen.get(status, 0) + 1
            assert status in (200, 400, 409, 413), (trial, path, body[:200], answer)
            if status != 200:
                assert "\n" not in answer.get("error", "")
        assert srv.get("/api/status")[0] == 200
    finally:
        assert srv.stop() == 0
    srv.log.seek(0)
    assert "Traceback" not in srv.log.read()
    assert seen.get(400, 0) > 30, seen  # the mutations reach the checks
    from hspnet_cli.data.readers.annotate_log import replay_log

    replay_log(tmp_path / "labels.jsonl")  # whatever was written reads back
