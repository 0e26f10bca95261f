"""Files of the index: the index with its sidecars, and helpers shared by build, add and merge.

The input (an ``hspnet tag`` output) is read by :mod:`hspnet_cli.tagsfile.reader`.

**Output** (``tags.faiss``): the FAISS index (id i = the i-th vector added), and two sidecars:

* ``tags.faiss.paths.txt``: one image path a line, line i = id i, relative to ``images_dir``,
  escaped as tags.csv's path cells are (:mod:`hspnet_cli.tagsfile.escape`; the sidecar
  says ``"paths_escaping": 1``);
  every path must stay inside that root: an absolute path, a ``..`` that climbs out of it, an
  empty line or a NUL is refused when the index is loaded (an edited or hostile paths file
  must never make ``search --copy-to`` read ``/etc/passwd``). Symlinks inside the root are
  followed, as ``hspnet tag`` follows them;
* ``tags.faiss.json``: format and version, ``images_dir`` (the root the paths are relative to),
  ``model``, ``embedding_dim``, ``factory``, ``index_type``, ``metric`` (always inner product on
  L2-normalised vectors), ``search_params`` (e.g. ``nprobe=32``), ``count``, ``sources`` (every
  tags.csv that added vectors, with its first id, rows added and rows skipped), the recall@10
  measured at build time and on how many vectors, faiss version and seed.

Every file is written to a temporary name beside its target and renamed when complete; the
index first, then the paths, then the JSON. The JSON's ``count`` must equal the index's and the
paths file's counts when loaded, so an update interrupted between the renames is detected
("... disagree") instead of silently mis-aligning ids and paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write, read_json_object, write_text_atomic
from hspnet_cli.index.files import (
    FORMAT,
    FORMAT_VERSION,
    IndexFiles,
    read_paths,
    sidecar_json,
    sidecar_paths,
    write_faiss_atomic,
)
from hspnet_cli.tagsfile.escape import TEXT_ESCAPING, escape


def save_index(path: Path, index: Any, meta: dict[str, Any], paths: list[str]) -> None:
    """Write the index, its paths file and its JSON (in that order, each atomically)."""
    if index.ntotal != len(paths):
        raise AssertionError(f"index holds {index.ntotal} vectors but {len(paths)} paths were given")
    meta = {
        **meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": int(index.ntotal),
        "paths_file": sidecar_paths(path).name,
    }
    write_faiss_atomic(index, path)
    meta["paths_escaping"] = TEXT_ESCAPING
    with atomic_write(sidecar_paths(path)) as fh:
        for p in paths:
            fh.write(escape(p) + "\n")
    write_text_atomic(sidecar_json(path), json.dumps(meta, indent=2) + "\n")


def load_index(path: str | os.PathLike) -> IndexFiles:
    """Read an index with its sidecars and check that they agree.

    Raises:
        UserError: A missing file, or counts that disagree (an interrupted update).
    """
    import faiss

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: index not found (make one with hspnet index build TAGS.csv --out {path})")
    meta = read_json_object(sidecar_json(path), "index sidecar")
    if meta.get("format") != FORMAT:
        raise UserError(f"{sidecar_json(path)}: not an hspnet index sidecar (format {meta.get('format')!r})")
    if meta.get("keys_file"):  # a sharded build's index: keys stay on disk
        from hspnet_cli.index.ondisk import load_scale_index

        return load_scale_index(path, meta)
    plist = sidecar_paths(path)
    if not plist.is_file():
        raise UserError(f"{plist}: paths file of index {path.name} not found")
    paths = read_paths(plist, escaped=bool(meta.get("paths_escaping")))
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable FAISS index ({str(exc).strip().splitlines()[-1]})") from None
    if not (index.ntotal == len(paths) == int(meta.get("count", -1))):
        raise UserError(
            f"{path} ({index.ntotal} vectors), {plist.name} ({len(paths)} paths) and "
            f"{sidecar_json(path).name} (count {meta.get('count')}) disagree; an update was "
            "interrupted: rebuild with hspnet index build"
        )
    if index.d != int(meta["embedding_dim"]):
        raise UserError(f"{path}: index dim {index.d} but its sidecar says {meta['embedding_dim']}")
    return IndexFiles(path=path, index=index, meta=meta, paths=paths)
