"""Annotation readers on small fixtures in the true formats: COCO, VOC, CSV, wide CSV, JSONL, lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hspnet_cli.core.errors import UserError
from hspnet_cli.data import read_annotations, read_split_csv, write_split_csv
from hspnet_cli.data.readers import detect_format, format_list
from hspnet_cli.taxonomy import load_taxonomy

VOC = load_taxonomy("voc")
COCO = load_taxonomy("coco")


def row(labels, image: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Non-negative entries of one image's row, as {label: value}."""
    values = labels.matrix[labels.images.index(image)]
    return {name: int(v) for name, v in zip(labels.label_names, values) if v != -1}


# --- COCO -----------------------------------------------------------------------------------


def write_coco(path: Path, *, annotations: list[dict] | None = None) -> Path:
    data = {
        "info": {"description": "tiny COCO"},
        "images": [
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 640, "height": 480},
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 640, "height": 426},
            {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "width": 640, "height": 428},
            {"id": 34, "file_name": "COCO_train2014_000000000034.jpg", "width": 640, "height": 425},
        ],
        "categories": [
            {"supercategory": "person", "id": 1, "name": "person"},
            {"supercategory": "vehicle", "id": 3, "name": "car"},
            {"supercategory": "animal", "id": 18, "name": "dog"},
            {"supercategory": "animal", "id": 25, "name": "giraffe"},
            {"supercategory": "fantasy", "id": 99, "name": "unicorn"},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 100.0, "bbox": [1, 2, 3, 4]},
            {"id": 2, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 90.0, "bbox": [5, 6, 7, 8]},
            {"id": 3, "image_id": 9, "category_id": 3, "iscrowd": 1, "area": 900.0, "bbox": [0, 0, 30, 30]},
            {"id": 4, "image_id": 25, "category_id": 25, "iscrowd": 0, "area": 500.0, "bbox": [1, 1, 9, 9]},
            {"id": 5, "image_id": 34, "category_id": 99, "iscrowd": 0, "area": 50.0, "bbox": [1, 1, 5, 5]},
        ],
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def test_coco_reader(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "instances_train2014.json")
    assert detect_format(path) == "coco"
    labels, report = read_annotations(path, COCO)
    assert labels.images == [f"COCO_train2014_0000000000{n:02d}.jpg" for n in (9, 25, 30, 34)]
    assert labels.matrix.dtype == np.int8 and labels.matrix.shape == (4, 80)
    # Categories the file annotates are -1 where absent; taxonomy labels it never annotates are unknown.
    first = row(labels, "COCO_train2014_000000000009.jpg")
    assert first["person"] == 1 and first["car"] == 1 and "dog" not in first and "giraffe" not in first
    assert first["bicycle"] == 0 and sum(v == 0 for v in first.values()) == 80 - 4
    assert row(labels, "COCO_train2014_000000000025.jpg")["giraffe"] == 1
    # Image 30 has no annotation and image 34 only an unknown category: kept, no positive, counted.
    assert labels.positives_per_image().tolist() == [2, 1, 0, 0]
    assert report.images_without_positives == 2
    assert any("1 image(s) have no annotation" in note for note in report.notes)
    assert report.unknown_labels == {"unicorn": 1}
    assert len(report.missing_labels) == 80 - 4 and "bicycle" in report.missing_labels
    assert any("unicorn" in w for w in report.warnings())
    assert labels.origins[0] == f"{path}: image id 9"


def test_coco_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "images": [\n    {"id": 1,, "file_name": "a.jpg"}\n  ]\n}\n')
    with pytest.raises(UserError, match=rf"^{bad}:3:14: not valid JSON"):
        read_annotations(bad, COCO)
    path = write_coco(
        tmp_path / "c.json",
        annotations=[{"id": 1, "image_id": 77, "category_id": 1}, {"id": 2, "image_id": 78, "category_id": 1}],
    )
    with pytest.raises(UserError, match=r"2 annotation\(s\) point at 2 image id\(s\) not in 'images': 77, 78"):
        read_annotations(path, COCO)
    path = write_coco(tmp_path / "c.json", annotations=[{"id": 1, "image_id": 9, "category_id": 42}])
    with pytest.raises(UserError, match=r"category id\(s\) not in 'categories': 42"):
        read_annotations(path, COCO)
    with pytest.raises(UserError, match=r"label 'unicorn' is not in taxonomy 'coco'"):
        read_annotations(write_coco(tmp_path / "c.json"), COCO, strict=True)


# --- Pascal VOC -------------------------------------------------------------------------------


def voc_xml(filename: str, objects: list[tuple[str, int]]) -> str:
    body = "".join(
        f"  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        f"    <difficult>{difficult}</difficult>\n    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>"
        f"<ymax>40</ymax></bndbox>\n  </object>\n"
        for name, difficult in objects
    )
    return (
        f"<annotation>\n  <folder>VOC2012</folder>\n  <filename>{filename}</filename>\n"
        f"  <size><width>500</width><height>375</height><depth>3</depth></size>\n"
        f"  <segmented>0</segmented>\n{body}</annotation>\n"
    )


def write_voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    files = {
        "2008_000001": [("dog", 0), ("person", 0), ("person", 1)],
        "2008_000002": [("cat", 0), ("chair", 1)],  # chair only difficult
        "2008_000003": [("bottle", 1), ("bottle", 0), ("sofa", 0)],  # bottle also clear
    }
    for stem, objects in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects))
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000002\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000003\n")
    return root


@pytest.mark.parametrize("policy, chair", [("ignore", -1), ("unknown", 0), ("positive", 1)])
def test_voc_reader_and_difficult_policy(tmp_path: Path, policy: str, chair: int) -> None:
    root = write_voc(tmp_path / "VOC2012")
    assert detect_format(root) == "voc"
    labels, report = read_annotations(root, VOC, voc_difficult=policy)
    assert labels.images == ["JPEGImages/2008_000001.jpg", "JPEGImages/2008_000002.jpg", "JPEGImages/2008_000003.jpg"]
    assert row(labels, "JPEGImages/2008_000001.jpg") == {"dog": 1, "person": 1}
    assert labels.matrix[1, VOC.label_index("chair")] == chair
    assert labels.matrix[1, VOC.label_index("cat")] == 1
    assert row(labels, "JPEGImages/2008_000003.jpg") == {"bottle": 1, "sofa": 1}  # a clear instance wins
    assert any("1 image label(s) are present only as difficult objects" in n and policy in n for n in report.notes)


def test_voc_image_set_and_errors(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC2012")
    labels, _ = read_annotations(root, VOC, voc_set="val")
    assert labels.images == ["JPEGImages/2008_000003.jpg"]
    with pytest.raises(UserError, match="no such image set; available: train, val"):
        read_annotations(root, VOC, voc_set="trainval")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000009\n")
    with pytest.raises(UserError, match=r"train\.txt:2: image id '2008_000009' has no annotation file"):
        read_annotations(root, VOC, voc_set="train")
    broken = root / "Annotations" / "2008_000002.xml"
    broken.write_text("<annotation>\n  <filename>x.jpg</filename>\n  <object><name>cat</name>\n</annotation>\n")
    with pytest.raises(UserError, match=rf"^{broken}:4:3: malformed XML \(mismatched tag\)"):
        read_annotations(root, VOC)
    with pytest.raises(UserError, match="not a Pascal VOC folder"):
        read_annotations(tmp_path, VOC)


# --- CSV, wide CSV, JSONL ----------------------------------------------------------------------


def test_label_csv_reader(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    path.write_text('image,labels\nimg/a.jpg,dog;person\n"img/b, c.jpg",cat\n\nimg/d.jpg,\n./img/e.jpg, sofa ; dog \n')
    assert detect_format(path) == "csv"
    labels, report = read_annotations(path, VOC)
    assert labels.images == ["img/a.jpg", "img/b, c.jpg", "img/d.jpg", "img/e.jpg"]
    assert row(labels, "img/a.jpg") == {"dog": 1, "person": 1}
    assert row(labels, "img/d.jpg") == {} and report.images_without_positives == 1
    assert row(labels, "img/e.jpg") == {"dog": 1, "sofa": 1}
    assert labels.origins == [f"{path}:2", f"{path}:3", f"{path}:5", f"{path}:6"]
    assert "aeroplane" in report.missing_labels  # named by the report: VOC labels this data never mentions


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("image,labels\na.jpg,dog\nb.jpg,cat,extra\n")
    with pytest.raises(UserError, match=rf"^{path}:3: expected 2 cells"):
        read_annotations(path, VOC)
    path.write_text('image,labels\na.jpg,dog\n"b.jpg,cat\n')
    with pytest.raises(UserError, match=rf"^{path}:3: malformed CSV"):
        read_annotations(path, VOC)
    path.write_text("image,labels\na.jpg,dog\nb.jpg,cat;dgo\nc.jpg,dgo\n")
    with pytest.raises(UserError, match=rf"^{path}:3: label 'dgo' is not in taxonomy 'voc'"):
        read_annotations(path, VOC, strict=True)
    labels, report = read_annotations(path, VOC)  # non-strict: dropped, reported with count and place
    assert row(labels, "b.jpg") == {"cat": 1} and row(labels, "c.jpg") == {}
    assert report.unknown_labels == {"dgo": 2}
    assert f"'dgo' in 2 image(s) (first at {path}:3)" in report.warnings()[0]
    path.write_text("image,labels\n/data/a.jpg,dog\n")
    with pytest.raises(UserError, match=rf"^{path}:2: image path '/data/a.jpg' is absolute"):
        read_annotations(path, VOC)


def test_duplicates_merge_when_identical_and_fail_when_not(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("image,labels\na.jpg,dog;cat\nb.jpg,cat\na.jpg,cat;dog\n")
    labels, report = read_annotations(path, VOC)
    assert labels.images == ["a.jpg", "b.jpg"] and report.duplicates_merged == 1
    assert "merged 1 identical duplicate image entry" in report.warnings()[-1]
    path.write_text("image,labels\na.jpg,dog\nb.jpg,cat\na.jpg,dog;cat\n")
    with pytest.raises(
        UserError,
        match=rf"^{path}:4: image 'a.jpg' is listed again with different labels "
        rf"\(first at {path}:2\)",
    ):
        read_annotations(path, VOC)


def test_empty_inputs(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("image,labels\n\n")
    with pytest.raises(UserError, match=rf"^{path}: no images found"):
        read_annotations(path, VOC)
    path.write_text("")
    with pytest.raises(UserError, match=rf"^{path}: the file is empty"):
        read_annotations(path, VOC)
    path = tmp_path / "e.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match="no images found"):
        read_annotations(path, VOC)


def test_wide_csv_reader(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("image,dog,cat,person,unicorn\na.jpg,1,0,,0\nb.jpg,-1,1,1.0,1\n")
    assert detect_format(path) == "wide"
    labels, report = read_annotations(path, VOC)
    dog, cat, person = (VOC.label_index(n) for n in ("dog", "cat", "person"))
    assert labels.matrix[0, [dog, cat, person]].tolist() == [1, -1, 0]  # 0 = absent, empty = unknown
    assert labels.matrix[1, [dog, cat, person]].tolist() == [-1, 1, 1]
    assert labels.matrix[0, VOC.label_index("sofa")] == 0  # no column: not annotated, so unknown
    assert report.unknown_labels == {"unicorn": 2}
    path.write_text("image,dog,cat\na.jpg,1,0\nb.jpg,1,yes\n")
    with pytest.raises(UserError, match=rf"^{path}:3: column 'cat' holds 'yes'"):
        read_annotations(path, VOC)
    path.write_text("image,dog,dog\na.jpg,1,0\n")
    with pytest.raises(UserError, match=rf"^{path}:1: label column 'dog' appears twice"):
        read_annotations(path, VOC)


def test_jsonl_reader(tmp_path: Path) -> None:
    path = tmp_path / "ann.jsonl"
    path.write_text(
        '{"image": "a.jpg", "labels": ["dog", "cat"], "source": "team-a"}\n\n{"image": "b.jpg", "labels": []}\n'
    )
    labels, _ = read_annotations(path, VOC)
    assert labels.images == ["a.jpg", "b.jpg"] and row(labels, "a.jpg") == {"dog": 1, "cat": 1}
    assert labels.origins == [f"{path}:1", f"{path}:3"]
    path.write_text('{"image": "a.jpg", "labels": ["dog"]}\n{"image": "b.jpg", "labels": ["cat"}\n')
    with pytest.raises(UserError, match=rf"^{path}:2:36: not valid JSON"):
        read_annotations(path, VOC)
    path.write_text('{"image": "a.jpg", "labels": "dog"}\n')
    with pytest.raises(UserError, match=rf"^{path}:1: \"labels\" must be a list"):
        read_annotations(path, VOC)


# --- published list files and our split CSV ---------------------------------------------------


def test_list_file_read_and_byte_identical_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train_voc.txt"
    canonical = "JPEGImages/2008_000008.jpg,12 14\nJPEGImages/2008_000015.jpg,1\nJPEGImages/2008_000019.jpg,11\n"
    path.write_bytes(canonical.encode())
    assert detect_format(path) == "list"
    labels, _ = read_annotations(path, VOC)
    assert row(labels, "JPEGImages/2008_000008.jpg") == {"horse": 1, "person": 1}
    text, left_out = format_list(labels)
    assert text.encode() == canonical.encode() and left_out == 0
    path.write_text("a.jpg,3 20\n")
    with pytest.raises(
        UserError,
        match=rf"^{path}:1: label index 20 is out of range for taxonomy 'voc' "
        r"\(20 labels, indices 0\.\.19\)",
    ):
        read_annotations(path, VOC)
    path.write_text("a.jpg,3\nb.jpg,x\n")
    with pytest.raises(UserError, match=rf"^{path}:2: label index 'x' is not a whole number"):
        read_annotations(path, VOC)


def test_split_csv_round_trip_and_checks(tmp_path: Path) -> None:
    source = tmp_path / "s.csv"
    source.write_text('image,labels\na.jpg,dog\n"b,1.jpg",cat;person\n')
    labels, _ = read_annotations(source, VOC)
    labels.matrix[0, 0] = 0
    out = tmp_path / "train.csv"
    write_split_csv(out, labels)
    lines = out.read_text().splitlines()
    assert lines[0] == "# hspnet-split v1 encoding: 1=positive 0=unknown -1=negative"
    assert lines[1].startswith("image,aeroplane,bicycle,bird") and lines[2].startswith("a.jpg,0,-1,")
    back = read_split_csv(out, VOC)
    assert back.images == labels.images and np.array_equal(back.matrix, labels.matrix)
    again = tmp_path / "again.csv"
    write_split_csv(again, back)
    assert again.read_bytes() == out.read_bytes()
    assert detect_format(out) == "split" and read_annotations(out, VOC)[0].images == labels.images
    with pytest.raises(
        UserError,
        match=rf"^{out}:2: columns do not match taxonomy 'coco': label column 1 is "
        "'aeroplane', the taxonomy has 'person'",
    ):
        read_split_csv(out, COCO)
    out.write_text(out.read_text().replace("a.jpg,0,-1", "a.jpg,2,-1"))
    with pytest.raises(UserError, match=rf"^{out}:3: column 'aeroplane' holds '2'"):
        read_split_csv(out, VOC)


def test_detect_format_refuses_unknown_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.dat"
    path.write_text("hello world\n")
    with pytest.raises(UserError, match=rf"^{path}:1: cannot tell the annotation format"):
        read_annotations(path, VOC)
    assert detect_format(write_coco(tmp_path / "x.annotations")) == "coco"


def test_strict_refuses_taxonomy_labels_the_data_lacks(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("image,labels\na.jpg,dog\n")
    labels, report = read_annotations(path, VOC)
    assert len(report.missing_labels) == 19 and "19 taxonomy label(s) not in the data" in report.warnings()[0]
    with pytest.raises(UserError, match=rf"^{path}: 19 label\(s\) of taxonomy 'voc' are not in the data: aeroplane"):
        read_annotations(path, VOC, strict=True)
    everything = "image,labels\na.jpg," + ";".join(VOC.label_names) + "\n"
    path.write_text(everything)
    assert read_annotations(path, VOC, strict=True)[0].positives_per_image().tolist() == [20]


def test_structural_errors_of_coco_and_voc(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": []}))
    with pytest.raises(UserError, match=rf"^{path}: no 'annotations' list"):
        read_annotations(path, COCO)
    path.write_text(json.dumps({"images": [{"id": 1}], "categories": [], "annotations": []}))
    with pytest.raises(UserError, match=rf"^{path}:1: images\[0\]\.file_name is missing; it must be text"):
        read_annotations(path, COCO)
    (tmp_path / "VOC" / "Annotations").mkdir(parents=True)
    with pytest.raises(UserError, match=r"Annotations: no \*\.xml annotation files"):
        read_annotations(tmp_path / "VOC", VOC)


def test_a_taxonomy_that_shares_no_label_with_the_data_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "shapes.csv"
    path.write_text("image,labels\na.png,circle;star\nb.png,spiral\n")
    with pytest.raises(
        UserError,
        match=rf"^{path}: none of the data's 3 label\(s\) is in taxonomy 'voc' "
        r"\(the data has: circle, spiral, star\)",
    ):
        read_annotations(path, VOC)
