"""Near-duplicate pairs by FAISS k-NN search in chunks, joined into connected components.

Every image is a query: its ``neighbors`` nearest images are searched and those at or above
the cosine ``threshold`` become edges; groups are the connected components of that graph
(scipy's ``connected_components`` over a sparse edge list). Memory is the index plus the
edges, at most ``n x neighbors`` pairs (8 bytes each), never an n x n matrix. A clique of
identical images stays one group even when it is larger than ``neighbors``: each image links
to some of the others and the links chain.

The index searched (:func:`search_index`):

* an index given as input is searched as it is, with its stored ``nprobe`` unless ``nprobe``
  says otherwise (not with whitening: the index holds the raw vectors, so one is built from
  its reconstructed, whitened vectors as below);
* for a tag output one is built over the memory-mapped embeddings: exact ``Flat`` below
  100,000 images; ``IVF{nlist},Flat`` up to 2,000,000; ``IVF{nlist},SQ8`` beyond (one byte a
  dimension: 10M x 512 is 5 GB instead of 20 GB; an 8-bit scalar quantiser moves a cosine by
  about 1e-3, far less than the margin between near-duplicates and distinct images, where
  product quantisation would not be). ``nlist = 2 sqrt(n)``, trained on a seeded sample of
  40 vectors a list (faiss wants at least 39). Near-duplicates are so close that they fall in
  the same or a neighbouring list; ``nprobe`` (default 8) lists are scanned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.dedup.vectors import CHUNK_ROWS, DedupInput

log = logging.getLogger(__name__)

FLAT_MAX = 100_000
IVF_FLAT_MAX = 2_000_000
TRAIN_PER_LIST = 40
DEFAULT_NPROBE = 8


def choose_factory(n: int) -> str:
    """The faiss factory string dedup builds for ``n`` vectors (see the module docstring)."""
    if n < FLAT_MAX:
        return "Flat"
    nlist = int(min(65536, max(1, round(2 * math.sqrt(n)))))
    return f"IVF{nlist},Flat" if n < IVF_FLAT_MAX else f"IVF{nlist},SQ8"


def _ivf(index: Any) -> Any:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None


def search_index(
    data: DedupInput, nprobe: int | None = None, seed: int = 0, progress: Callable[[str, int], Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The index to search and its facts (``factory``, ``nprobe``, ``built``).

    Raises:
        UserError: An index of another width, or too few vectors to train the lists.
    """
    import faiss

    if data.index is not None and data.whitening is None:
        index = data.index
        if data.search_params:
            faiss.ParameterSpace().set_index_parameters(index, data.search_params)
        ivf = _ivf(index)
        if ivf is not None and nprobe is not None:
            ivf.nprobe = int(nprobe)
        return index, {
            "factory": type(index).__name__,
            "built": False,
            "nprobe": int(ivf.nprobe) if ivf is not None else None,
        }
    factory = choose_factory(data.n)
    index = (
        faiss.IndexFlatIP(data.dim)
        if factory == "Flat"
        else faiss.index_factory(data.dim, factory, faiss.METRIC_INNER_PRODUCT)
    )
    ivf = _ivf(index)
    if ivf is not None:
        size = min(data.n, TRAIN_PER_LIST * int(ivf.nlist))
        rows = np.sort(np.random.default_rng(seed).choice(data.n, size=size, replace=False))
        index.train(data.rows(rows))
        ivf.nprobe = int(nprobe or DEFAULT_NPROBE)
    bar = progress("dedup: indexing", data.n) if progress else None
    with bar if bar is not None else _NoBar():
        for _, block in data.chunks():
            index.add(block)
            if bar is not None:
                bar.advance(len(block))
    return index, {"factory": factory, "built": True, "nprobe": int(ivf.nprobe) if ivf is not None else None}


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int) -> None:
        return None


def find_edges(
    data: DedupInput, index: Any, threshold: float, neighbors: int, progress: Callable[[str, int], Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b), a < b, of rows at or above ``threshold`` among each row's ``neighbors`` nearest.

    Returns:
        Two int64 arrays of equal length (each pair once).
    """
    k = min(data.n, neighbors + 1)  # +1: a row finds itself first
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    bar = progress("dedup: searching", data.n) if progress else None
    with bar if bar is not None else _NoBar():
        for start, block in data.chunks(CHUNK_ROWS):
            sims, ids = index.search(block, k)
            rows = np.arange(start, start + len(block), dtype=np.int64)[:, None]
            keep = (sims >= threshold) & (ids >= 0) & (ids != rows)
            src = np.broadcast_to(rows, ids.shape)[keep]
            dst = ids[keep].astype(np.int64)
            lo, hi = np.minimum(src, dst), np.maximum(src, dst)
            a_parts.append(lo)
            b_parts.append(hi)
            if bar is not None:
                bar.advance(len(block))
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b_ = np.concatenate(a_parts), np.concatenate(b_parts)
    if a.size:
        pairs = np.unique(a * np.int64(data.n) + b_)  # each pair once (found from both ends)
        a, b_ = pairs // data.n, pairs % data.n
    return a, b_


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) component id of every row (rows without an edge are alone in theirs)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n >= 2**31:
        raise UserError(f"{n:,} images: more than this dedup handles in one run (2^31); dedup the shards first")
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a.astype(np.int32), b.astype(np.int32))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
