"""Building, growing and merging FAISS indexes over ``hspnet tag`` embeddings.

Vectors are L2-normalised and compared by inner product (= cosine similarity). Ids are
sequential: id i is the i-th vector added, and line i of ``<index>.paths.txt``.

**Size rule** (:func:`choose_factory`; ``--factory`` overrides it with any faiss factory string):

* ``n < 100,000``: ``Flat`` (exact ``IndexFlatIP``). A brute-force scan of 100k x 512 floats
  is a few milliseconds a query, so there is nothing to gain from approximation, and nothing
  to train.
* ``100,000 <= n < 2,000,000``: ``IVF{nlist},Flat`` with ``nlist = round(4 sqrt(n))`` (faiss's
  guideline of 4-16 sqrt(n) lists, at the low end so every list keeps enough training points).
  Vectors are kept uncompressed (2M x 512 float32 = 4 GB still fits in memory), so recall
  depends only on ``nprobe``.
* ``n >= 2,000,000``: ``IVF{nlist},PQ{m}x8`` with ``m`` = the largest divisor of D that is at
  most D/4 (128 bytes a vector at D=512: 16x smaller than float32), because uncompressed
  vectors no longer fit comfortably in memory. nlist = round(4 sqrt(n)), at most 65,536.

``nprobe`` starts at ``max(16, ceil(nlist / 32))`` (about 3% of the lists); when the measured
recall@10 is below 0.95 and no ``--nprobe`` was given, it is doubled (up to nlist / 4) until it
is reached. The chosen value is stored as ``search_params`` and used by ``hspnet search``.

Training uses a seeded sample of ``min(n, 256 nlist, 1,000,000)`` vectors (faiss's k-means
uses at most 256 points a centroid anyway). Vectors are read from the memmapped embedding
file and added in chunks of 65,536 rows. With faiss-gpu and a visible GPU
(``faiss.get_num_gpus() > 0``) training and adding run on the GPU, and the index is copied back
to the CPU for writing; a factory the GPU does not support falls back to the CPU.

**Recall at build time**: for an approximate index, ``min(1000, n)`` seeded queries taken from
the data are searched in the index and, exactly, by a chunked brute-force scan of the embedding
file; recall@10 is the mean fraction of the exact top 10 that the index returns. An exact index
reports 1.0 without measuring.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.index import files
from hspnet_cli.index.files import common_root, iter_chunks, normalize_rows, rebase_paths
from hspnet_cli.index.store import load_index, save_index
from hspnet_cli.tagsfile.reader import TagsOutput, read_tags_output

log = logging.getLogger(__name__)

FLAT_MAX = 100_000
IVF_FLAT_MAX = 2_000_000
RECALL_TARGET = 0.95
RECALL_K = 10
MAX_TRAIN = 1_000_000


def _nlist(n: int) -> int:
    return int(min(65536, max(1, round(4 * math.sqrt(n)))))


def pq_subquantizers(dim: int) -> int:
    """The largest divisor of ``dim`` that is at most ``dim / 4`` (at least 1)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def choose_factory(n: int, dim: int) -> str:
    """The faiss factory string the size rule picks for ``n`` vectors of width ``dim``."""
    if n < FLAT_MAX:
        return "Flat"
    if n < IVF_FLAT_MAX:
        return f"IVF{_nlist(n)},Flat"
    return f"IVF{_nlist(n)},PQ{pq_subquantizers(dim)}x8"


def default_nprobe(nlist: int) -> int:
    return int(min(nlist, max(16, math.ceil(nlist / 32))))


def _ivf(index: Any) -> Any | None:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None


def _make_index(factory: str, dim: int) -> Any:
    import faiss

    if factory == "Flat":
        return faiss.IndexFlatIP(dim)
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "rejected"
        raise UserError(f"--factory '{factory}' is not a faiss factory string for dim {dim} ({msg})") from None


def set_search_params(index: Any, params: str) -> None:
    """Apply a stored ``search_params`` string such as ``nprobe=32`` (empty: nothing)."""
    import faiss

    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def _gather(emb: np.ndarray, rows: np.ndarray, source: Path) -> np.ndarray:
    """Normalised float32 copies of ``emb[rows]`` (rows sorted, read chunk by chunk)."""
    out = np.empty((len(rows), emb.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), files.CHUNK_ROWS):
        out[start : start + files.CHUNK_ROWS] = emb[rows[start : start + files.CHUNK_ROWS]]
    return normalize_rows(out, source)


def exact_topk(queries: np.ndarray, emb: np.ndarray, source: Path, k: int) -> np.ndarray:
    """(q, k) ids of the exact inner-product top k, by a chunked scan of the embedding memmap."""
    q = queries.shape[0]
    best_s = np.full((q, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q, 0), dtype=np.int64)
    for start, block in iter_chunks(emb, source, chunk=min(16384, files.CHUNK_ROWS)):
        scores = queries @ block.T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_i


def recall_at_k(
    index: Any,
    emb: np.ndarray,
    source: Path,
    k: int = RECALL_K,
    queries: int = 1000,
    seed: int = 0,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, int]:
    """Recall@k of ``index`` against exact search, on a seeded sample of rows of ``emb``.

    Returns:
        (recall, number of queries).
    """
    n = emb.shape[0]
    if truth is None:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
        qv = _gather(emb, rows, source)
        truth = (qv, exact_topk(qv, emb, source, min(k, n)))
    qv, exact = truth
    _, found = index.search(qv, exact.shape[1])
    hits = sum(len(set(a.tolist()) & set(b.tolist()) - {-1}) for a, b in zip(found, exact))
    return hits / float(exact.size), int(qv.shape[0])


def _on_gpu(index: Any) -> tuple[Any, bool]:
    """The index cloned to all GPUs when faiss-gpu sees one (and supports it), else itself."""
    import faiss

    if faiss.get_num_gpus() <= 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return index, False
    try:
        return faiss.index_cpu_to_all_gpus(index), True
    except (RuntimeError, AssertionError) as exc:
        log.warning("faiss-gpu cannot hold this index (%s); building on the CPU", str(exc).strip()[:200])
        return index, False


def _to_cpu(index: Any, gpu: bool) -> Any:
    import faiss

    return faiss.index_gpu_to_cpu(index) if gpu else index


def _train_and_add(index: Any, data: TagsOutput, factory: str, seed: int) -> tuple[Any, bool]:
    emb = data.embeddings()
    index, gpu = _on_gpu(index)
    if not index.is_trained:
        ivf = _ivf(index)
        nlist = int(ivf.nlist) if ivf is not None else 1
        size = min(data.n, max(256 * nlist, 10_000), MAX_TRAIN)
        if ivf is not None and size < nlist:
            raise UserError(
                f"--factory '{factory}' needs at least {nlist} vectors to train its {nlist} lists; "
                f"{data.file} has {data.n}: use fewer lists or the default (Flat below {FLAT_MAX:,})"
            )
        rows = np.sort(np.random.default_rng(seed).choice(data.n, size=size, replace=False))
        sample = _gather(emb, rows, data.emb)
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise UserError(
                f"training '{factory}' on {size} vectors of {data.file} failed: {str(exc).strip().splitlines()[-1]}"
            ) from None
        del sample
    for _, block in iter_chunks(emb, data.emb):
        index.add(block)
    return _to_cpu(index, gpu), gpu


def _tune(
    index: Any, emb: np.ndarray, source: Path, nprobe: int | None, seed: int, queries: int
) -> tuple[str, float, int]:
    """Pick search parameters and measure recall@10: (search_params, recall, queries used)."""
    import faiss

    ivf = _ivf(index)
    if ivf is None and not hasattr(index, "hnsw"):
        if isinstance(index, faiss.IndexFlat):
            return "", 1.0, 0
        recall, used = recall_at_k(index, emb, source, queries=queries, seed=seed)
        return "", recall, used
    n = emb.shape[0]
    rows = np.sort(np.random.default_rng(seed + 1).choice(n, size=min(queries, n), replace=False))
    qv = _gather(emb, rows, source)
    truth = (qv, exact_topk(qv, emb, source, min(RECALL_K, n)))
    if ivf is not None:
        name, value, cap = "nprobe", nprobe or default_nprobe(int(ivf.nlist)), max(1, int(ivf.nlist) // 4)
        value = min(value, int(ivf.nlist))
    else:
        name, value, cap = "efSearch", nprobe or 64, 1024
    while True:
        params = f"{name}={value}"
        set_search_params(index, params)
        recall, used = recall_at_k(index, emb, source, truth=truth)
        if nprobe is not None or recall >= RECALL_TARGET or value >= cap:
            return params, recall, used
        value = min(cap, value * 2)


def _base_meta(data: TagsOutput, factory: str, index: Any) -> dict[str, Any]:
    import faiss

    model = data.manifest.get("model")
    fingerprint = model.get("fingerprint") if isinstance(model, dict) else None  # search compares by content
    return {
        "images_dir": str(data.images_dir),
        "model": data.model,
        "model_fingerprint": fingerprint,
        "embedding_dim": data.dim,
        "factory": factory,
        "index_type": type(index).__name__,
        "metric": "inner_product",
        "faiss_version": faiss.__version__,
    }


def default_index_path(tags_csv: Path) -> Path:
    return tags_csv.with_suffix(".faiss")


def build_index(
    tags_csv: str | os.PathLike,
    out: str | os.PathLike | None = None,
    factory: str | None = None,
    nprobe: int | None = None,
    seed: int = 0,
    recall_queries: int = 1000,
) -> dict[str, Any]:
    """Build an index over one ``hspnet tag`` output; returns the sidecar facts written.

    Raises:
        UserError: Bad input files, an empty tags file, a bad factory string or too little
            data to train it.
    """
    from hspnet_cli.core.locks import output_lock

    out = Path(out) if out is not None else default_index_path(Path(tags_csv))
    with output_lock(out, "index"):
        return _build_index(tags_csv, out, factory, nprobe, seed, recall_queries)


def _build_index(
    tags_csv: str | os.PathLike, out: Path, factory: str | None, nprobe: int | None, seed: int, recall_queries: int
) -> dict[str, Any]:
    data = read_tags_output(tags_csv)
    if data.n == 0:
        raise UserError(f"{data.file}: no rows to index")
    if nprobe is not None and nprobe < 1:
        raise UserError(f"--nprobe must be at least 1; got {nprobe}")
    chosen = factory.strip() if factory else choose_factory(data.n, data.dim)
    t0 = time.perf_counter()
    index = _make_index(chosen, data.dim)
    index, gpu = _train_and_add(index, data, chosen, seed)
    params, recall, used = _tune(index, data.embeddings(), data.emb, nprobe, seed, recall_queries)
    meta = {
        **_base_meta(data, chosen, index),
        "search_params": params,
        "factory_rule": "--factory" if factory else "size rule",
        "built_on": "gpu" if gpu else "cpu",
        "seed": seed,
        "recall_at_10": round(recall, 4),
        "recall_queries": used,
        "recall_measured_on": data.n,
        "build_seconds": round(time.perf_counter() - t0, 3),
        "sources": [
            {
                "csv": str(data.file.absolute()),
                "images_dir": str(data.images_dir),
                "first_id": 0,
                "rows": data.n,
                "skipped": 0,
            }
        ],
    }
    save_index(out, index, meta, list(data.paths))
    return {**meta, "count": data.n, "index": str(out)}


def add_to_index(
    index_path: str | os.PathLike, tags_csv: str | os.PathLike, force: bool = False, skip_existing: bool = False
) -> dict[str, Any]:
    """Append a new ``hspnet tag`` output to an index; old ids and paths are unchanged.

    Paths are compared as files (images folder + path): a path already in the index is refused,
    or with ``skip_existing`` left out and counted; a path twice in the new file is refused.
    A different embedding dim is always refused; a different model description unless ``force``.
    Recall is not re-measured (the stored value says on how many vectors it was measured).
    The index is locked while it is read and rewritten (:mod:`hspnet_cli.core.locks`).
    """
    from hspnet_cli.core.locks import output_lock

    with output_lock(index_path, "index"):
        return _add_to_index(index_path, tags_csv, force, skip_existing)


def _add_to_index(
    index_path: str | os.PathLike, tags_csv: str | os.PathLike, force: bool, skip_existing: bool
) -> dict[str, Any]:
    idx = load_index(index_path)
    if idx.meta.get("keys_file"):
        raise UserError(
            f"{idx.path}: built from a shard set (keys on disk); index add grows in-RAM indexes only: "
            "build again with the new shards among the sources"
        )
    data = read_tags_output(tags_csv)
    if data.dim != idx.dim:
        raise UserError(
            f"{data.file}: embeddings have dim {data.dim} but index {idx.path} has dim {idx.dim}; "
            "they come from different models and cannot share an index"
        )
    if data.model != idx.meta.get("model") and not force:
        raise UserError(
            f"{data.file}: made by '{data.model}' but index {idx.path} by '{idx.meta.get('model')}'; "
            "their embeddings are not comparable (--force adds them anyway)"
        )
    root = common_root([idx.images_dir, data.images_dir])
    old = rebase_paths(idx.paths, idx.images_dir, root)
    new = rebase_paths(data.paths, data.images_dir, root)
    seen: set[str] = set()
    for p in new:
        if p in seen:
            raise UserError(f"{data.file}: path '{p}' appears twice")
        seen.add(p)
    existing = set(old)
    keep = np.array([p not in existing for p in new], dtype=bool)
    skipped = int((~keep).sum())
    if skipped and not skip_existing:
        first = next(p for p, k in zip(new, keep) if not k)
        raise UserError(
            f"{data.file}: {skipped} path(s) are in index {idx.path} already (first: {first}); "
            "--skip-existing leaves them out"
        )
    index = idx.index
    first_id = int(index.ntotal)
    emb = data.embeddings()
    for start, block in iter_chunks(emb, data.emb):
        mask = keep[start : start + block.shape[0]]
        if mask.any():
            index.add(np.ascontiguousarray(block[mask]))
    source = {
        "csv": str(data.file.absolute()),
        "images_dir": str(data.images_dir),
        "first_id": first_id,
        "rows": int(keep.sum()),
        "skipped": skipped,
    }
    if data.model != idx.meta.get("model"):
        source["model"] = data.model  # added with --force
    meta = {**idx.meta, "images_dir": str(root), "sources": [*idx.meta.get("sources", []), source]}
    paths = old + [p for p, k in zip(new, keep) if k]
    save_index(idx.path, index, meta, paths)
    moved = {"root_moved_from": str(idx.images_dir)} if root != idx.images_dir else {}
    return {**meta, "count": len(paths), "added": int(keep.sum()), "skipped": skipped, "index": str(idx.path), **moved}
