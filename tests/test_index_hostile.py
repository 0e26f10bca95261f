"""An index whose paths file was edited, --copy-to that must not overwrite, --like and its
query, the index root after ``index add``, and the query model compared by content."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from index_helpers import random_unit, run, write_tags

from hspnet_cli.index.build import build_index


@pytest.fixture
def tiny_index(tmp_path: Path) -> dict:
    images = tmp_path / "root" / "images"
    images.mkdir(parents=True)
    paths = [f"{i:02d}.jpg" for i in range(8)]
    for p in paths:
        (images / p).write_bytes(b"image " + p.encode())
    (tmp_path / "root" / "secret.txt").write_text("beside the root\n")
    write_tags(tmp_path / "t.csv", random_unit(8), paths, images_dir=images)
    build_index(tmp_path / "t.csv", tmp_path / "t.faiss")
    return {"index": tmp_path / "t.faiss", "images": images, "paths": paths}


@pytest.mark.parametrize(
    "evil", ["/etc/passwd", "../../../../etc/passwd", "../secret.txt", "a/../../secret.txt", "C:/Windows/win.ini", ""]
)
def test_an_index_path_outside_its_root_is_refused_and_nothing_copied(
    tiny_index: dict, tmp_path: Path, evil: str
) -> None:
    plist = Path(f"{tiny_index['index']}.paths.txt")
    lines = plist.read_text().split("\n")
    lines[3] = evil
    plist.write_text("\n".join(lines))
    out = tmp_path / "copied"
    result = run("search", tiny_index["index"], "--like", "00.jpg", "--k", 8, "--copy-to", out)
    assert result.exit_code == 2, result.output
    err = " ".join(result.stderr.split())
    assert f"{plist}:4: path {evil!r}" in err and "rebuild with hspnet index build" in err
    assert len(result.stderr.strip().splitlines()) <= 3 and "Traceback" not in result.output
    assert not out.exists()


def test_copy_to_never_overwrites_silently_and_writes_only_inside_its_folder(tiny_index: dict, tmp_path: Path) -> None:
    out = tmp_path / "similar"
    out.mkdir()
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me\n")
    (out / "01_00.jpg").symlink_to(outside)  # a trap where the first copy would go
    result = run(
        "search", tiny_index["index"], "--like", "00.jpg", "--k", 3, "--copy-to", out, "--json", "--include-self"
    )
    assert result.exit_code == 2 and "exists already" in result.stderr and "nothing copied" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["01_00.jpg"] and outside.read_text() == "keep me\n"
    result = run(
        "search",
        tiny_index["index"],
        "--like",
        "00.jpg",
        "--k",
        3,
        "--copy-to",
        out,
        "--json",
        "--overwrite",
        "--include-self",
    )
    assert result.exit_code == 0, result.output
    copied = json.loads(result.stdout)["copied"]
    assert outside.read_text() == "keep me\n"  # the link was replaced, not written through
    assert all(Path(p).parent == out and not Path(p).is_symlink() for p in copied) and len(copied) == 3
    assert (out / "01_00.jpg").read_bytes() == b"image 00.jpg"  # hit 1 is the query itself here


def test_like_leaves_the_query_out_unless_asked(tiny_index: dict) -> None:
    hits = json.loads(run("search", tiny_index["index"], "--like", "03.jpg", "--k", 7, "--json").stdout)["hits"]
    assert "03.jpg" not in [h["path"] for h in hits] and len(hits) == 7 and hits[0]["rank"] == 1
    hits = json.loads(
        run("search", tiny_index["index"], "--like", "03.jpg", "--k", 7, "--json", "--include-self").stdout
    )["hits"]
    assert hits[0]["path"] == "03.jpg" and len(hits) == 7


def test_index_add_records_each_batch_root_so_like_keeps_working(tmp_path: Path) -> None:
    vecs = random_unit(20)
    a = write_tags(
        tmp_path / "a.csv", vecs[:10], [f"{i:06d}.png" for i in range(10)], images_dir=tmp_path / "photos" / "2023"
    )
    b = write_tags(
        tmp_path / "b.csv", vecs[10:], [f"{i:06d}.png" for i in range(10, 20)], images_dir=tmp_path / "photos" / "2024"
    )
    build_index(a, tmp_path / "x.faiss")
    result = run("index", "add", tmp_path / "x.faiss", b)
    assert result.exit_code == 0 and "root moved" in " ".join(result.stdout.split())
    for query, listed in (
        ("000001.png", "2023/000001.png"),
        ("000012.png", "2024/000012.png"),
        ("2023/000001.png", "2023/000001.png"),
    ):
        hits = json.loads(run("search", tmp_path / "x.faiss", "--like", query, "--json", "--include-self").stdout)
        assert hits["hits"][0]["path"] == listed
    meta = json.loads(Path(f"{tmp_path / 'x.faiss'}.json").read_text())
    assert [s["images_dir"] for s in meta["sources"]] == [str(tmp_path / "photos" / d) for d in ("2023", "2024")]


def test_query_model_is_compared_by_content_not_by_path_spelling(
    demo_split, tmp_path: Path, caplog, monkeypatch
) -> None:
    import torch
    from test_train import tiny

    from hspnet_cli.index.search import same_model
    from hspnet_cli.index.store import load_index
    from hspnet_cli.model.checkpoint import save_checkpoint
    from hspnet_cli.scoring.scorer import load_scorer
    from hspnet_cli.tagging.run import tag_images
    from hspnet_cli.train.loop import train

    train(
        demo_split["split"],
        demo_split["images"],
        tmp_path / "run",
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    ckpt = tmp_path / "run" / "best.ckpt"
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(demo_split["images"].glob("*.png"))[:6]:
        (images / p.name).write_bytes(p.read_bytes())
    tag_images(images, tmp_path / "t.csv", load_scorer(ckpt), workers=0, progress=False)
    build_index(tmp_path / "t.csv", tmp_path / "t.faiss")
    idx = load_index(tmp_path / "t.faiss")
    monkeypatch.chdir(ckpt.parent)
    other_spelling = load_scorer(Path("..") / ckpt.parent.name / ckpt.name)
    assert other_spelling.description != idx.meta["model"] and same_model(other_spelling, idx)
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    assert same_model(load_scorer(copy), idx)  # same bytes, another file
    caplog.set_level(logging.WARNING)
    hits = run(
        "search",
        tmp_path / "t.faiss",
        "--image",
        images / os.listdir(images)[0],
        "--checkpoint",
        Path("..") / ckpt.parent.name / ckpt.name,
        "--json",
        "--device",
        "cpu",
    )
    assert hits.exit_code == 0 and "is not the index's model" not in caplog.text + hits.stderr
    data = torch.load(ckpt, weights_only=True)
    data["label_features"] = data["label_features"] + 1.0  # another model under the same name
    save_checkpoint(copy, {k: v for k, v in data.items() if k not in ("format", "format_version", "package_version")})
    assert not same_model(load_scorer(copy), idx)
