"""``hspnet split`` end to end through the real CLI entry point, on tiny fixtures in the true formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from PIL import Image
from test_readers import voc_xml, write_coco
from typer.testing import CliRunner

from hspnet_cli.data import read_split_csv
from hspnet_cli.taxonomy import load_taxonomy

GROUPS = {
    "shape": ["circle", "triangle", "square", "star"],
    "pattern": ["stripe", "checkerboard", "dot", "grid"],
    "symbol": ["arrow", "heart", "cross", "crescent"],
    "line": ["spiral", "zigzag", "wave", "ring"],
}


def demo_like(root: Path, n_train: int = 80, n_test: int = 20, seed: int = 0) -> tuple[Path, Path, Path, Path]:
    """A demo-like world: taxonomy YAML, train and test ``image,labels`` CSVs and tiny PNGs."""
    labels = [name for members in GROUPS.values() for name in members]
    tax = root / "taxonomy.yaml"
    tax.write_text(
        "name: demo-like\nlabels: ["
        + ", ".join(labels)
        + "]\ngroups:\n"
        + "".join(f"  {g}: [{', '.join(m)}]\n" for g, m in GROUPS.items())
    )
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(seed)
    files = []
    for name, count, start in (("annotations.csv", n_train, 0), ("test.csv", n_test, n_train)):
        lines = ["image,labels"]
        for i in range(start, start + count):
            group = GROUPS[list(GROUPS)[i % 4]]  # most labels of an image from one group, as in the demo
            chosen = list(rng.choice(group, size=int(rng.integers(1, 4)), replace=False))
            if rng.random() < 0.3:
                chosen.append(str(rng.choice(labels)))
            lines.append(f"{i:06d}.png,{';'.join(dict.fromkeys(chosen))}")
            Image.new("RGB", (8, 8), (i % 256, 40, 90)).save(images / f"{i:06d}.png")
        (root / name).write_text("\n".join(lines) + "\n")
        files.append(root / name)
    return tax, files[0], files[1], images


def test_demo_like_single_positive_train_val_test(runner: CliRunner, tmp_path: Path) -> None:
    tax, train_csv, test_csv, images = demo_like(tmp_path)
    out = tmp_path / "split"
    result = invoke(
        runner,
        "split",
        train_csv,
        "--taxonomy",
        tax,
        "--mode",
        "single-positive",
        "--out",
        out,
        "--val-fraction",
        "0.25",
        "--test",
        test_csv,
        "--seed",
        "3",
        "--check-images",
        images,
        "--check-images-deep",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    counts = summary["splits"][0]["counts"]
    assert (counts["train"]["images"], counts["val"]["images"], counts["test"]["images"]) == (60, 20, 20)
    assert counts["train"]["positives_per_image_observed"] == 1.0
    assert counts["train"]["positives_per_image_full"] > 1.0
    taxonomy = load_taxonomy(tax)
    train, val, test = (read_split_csv(out / f"{n}.csv", taxonomy) for n in ("train", "val", "test"))
    assert ((train.matrix == 1).sum(axis=1) == 1).all() and not (train.matrix == -1).any()
    assert not (val.matrix == 0).any() and not (test.matrix == 0).any()  # full labels
    assert test.images[0] == "000080.png"
    assert sorted(p.name for p in out.iterdir()) == ["split.yaml", "test.csv", "train.csv", "val.csv"]
    # The human summary: a table and the per-label line.
    again = invoke(
        runner,
        "split",
        train_csv,
        "-t",
        tax,
        "-o",
        tmp_path / "split2",
        "--val-fraction",
        "0.25",
        "--test",
        test_csv,
        "--seed",
        "3",
    )
    assert again.exit_code == 0 and "train.csv" in again.stdout and "train positives per label" in again.stdout
    assert (tmp_path / "split2" / "train.csv").read_bytes() == (out / "train.csv").read_bytes()


def test_partial_multi_keep_and_list_output(runner: CliRunner, tmp_path: Path) -> None:
    tax, train_csv, _, _ = demo_like(tmp_path)
    result = invoke(
        runner, "split", train_csv, "-t", tax, "-o", tmp_path / "p", "--mode", "partial", "--keep", "0.2,0.6", "--json"
    )
    assert result.exit_code == 0, result.output
    assert [s["dir"] for s in json.loads(result.stdout)["splits"]] == ["keep-0.2", "keep-0.6"]
    assert (tmp_path / "p" / "keep-0.6" / "train.csv").is_file() and (tmp_path / "p" / "split.yaml").is_file()
    result = invoke(runner, "split", train_csv, "-t", tax, "-o", tmp_path / "l", "--out-format", "list")
    assert result.exit_code == 0, result.output
    first = (tmp_path / "l" / "train.txt").read_text().splitlines()[0]
    assert first.startswith("000000.png,") and len(first.split(",")[1].split()) == 1


def test_coco_and_voc_inputs_through_the_cli(runner: CliRunner, tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "instances.json")
    result = invoke(runner, "split", coco, "-t", "coco", "-o", tmp_path / "c", "--mode", "full", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"][0]["counts"]["train"]["images"] == 4
    assert "dropped 1 label(s) not in the taxonomy: 'unicorn'" in result.stderr
    assert "77 label(s) have no positive in train: bicycle" in result.stderr
    voc = tmp_path / "VOC2012"
    (voc / "Annotations").mkdir(parents=True)
    for stem, objects in (("a", [("dog", 0), ("chair", 1)]), ("b", [("cat", 0)]), ("c", [("chair", 1)])):
        (voc / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects))
    result = invoke(runner, "split", voc, "-t", "voc", "-o", tmp_path / "v", "--voc-difficult", "ignore", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["splits"][0]["counts"]["train"]
    assert counts["images"] == 2 and counts["dropped_without_positive"] == 1  # c.jpg: difficult chair only
    result = invoke(runner, "split", voc, "-t", "voc", "-o", tmp_path / "v2", "--voc-difficult", "positive", "--json")
    assert json.loads(result.stdout)["splits"][0]["counts"]["train"]["images"] == 3


@pytest.mark.parametrize(
    "name, content, fmt, expected",
    [
        ("bad.json", '{"images": [\n  {"id": 1 "file_name": "a.jpg"}\n]}\n', None, "bad.json:2:12: not valid JSON"),
        ("bad.csv", "image,labels\na.jpg,dog\nb.jpg,dog,cat\n", None, "bad.csv:3: expected 2 cells"),
        ("unk.csv", "image,labels\na.jpg,dog\nb.jpg,dgo\n", None, "unk.csv:3: label 'dgo' is not in taxonomy 'voc'"),
        ("range.txt", "a.jpg,1\nb.jpg,0 25\n", None, "range.txt:2: label index 25 is out of range"),
        (
            "dup.jsonl",
            '{"image": "a.jpg", "labels": ["dog"]}\n{"image": "a.jpg", "labels": ["cat"]}\n',
            None,
            "dup.jsonl:2: image 'a.jpg' is listed again with different labels (first at",
        ),
        ("empty.csv", "image,labels\n", None, "empty.csv: no images found"),
        ("bad.wide", "image,dog,cat\na.jpg,1,maybe\n", "wide", "bad.wide:2: column 'cat' holds 'maybe'"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(
    runner: CliRunner, tmp_path: Path, name: str, content: str, fmt: str | None, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    extra = ["--format", fmt] if fmt else []
    result = invoke(runner, "split", path, "-t", "voc", "-o", tmp_path / "out", "--strict", *extra)
    assert result.exit_code == 2
    assert f"{tmp_path}/{expected}" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_malformed_voc_xml_names_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", [("dog", 0)]))
    (voc / "Annotations" / "b.xml").write_text("<annotation>\n<filename>b.jpg</filename>\n<object>\n</annotation>\n")
    result = invoke(runner, "split", voc, "-t", "voc", "-o", tmp_path / "out")
    assert result.exit_code == 2 and f"{voc}/Annotations/b.xml:4:3: malformed XML" in result.stderr


def test_existing_output_needs_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    tax, train_csv, _, _ = demo_like(tmp_path, n_train=12, n_test=1)
    out = tmp_path / "s"
    assert invoke(runner, "split", train_csv, "-t", tax, "-o", out).exit_code == 0
    result = invoke(runner, "split", train_csv, "-t", tax, "-o", out, "--seed", "1")
    assert result.exit_code == 2 and f"{out}: already holds a split" in result.stderr and "--overwrite" in result.stderr
    result = invoke(runner, "split", train_csv, "-t", tax, "-o", out, "--seed", "1", "--overwrite")
    assert result.exit_code == 0 and "seed: 1" in (out / "split.yaml").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_check_images_lists_missing_and_broken(runner: CliRunner, tmp_path: Path) -> None:
    tax, train_csv, _, images = demo_like(tmp_path, n_train=30, n_test=1)
    for i in (3, 7):
        (images / f"{i:06d}.png").unlink()
    result = invoke(runner, "split", train_csv, "-t", tax, "-o", tmp_path / "s", "--check-images", images)
    assert result.exit_code == 2
    assert "2 of 30 image(s)" in result.stderr and "000003.png (missing" in result.stderr
    assert f"{train_csv}:5" in result.stderr and "000007.png" in result.stderr
    assert not (tmp_path / "s").exists()
    for i in (3, 7):
        Image.new("RGB", (8, 8)).save(images / f"{i:06d}.png")
    (images / "000010.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert invoke(runner, "split", train_csv, "-t", tax, "-o", tmp_path / "s", "--check-images", images).exit_code == 0
    result = invoke(
        runner, "split", train_csv, "-t", tax, "-o", tmp_path / "d", "--check-images", images, "--check-images-deep"
    )
    assert result.exit_code == 2 and "1 of 30 image(s)" in result.stderr and "000010.png (unreadable" in result.stderr


def test_staging_folders_of_killed_runs_are_cleaned_by_the_next_run(runner: CliRunner, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from hspnet_cli.core.io_utils import _host_tag

    tax, train_csv, _, _ = demo_like(tmp_path)
    out = tmp_path / "split"
    # A run killed with SIGKILL after it made its staging folder: nothing of it could clean up.
    code = (
        "import os, signal; from hspnet_cli.core.io_utils import staging_dir; "
        f"d = staging_dir({str(out)!r}); (d / 'train.csv').write_text('half'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    stale = list(tmp_path.glob(".split.partial-*"))
    assert len(stale) == 1 and (stale[0] / "train.csv").read_text() == "half"
    live = tmp_path / f".split.partial-{_host_tag()}-{os.getpid()}-live"  # a run still going
    foreign = tmp_path / ".split.partial-otherhost-1-x"  # another machine's
    live.mkdir(), foreign.mkdir()
    result = invoke(runner, "split", train_csv, "--taxonomy", tax, "--mode", "full", "--out", out)
    assert result.exit_code == 0, result.output
    assert not stale[0].exists() and live.is_dir() and foreign.is_dir()
    assert sorted(p.name for p in tmp_path.glob(".split.*")) == sorted([live.name, foreign.name])
