"""Assembling a sharded build's pieces into one index, in RAM or on disk, and loading it back.

**Choice: faiss's on-disk inverted lists, not per-shard indexes searched together.** Each piece
of the build is an IVF index holding only its vectors' codes (same trained quantizer); at the
end :func:`assemble` merges every piece's lists into one ``OnDiskInvertedLists`` file
(``INDEX.<build>.ivfdata``), list by list, reading the pieces memory-mapped. A query then does
one coarse-quantizer search and reads ``nprobe`` contiguous lists from one mapped file (the page
cache keeps hot lists in RAM; RAM use is the quantizer + whatever the OS caches). Per-shard
indexes would cost a quantizer search and ``nprobe`` scattered reads *per shard* per query (100
shards: 100x the seeks) and a top-k merge; they only win when shards live on different
machines, which is not this tool's job. The merge costs one extra sequential write of the codes.

``layout="memory"`` merges the pieces into ordinary in-RAM lists instead (one ``.faiss`` file,
as ``hspnet index build`` always wrote); ``auto`` picks disk when the codes and ids would take
more than a quarter of this machine's RAM.

**Files** (``INDEX`` = the ``--out`` path): ``INDEX`` (faiss index; with on-disk lists it holds
the quantizer and the lists' offsets, and names its ivfdata file, found in the same folder),
``INDEX.<build>.ivfdata``, ``INDEX.<build>.keys`` + ``.offsets.npy`` (:mod:`.keystore`), and
``INDEX.json`` last: it names the build's files and the index file's size, so a build killed
between two renames never pairs one build's index with another's keys; files of older builds
are removed after the JSON is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.index.files import FORMAT, FORMAT_VERSION, IndexFiles, sidecar_json, write_faiss_atomic
from hspnet_cli.index.keystore import KeyStore, concat_keys, keys_file, offsets_file

RAM_SHARE = 0.25


def ram_bytes() -> int:
    """Physical memory of this machine (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def choose_layout(layout: str, n: int, code_size: int) -> str:
    """``memory`` or ``ondisk`` for ``n`` vectors of ``code_size`` bytes (+ 8-byte ids)."""
    if layout in ("memory", "ondisk"):
        return layout
    ram = ram_bytes()
    return "ondisk" if ram and n * (code_size + 8) > RAM_SHARE * ram else "memory"


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """faiss's on-disk lists print "resizing ..." with C printf: keep it off stdout (``--json``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _ivf(index: Any) -> Any:
    import faiss

    return faiss.extract_index_ivf(index)


def assemble(
    trained: Path, pieces: list[Path], key_pieces: list[Path], n: int, out: Path, build_id: str, layout: str
) -> Any:
    """Merge piece indexes into the final index at ``out`` (+ its keys); returns the index object.

    Writes the ivfdata (on disk), keys and offsets, then the index, each atomically; the JSON is
    the caller's last step.
    """
    import faiss

    index = faiss.read_index(str(trained))
    ivf = _ivf(index)
    if layout == "ondisk":
        data = Path(f"{out}.{build_id}.ivfdata")
        tmp = data.with_name(f".{data.name}.tmp")
        tmp.unlink(missing_ok=True)
        loaded = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP) for p in pieces]
        lists = faiss.InvertedListsPtrVector()
        for piece in loaded:
            piece_ivf = _ivf(piece)
            lists.push_back(piece_ivf.invlists)
        ondisk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(tmp))
        with _stdout_to_stderr():
            total = ondisk.merge_from_multiple(lists.data(), lists.size(), False)
        del loaded, lists
        ondisk.filename = data.name  # read back with IO_FLAG_ONDISK_SAME_DIR: beside the index
        os.replace(tmp, data)
        index.ntotal = ivf.ntotal = total
        ivf.replace_invlists(ondisk, True)
        ondisk.this.disown()
    else:
        for p in pieces:
            piece = faiss.read_index(str(p))
            ivf.merge_from(_ivf(piece), 0)
            del piece
        total = index.ntotal
    if int(total) != n:
        raise UserError(
            f"{trained.parent}: the pieces hold {total} vectors, {n} expected; remove the work folder and build again"
        )
    concat_keys(key_pieces, n, keys_file(out, build_id), offsets_file(out, build_id))
    write_faiss_atomic(index, out)
    return index


def write_meta(out: Path, meta: dict[str, Any], build_id: str, layout: str, count: int) -> dict[str, Any]:
    """Write ``INDEX.json`` (the build's commit point), then remove older builds' files."""
    meta = {
        **meta,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": count,
        "layout": layout,
        "build_id": build_id,
        "keys_file": keys_file(out, build_id).name,
        "offsets_file": offsets_file(out, build_id).name,
        "ivfdata_file": f"{out.name}.{build_id}.ivfdata" if layout == "ondisk" else None,
        "index_bytes": out.stat().st_size,
        "paths_escaping": 1,
    }
    write_text_atomic(sidecar_json(out), json.dumps(meta, indent=2) + "\n")
    keep = {out.name, sidecar_json(out).name, meta["keys_file"], meta["offsets_file"], meta["ivfdata_file"]}
    for old in out.parent.glob(f"{out.name}.b*"):
        if old.name not in keep and old.suffix in (".keys", ".npy", ".ivfdata"):
            with contextlib.suppress(OSError):
                old.unlink()
    return meta


def load_scale_index(path: Path, meta: dict[str, Any]) -> IndexFiles:
    """Load an index written by the sharded build (its keys stay on disk).

    Raises:
        UserError: A missing or mismatched file of the build.
    """
    import faiss

    if int(meta.get("index_bytes", -1)) != path.stat().st_size:
        raise UserError(
            f"{path}: the index file is not the one {sidecar_json(path).name} describes (a build was "
            "interrupted between its renames): rerun the same hspnet index build to finish it"
        )
    flags = 0
    if meta.get("layout") == "ondisk":
        data = path.parent / str(meta.get("ivfdata_file"))
        if not data.is_file():
            raise UserError(f"{data}: the on-disk lists of index {path.name} are missing (moved without them?)")
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR
    try:
        with _stdout_to_stderr():  # faiss prints where it found the ivfdata
            index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable FAISS index ({str(exc).strip().splitlines()[-1]})") from None
    keys = KeyStore(path.parent / str(meta["keys_file"]), path.parent / str(meta["offsets_file"]), path.name)
    if not (index.ntotal == len(keys) == int(meta.get("count", -1))):
        raise UserError(
            f"{path} ({index.ntotal} vectors), {keys.path.name} ({len(keys)} keys) and "
            f"{sidecar_json(path).name} (count {meta.get('count')}) disagree: rebuild with hspnet index build"
        )
    if index.d != int(meta["embedding_dim"]):
        raise UserError(f"{path}: index dim {index.d} but its sidecar says {meta['embedding_dim']}")
    return IndexFiles(path=path, index=index, meta=meta, paths=keys)  # type: ignore[arg-type]


def source_vector(idx: IndexFiles, i: int) -> Any:
    """The original (1, D) unit vector of id ``i``, read from the shard it was added from; None
    when the sources are gone or changed (the caller falls back to the stored codes).

    Why: ``reconstruct`` on an IVF index first builds a direct map (8 bytes a vector: 8 GB and a
    scan of every list at 1B), and a PQ code only approximates the vector.
    """
    import numpy as np

    from hspnet_cli.index.shards import open_shard_set

    sources = [s for s in idx.meta.get("sources", []) if isinstance(s, dict) and "file" in s]
    firsts = [int(s.get("first_id", 0)) for s in sources]
    pos = int(np.searchsorted(firsts, i, side="right")) - 1
    if pos < 0 or not 0 <= i - firsts[pos] < int(sources[pos].get("rows", 0)):
        return None
    try:
        shard = open_shard_set([sources[pos]["file"]]).shards[0]
    except UserError:
        return None
    if shard.rows != int(sources[pos]["rows"]) or shard.dim != idx.dim:
        return None
    return shard.gather(np.array([i - firsts[pos]], dtype=np.int64))
