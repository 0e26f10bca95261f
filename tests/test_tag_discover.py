"""``hspnet tag`` discovery: which files, which keys, which order, lists and shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.discover import PathList, discover_images, read_path_list, shard_items
from hspnet_cli.tagging.run import parse_shard


def _touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_recursive_case_insensitive_sorted_keys(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "b.JPG",
        "a.jpeg",
        "c.PnG",
        "d.WebP",
        "e.bmp",
        "f.GIF",
        "g.tif",
        "h.TIFF",
        "notes.txt",
        "x.jpg.bak",
        "noext",
        "sub/a.jpeg",
        "sub/deeper/z.png",
        "other/a.jpeg",
        "a-b/k.png",
    )
    keys = list(discover_images(tmp_path))
    assert keys == sorted(keys)  # global code-point order of the relative path
    assert keys == [
        "a-b/k.png",
        "a.jpeg",
        "b.JPG",
        "c.PnG",
        "d.WebP",
        "e.bmp",
        "f.GIF",
        "g.tif",
        "h.TIFF",
        "other/a.jpeg",
        "sub/a.jpeg",
        "sub/deeper/z.png",
    ]
    assert list(discover_images(tmp_path)) == keys  # deterministic


def test_symlinked_folders_followed_and_loops_survived(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _touch(root, "a/1.jpg", "b/2.png")
    _touch(tmp_path, "outside/3.jpg")
    (root / "a" / "loop").symlink_to(root)  # a/loop -> root: a loop
    (root / "b" / "back").symlink_to(root / "b")  # self loop
    (root / "ext").symlink_to(tmp_path / "outside")  # followed
    (root / "c").symlink_to(root / "a")  # a second path to a folder already walked
    (root / "pic.jpg").symlink_to(root / "a" / "1.jpg")  # a file symlink is a file
    assert list(discover_images(root)) == ["a/1.jpg", "b/2.png", "ext/3.jpg", "pic.jpg"]


def test_unreadable_root_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="images folder not found"):
        discover_images(tmp_path / "nope")


def test_list_file(tmp_path: Path) -> None:
    _touch(tmp_path, "imgs/a.jpg", "imgs/sub/b.png")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\nsub/b.png\n\n{tmp_path / 'imgs' / 'a.jpg'}\nmissing.jpg\n./sub/b.png\n")
    assert list(read_path_list(lst, tmp_path / "imgs")) == ["sub/b.png", "a.jpg", "missing.jpg"]
    lst.write_text("a.jpg\n../secret.jpg\n")
    with pytest.raises(UserError, match=r"list.txt:2: '../secret.jpg' is not inside"):
        read_path_list(lst, tmp_path / "imgs")
    with pytest.raises(UserError, match="cannot read the --list file"):
        read_path_list(tmp_path / "none.txt", tmp_path / "imgs")


def test_path_list_and_shards() -> None:
    names = [f"d{i % 3}/é{i}.jpg" for i in range(10)] + [os.fsdecode(b"raw\xff.jpg")]
    pl = PathList(names)
    assert list(pl) == names and len(pl) == 11 and pl[-1] == names[-1]
    assert PathList(names).digest() == pl.digest() != PathList(names[:-1]).digest()
    shards = [list(shard_items(pl, i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(names)
    assert shards[1] == names[1::3]
    assert list(shard_items(pl, 0, 1)) == names


def test_parse_shard() -> None:
    assert parse_shard("1/4", env={}) == (1, 4)
    assert parse_shard(None, env={}) == (0, 1)
    assert parse_shard(None, env={"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert parse_shard("0/2", env={"RANK": "1", "WORLD_SIZE": "2"}) == (0, 2)  # explicit wins
    for bad in ("4/4", "x/2", "1", "1/2/3", "-1/2"):
        with pytest.raises(UserError):
            parse_shard(bad, env={})
