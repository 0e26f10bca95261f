"""Hostile and careless annotation input (issue 11, items 2, 7, 10): image paths that leave the
images folder, paths kept byte-exact, label cells split on the wrong separator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import invoke
from PIL import Image
from test_readers import voc_xml
from typer.testing import CliRunner

from hspnet_cli.core.errors import UserError
from hspnet_cli.data import read_annotations, read_split_csv
from hspnet_cli.taxonomy import load_taxonomy

VOC = load_taxonomy("voc")
ESCAPES = [
    "../../etc/passwd",
    "..\\..\\etc\\passwd",
    "a/../../etc/passwd",
    "..",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "C:win.ini",
    "\\\\server\\share\\a.jpg",
    "JPEGImages/../../x.jpg",
]


def _annotation_file(tmp_path: Path, fmt: str, bad: str) -> tuple[Path, int]:
    """A file of format ``fmt`` whose second image is ``bad``; returns it and the line that names it."""
    if fmt == "csv":
        path = tmp_path / "a.csv"
        path.write_text("image,labels\nok.jpg,dog\n" + f'"{bad}",cat\n')
        return path, 3
    if fmt == "wide":
        path = tmp_path / "w.csv"
        path.write_text("image,dog,cat\nok.jpg,1,0\n" + f'"{bad}",0,1\n')
        return path, 3
    if fmt == "jsonl":
        path = tmp_path / "a.jsonl"
        path.write_text(
            json.dumps({"image": "ok.jpg", "labels": ["dog"]})
            + "\n"
            + json.dumps({"image": bad, "labels": ["cat"]})
            + "\n"
        )
        return path, 2
    if fmt == "list":
        path = tmp_path / "a.txt"
        path.write_text(f"ok.jpg,11\n{bad},7\n")
        return path, 2
    if fmt == "coco":
        path = tmp_path / "instances.json"
        data = {
            "images": [{"id": 1, "file_name": "ok.jpg"}, {"id": 2, "file_name": bad}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
        }
        path.write_text(json.dumps(data, indent=1))
        return path, 1 + json.dumps(data, indent=1).splitlines().index(f'   "file_name": {json.dumps(bad)}')
    if fmt == "split":
        path = tmp_path / "s.csv"
        header = "# hspnet-split v1 encoding: 1=positive 0=unknown -1=negative\n"
        zeros = ",".join("0" for _ in VOC.label_names)
        path.write_text(header + "image," + ",".join(VOC.label_names) + f'\nok.jpg,{zeros}\n"{bad}",{zeros}\n')
        return path, 4
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["csv", "wide", "jsonl", "list", "coco", "split"])
@pytest.mark.parametrize("bad", ESCAPES)
def test_paths_leaving_the_images_folder_are_refused_at_read_time(tmp_path: Path, fmt: str, bad: str) -> None:
    path, line = _annotation_file(tmp_path, fmt, bad)
    with pytest.raises(UserError) as info:
        read_annotations(path, VOC, fmt=fmt)
    message = str(info.value)
    assert "\n" not in message
    if fmt == "coco":
        assert message.startswith(f"{path}:{line}: ") and "images[1].file_name" in message, message
    else:
        assert message.startswith(f"{path}:{line}: "), message
    assert ("outside" in message or "absolute" in message) and "relative" in message, message


@pytest.mark.parametrize("bad", ["../../../etc/passwd", "..\\..\\..\\etc\\passwd", "/etc/passwd"])
def test_voc_filename_and_image_set_ids_stay_inside(runner: CliRunner, tmp_path: Path, bad: str) -> None:
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", [("dog", 0)]))
    (voc / "Annotations" / "b.xml").write_text(voc_xml(bad, [("cat", 0)]))
    result = invoke(runner, "split", voc, "-t", "voc", "-o", tmp_path / "out", "--check-images", voc)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{voc}/Annotations/b.xml:3: " in result.stderr and "<filename>" in result.stderr
    assert not (tmp_path / "out").exists()
    # an ImageSets id that climbs out would read an XML file elsewhere
    (tmp_path / "outside.xml").write_text(voc_xml("x.jpg", [("cat", 0)]))
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n../../outside\n")
    with pytest.raises(UserError, match=r"train\.txt:2: image id '\.\./\.\./outside'"):
        read_annotations(voc, VOC, voc_set="train")
    with pytest.raises(UserError, match="--voc-set"):
        read_annotations(voc, VOC, voc_set="../../x")


def test_paths_that_stay_inside_are_normalised_once(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("image,labels\nsub/../a.jpg,dog\n./b.jpg,cat\nc//d.jpg,cat\nsub\\e.jpg,dog\n")
    labels, _ = read_annotations(path, VOC)
    assert labels.images == ["a.jpg", "b.jpg", "c/d.jpg", "sub/e.jpg"]


def test_tag_list_uses_the_same_check() -> None:
    from hspnet_cli.core.names import contained_path
    from hspnet_cli.tagsfile.listfile import normalise_listed

    root = os.path.abspath("/data/images")
    assert normalise_listed("../x.jpg", root) is None and contained_path("../x.jpg") is None
    assert normalise_listed("/data/images/a/b.jpg", root) == "a/b.jpg" == contained_path("a/./b.jpg")
    assert normalise_listed("/data/other/b.jpg", root) is None


def test_check_images_never_follows_a_link_out_of_the_root(runner: CliRunner, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    Image.new("RGB", (4, 4)).save(images / "a.png")
    (images / "b.png").symlink_to(outside)
    (images / "sub").symlink_to(tmp_path, target_is_directory=True)
    ann = tmp_path / "a.csv"
    ann.write_text("image,labels\na.png,dog\nb.png,cat\nsub/secret.png,cat\n")
    for extra in ([], ["--check-images-deep"]):
        result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "out", "--check-images", images, *extra)
        assert result.exit_code == 2, result.output
        assert "2 of 3 image(s)" in result.stderr and "b.png (a link to a file outside" in result.stderr
        assert "sub/secret.png (a link to a file outside" in result.stderr and f"{ann}:3" in result.stderr
    # a root that is itself a link is fine: the check is against where the root really is
    (tmp_path / "root-link").symlink_to(images, target_is_directory=True)
    ann.write_text("image,labels\na.png,dog\n")
    result = invoke(
        runner,
        "split",
        ann,
        "-t",
        "voc",
        "-o",
        tmp_path / "out",
        "--check-images",
        tmp_path / "root-link",
        "--check-images-deep",
    )
    assert result.exit_code == 0, result.output


# --- paths kept byte-exact ----------------------------------------------------------------------


def test_split_keeps_image_paths_byte_exact(runner: CliRunner, tmp_path: Path) -> None:
    ann = tmp_path / "a.csv"
    ann.write_text('image,labels\n" lead.jpg",dog\n"trail.jpg ",cat\nplain.jpg,dog\n"ünï cödé.jpg",cat\n')
    result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "out", "--mode", "full")
    assert result.exit_code == 0, result.output
    written = read_split_csv(tmp_path / "out" / "train.csv", VOC)
    assert written.images == [" lead.jpg", "trail.jpg ", "plain.jpg", "ünï cödé.jpg"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(json.dumps({"image": " x.jpg", "labels": ["dog"]}) + "\n")
    assert read_annotations(jsonl, VOC)[0].images == [" x.jpg"]
    listed = tmp_path / "a.txt"
    listed.write_text(" y.jpg,11\n")
    assert read_annotations(listed, VOC)[0].images == [" y.jpg"]


@pytest.mark.parametrize("bad", ["   ", "a\nb.jpg", "a\x00b.jpg", "tab\there.jpg"])
def test_blank_and_control_character_paths_are_refused(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"image": "ok.jpg", "labels": ["dog"]}) + "\n" + json.dumps({"image": bad, "labels": ["cat"]}) + "\n"
    )
    with pytest.raises(UserError, match=rf"^{path}:2: "):
        read_annotations(path, VOC)


# --- label separators ---------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", "|", " ", "/", ", ", " | "])
def test_a_cell_split_on_another_separator_stops_with_its_name(runner: CliRunner, tmp_path: Path, sep: str) -> None:
    ann = tmp_path / "a.csv"
    ann.write_text(f'image,labels\na.jpg,dog\nb.jpg,"cat{sep}dog"\nc.jpg,cat\n')
    result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{ann}:3: " in result.stderr and f"--label-sep '{sep.strip() or ' '}'" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_label_sep_reads_the_whole_file_that_way(runner: CliRunner, tmp_path: Path) -> None:
    ann = tmp_path / "a.csv"
    ann.write_text('image,labels\na.jpg,dog\nb.jpg,"cat, dog"\nc.jpg,cat|bird\n')
    result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "out", "--mode", "full", "--label-sep", ",")
    assert result.exit_code == 2 and f"{ann}:4: " in result.stderr and "'|'" in result.stderr
    ann.write_text('image,labels\na.jpg,dog\nb.jpg,"cat, dog"\nc.jpg,"cat,bird"\n')
    result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "out", "--mode", "full", "--label-sep", ",")
    assert result.exit_code == 0, result.output
    labels = read_split_csv(tmp_path / "out" / "train.csv", VOC)
    assert [sorted(n for n, v in zip(VOC.label_names, r) if v == 1) for r in labels.matrix] == [
        ["dog"],
        ["cat", "dog"],
        ["bird", "cat"],
    ]
    assert "label_sep: ','" in (tmp_path / "out" / "split.yaml").read_text()
    result = invoke(runner, "split", ann, "-t", "voc", "-o", tmp_path / "o2", "--label-sep", "")
    assert result.exit_code == 2 and "--label-sep" in result.stderr


def test_label_sep_inside_a_taxonomy_label_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    tax = tmp_path / "t.yaml"
    tax.write_text("labels: [traffic light, dog]\ngroups: {a: [traffic light, dog]}\n")
    ann = tmp_path / "a.csv"
    ann.write_text("image,labels\na.jpg,traffic light dog\n")
    result = invoke(runner, "split", ann, "-t", tax, "-o", tmp_path / "out", "--label-sep", " ")
    assert result.exit_code == 2 and "'traffic light'" in result.stderr and "--label-sep" in result.stderr
    # a label with a space is one label, not two: no false alarm with the default separator
    ann.write_text("image,labels\na.jpg,traffic light;dog\n")
    assert invoke(runner, "split", ann, "-t", tax, "-o", tmp_path / "out", "--mode", "full").exit_code == 0


def test_tag_list_keeps_spaces_in_listed_paths(tmp_path: Path) -> None:
    """A list line is the path byte for byte (only the line ending goes), as in split."""
    from hspnet_cli.sources.discover import read_path_list

    root = tmp_path / "imgs"
    root.mkdir()
    for name in (" lead.png", "trail .png", "plain.png"):
        (root / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n lead.png\r\ntrail .png\n\n   \nplain.png\n", encoding="utf-8")
    assert list(read_path_list(listing, root)) == [" lead.png", "trail .png", "plain.png"]
