"""Index files and the helpers build, add, merge, search and the shard-set build share: the
sidecar names, path checks and rebasing, row normalisation, atomic FAISS writes, and
:class:`IndexFiles` (an index with its sidecars). The layout is described in
:mod:`hspnet_cli.index.store`, which writes and loads whole indexes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import (
    output_error,
    output_error_in_message,
    output_errors,
)
from hspnet_cli.tagsfile.escape import unescape

FORMAT = "hspnet-index"
FORMAT_VERSION = 1
CHUNK_ROWS = 65536


def sidecar_json(index_path: Path) -> Path:
    return Path(f"{index_path}.json")


def sidecar_paths(index_path: Path) -> Path:
    return Path(f"{index_path}.paths.txt")


def iter_chunks(emb: np.ndarray, source: Path, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, contiguous float32 L2-normalised copy of rows start:start+chunk) over a memmap
    (``chunk`` defaults to :data:`CHUNK_ROWS`, read at call time).

    Raises:
        UserError: A non-finite or all-zero row (names the file and row).
    """
    chunk = chunk or CHUNK_ROWS
    for start in range(0, emb.shape[0], chunk):
        block = np.array(emb[start : start + chunk], dtype=np.float32, order="C")
        yield start, normalize_rows(block, source, start)


def normalize_rows(block: np.ndarray, source: Path | str, start: int = 0) -> np.ndarray:
    """L2-normalise rows in place (the tagger's are unit already; this guards against drift)."""
    finite = np.isfinite(block).all(axis=1)
    norms = np.linalg.norm(block, axis=1) if block.size else np.zeros(0)
    bad = np.flatnonzero(~finite | (norms == 0))
    if bad.size:
        raise UserError(f"{source}: embedding row {start + int(bad[0])} is not finite or is all zeros")
    block /= norms[:, None].astype(np.float32)
    return block


def rebase_paths(paths: list[str], old_root: Path, new_root: Path) -> list[str]:
    """Paths relative to ``old_root`` made relative to ``new_root`` (an ancestor of it)."""
    if old_root == new_root:
        return list(paths)
    prefix = Path(os.path.relpath(old_root, new_root))
    return [(prefix / p).as_posix() for p in paths]


def common_root(dirs: list[Path]) -> Path:
    """The deepest folder containing every one of ``dirs``."""
    return Path(os.path.commonpath([str(d) for d in dirs]))


def path_problem(path: str) -> str | None:
    """Why an index path cannot name a file under the index's root (None: it can)."""
    if not path:
        return "is empty"
    if "\0" in path:
        return "holds a NUL byte"
    if path.startswith(("/", "\\")) or (len(path) > 2 and path[0].isalpha() and path[1] == ":" and path[2] in "/\\"):
        return "is absolute"
    if ".." in path.replace("\\", "/").split("/"):
        return "climbs out of the images folder with '..'"
    return None


def read_paths(plist: Path, escaped: bool) -> list[str]:
    """The id -> path lines of a paths file (unescaped when ``escaped``), each checked with
    :func:`path_problem`."""
    try:
        text = plist.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise UserError(f"{plist}: cannot read the paths file ({exc.strerror or exc})") from None
    paths = text.split("\n")
    if paths and paths[-1] == "":
        paths.pop()
    if escaped:
        paths = [unescape(p) for p in paths]
    for number, path in enumerate(paths, 1):
        problem = path_problem(path)
        if problem is not None:
            raise UserError(
                f"{plist}:{number}: path {path[:200]!r} {problem}; index paths are relative to the "
                "images folder and stay inside it (was the file edited?): rebuild with hspnet index build"
            )
    return paths


@dataclass
class IndexFiles:
    """A loaded index: the FAISS object, its sidecar facts and id -> path list."""

    path: Path
    index: Any
    meta: dict[str, Any]
    paths: list[str]

    @property
    def images_dir(self) -> Path:
        return Path(self.meta["images_dir"])

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])


def write_faiss_atomic(index: Any, path: Path) -> None:
    """``faiss.write_index`` to a temporary file beside ``path``, then rename."""
    import faiss

    with output_errors(path, "index"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        err = (
            output_error(exc, path, "index")
            if isinstance(exc, OSError)
            else output_error_in_message(exc, path, "index")
            if isinstance(exc, RuntimeError)
            else None
        )
        if err is not None:
            raise err from None
        raise
