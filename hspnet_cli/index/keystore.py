"""Id -> key sidecar of a large index, on disk: never a Python list of 100M strings.

``INDEX.<build>.keys`` holds every key, escaped as tags paths are (:mod:`hspnet_cli.tagsfile.escape`,
so no key holds a line break), one a line, line i = id i. ``INDEX.<build>.offsets.npy`` holds n + 1
int64 byte offsets (key i is bytes ``off[i] : off[i+1] - 1``). Both are memory-mapped when the
index is loaded: looking up a hit's key reads a few bytes, and RAM stays flat at any size
(100M keys of ~60 bytes = 6 GB of keys + 0.8 GB of offsets, all on disk).

Keys are written piece by piece during the build (``parts/piece-XXXXXX.keys``) and
concatenated at the end (:func:`concat_keys`), streaming both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write
from hspnet_cli.tagsfile.escape import escape, unescape


def keys_file(index_path: Path, build_id: str) -> Path:
    """``INDEX.<build>.keys``: named by build, so an index and the keys of another build never pair."""
    return Path(f"{index_path}.{build_id}.keys")


def offsets_file(index_path: Path, build_id: str) -> Path:
    return Path(f"{index_path}.{build_id}.offsets.npy")


def write_piece_keys(path: Path, keys: Iterable[str]) -> int:
    """Write escaped keys one a line (atomically); returns how many."""
    count = 0
    with atomic_write(path, "wb") as fh:
        for key in keys:
            fh.write(escape(key).encode("utf-8", "surrogateescape") + b"\n")
            count += 1
    return count


def concat_keys(pieces: list[Path], n: int, keys_out: Path, offsets_out: Path) -> None:
    """Join the piece key files into ``INDEX.keys`` and its offsets (each atomically).

    Raises:
        UserError: The pieces hold other than ``n`` keys (a damaged work folder).
    """
    out = offsets_out
    tmp = out.with_name(f".{out.name}.tmp")
    offsets = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int64, shape=(n + 1,))
    i, pos = 0, 0
    try:
        with atomic_write(keys_out, "wb") as fh:
            offsets[0] = 0
            for piece in pieces:
                with open(piece, "rb") as src:
                    for chunk in iter(lambda: src.read(1 << 24), b""):
                        fh.write(chunk)
                        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + pos + 1
                        if i + len(ends) > n:
                            raise UserError(
                                f"{piece}: more keys than the {n} vectors indexed; "
                                "remove the work folder and build again"
                            )
                        offsets[i + 1 : i + 1 + len(ends)] = ends
                        i += len(ends)
                        pos += len(chunk)
        if i != n:
            raise UserError(
                f"{pieces[-1] if pieces else keys_out}: {i} keys for {n} vectors; "
                "remove the work folder and build again"
            )
        offsets.flush()
        del offsets
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


class KeyStore(Sequence):
    """Read-only id -> key sequence over the memory-mapped sidecar (``len``, ``[i]``, iteration,
    :meth:`find`); what :class:`hspnet_cli.index.store.IndexFiles` holds as ``paths``."""

    def __init__(self, kf: Path, of: Path, index_name: str = "") -> None:
        for f in (kf, of):
            if not f.is_file():
                raise UserError(
                    f"{f}: key file of index {index_name} not found (it is written beside the "
                    "index; was the index moved without it?)"
                )
        try:
            self.offsets = np.load(of, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise UserError(f"{of}: not a readable offsets array ({exc}); rebuild the index") from None
        size = kf.stat().st_size
        self.path = kf
        self.blob = np.memmap(kf, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or int(self.offsets[-1]) != size:
            raise UserError(
                f"{of}: does not match {kf.name} ({size} bytes); an update was interrupted: rebuild the index"
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1]) - 1
        return unescape(bytes(self.blob[a:b]).decode("utf-8", "surrogateescape"))

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]

    def find(self, key: str) -> list[int]:
        """Ids whose key is ``key``: a scan of the mapped bytes (C speed: ~1 s a GB), no dict in RAM."""
        needle = b"\n" + escape(key).encode("utf-8", "surrogateescape") + b"\n"
        data = memoryview(self.blob).tobytes() if len(self.blob) < (1 << 20) else None
        found: list[int] = []
        if data is not None:
            hay = b"\n" + data
            at = hay.find(needle)
            while at >= 0:
                found.append(int(np.searchsorted(self.offsets, at, side="right") - 1))
                at = hay.find(needle, at + 1)
            return found
        import mmap

        with open(self.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm[: len(needle) - 1] == needle[1:]:
                found.append(0)
            at = mm.find(needle)
            while at >= 0:
                found.append(int(np.searchsorted(self.offsets, at + 1, side="right") - 1))
                at = mm.find(needle, at + 1)
        return found
