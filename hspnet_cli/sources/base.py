"""Sources of images for ``hspnet tag``: a listing of keys cut into blocks, and bytes by key.

A source lists its images once, in a deterministic order, into a compact
:class:`~hspnet_cli.sources.discover.PathList` (the only copy of the listing in memory), and cuts
the listing into numbered blocks. A block is the unit of work, of output (one Parquet part file
per block: ``part-{block:06d}.parquet``) and of retry: a block done twice writes the same file
under the same name, so no image can appear twice.

Keys (stable across runs and machines, written in every output):

* folder: the path relative to the folder, POSIX (``cats/a.jpg``), as the local engine has always done;
* fsspec URL prefix: the object's full URL (``s3://bucket/prefix/cats/a.jpg``);
* tar shards: ``SHARD#MEMBER``, SHARD relative to the pattern's folder (``000003.tar#00042.jpg``).

Sources are pickled to Ray workers: they hold only their spec and open file systems lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hspnet_cli.sources.discover import PathList, discover_images, read_path_list

DEFAULT_BLOCK_SIZE = 1024


@dataclass(frozen=True)
class Block:
    """Block ``index`` of a source: listing positions ``[start, stop)`` or, for tars, one shard."""

    index: int
    start: int = 0
    stop: int = 0
    shard: str = ""


@dataclass
class OpenBlock:
    """A block's keys and random access to their bytes (``read(i)``: bytes, or raises OSError)."""

    keys: list[str]
    read: Callable[[int], bytes]


class Source:
    """Base class: see the module doc. ``root`` is what keys are relative to (the manifest's
    ``images_dir``); ``kind`` is ``folder``, ``url`` or ``tar``."""

    kind = "base"
    root = ""

    def describe(self) -> str:
        return self.root

    def plan(self, block_size: int) -> list[Block]:
        """The blocks of this source, in order."""
        raise NotImplementedError

    def items(self) -> PathList | None:
        """The whole listing (None for tar shards: they are listed block by block)."""
        return None

    def open_block(self, block: Block) -> OpenBlock:
        raise NotImplementedError

    def local_path(self, key: str) -> str | None:
        """A file path holding the image of ``key``, or None when it is not a plain local file."""
        return None


class ListedSource(Source):
    """A source whose listing is known up front and blocks are fixed-size slices of it."""

    _items: PathList | None = None

    def items(self) -> PathList:
        if self._items is None:
            self._items = self._list()
        return self._items

    def _list(self) -> PathList:
        raise NotImplementedError

    def plan(self, block_size: int) -> list[Block]:
        n = len(self.items())
        return [Block(i, s, min(s + block_size, n)) for i, s in enumerate(range(0, n, block_size))]

    def open_block(self, block: Block) -> OpenBlock:
        items = self.items()
        return self.open_keys([items[p] for p in range(block.start, block.stop)])

    def open_keys(self, keys: list[str]) -> OpenBlock:
        """A block given by its keys (what a Ray task receives: workers never list the source)."""
        return OpenBlock(list(keys), lambda i: self.read_key(keys[i]))

    def read_key(self, key: str) -> bytes:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_items", None)  # workers get block keys, not the listing
        state.pop("_fs", None)
        return state


class FolderSource(ListedSource):
    """A local folder (recursively, or only the paths of ``--list``)."""

    kind = "folder"

    def __init__(self, folder: str | Path, list_file: str | Path | None = None) -> None:
        self.root = os.path.abspath(folder)
        self.list_file = str(list_file) if list_file is not None else None
        self.skipped: dict[str, int] = {}

    def _list(self) -> PathList:
        from collections import Counter

        if self.list_file is not None:
            return read_path_list(self.list_file, self.root)
        skipped: Counter = Counter()
        items = discover_images(self.root, skipped)
        self.skipped = dict(skipped)
        return items

    def read_key(self, key: str) -> bytes:
        with open(os.path.join(self.root, key), "rb") as fh:
            return fh.read()

    def local_path(self, key: str) -> str | None:
        return os.path.join(self.root, key)


def read_one(opened: OpenBlock, i: int) -> tuple[bytes | None, str]:
    """(bytes or None, error) of key ``i`` of an opened block."""
    try:
        return opened.read(i), ""
    except FileNotFoundError:
        return None, "file not found"
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or type(exc).__name__}"


def iter_block_bytes(opened: OpenBlock) -> Iterator[tuple[str, bytes | None, str]]:
    """``(key, bytes or None, error)`` for each key of an opened block, in order."""
    for i, key in enumerate(opened.keys):
        data, err = read_one(opened, i)
        yield key, data, err
