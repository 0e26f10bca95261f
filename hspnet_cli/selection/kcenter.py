"""Greedy k-center (farthest-point) selection in embedding space, FAISS-accelerated.

Each pick is the candidate farthest from everything already chosen or already labelled; the
distance to the nearest chosen point is kept per candidate and lowered after every pick
(one matrix-vector product over the candidates), which is Gonzalez's 2-approximation of the
k-center problem (the core-set view of active learning: the labelled set should cover the
data). The labelled images start as centres, so new picks go where nothing is labelled yet.

Cost per pick is candidates x dims. At a million 1024-d embeddings that is 4 GB read per pick,
so the candidates are a pool (a seeded sample, or the images another criterion ranked first)
and, above ``dims``, projected by a PCA FAISS trains on a sample. ``benchmarks/select_1m.py``
measures both trade-offs (time, memory, covering radius over all images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATHER = 32768
PCA_SAMPLE = 20000


@dataclass
class KCenterResult:
    """Picks (row ids, in pick order), each one's distance to the nearest earlier centre at pick time,
    and the covering radius of the pool once all are picked (inf when nothing covers it)."""

    picks: np.ndarray
    distances: np.ndarray
    radius: float
    dims: int


def _gather(emb: np.ndarray, rows: np.ndarray, pca: object | None) -> np.ndarray:
    """emb[rows] as float32 (rows sorted), projected by ``pca`` chunk by chunk so the full-width copy
    of a large pool never exists at once."""
    rows = np.asarray(rows, dtype=np.int64)
    width = pca.d_out if pca is not None else emb.shape[1]  # type: ignore[attr-defined]
    out = np.empty((len(rows), width), np.float32)
    for s in range(0, len(rows), GATHER):
        part = np.ascontiguousarray(emb[rows[s : s + GATHER]], dtype=np.float32)
        out[s : s + GATHER] = pca.apply_py(part) if pca is not None else part  # type: ignore[attr-defined]
    return out


def _train_pca(emb: np.ndarray, pool: np.ndarray, dims: int, seed: int) -> object:
    import faiss

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    sample = np.sort(rng.choice(pool, size=min(len(pool), PCA_SAMPLE), replace=False))
    pca = faiss.PCAMatrix(emb.shape[1], dims)
    pca.train(np.ascontiguousarray(emb[sample], dtype=np.float32))
    return pca


def min_sq_distances(points: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Squared L2 distance of each point to its nearest centre (exact, FAISS flat search)."""
    import faiss

    out = np.full(len(points), np.inf, np.float32)
    if len(centres) == 0 or len(points) == 0:
        return out
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(np.ascontiguousarray(centres, dtype=np.float32))
    for s in range(0, len(points), chunk):
        d, _ = index.search(np.ascontiguousarray(points[s : s + chunk], dtype=np.float32), 1)
        out[s : s + chunk] = np.maximum(d[:, 0], 0.0)
    return out


def farthest_first(
    emb: np.ndarray, pool: np.ndarray, k: int, centres: np.ndarray, dims: int = 0, seed: int = 0
) -> KCenterResult:
    """Choose ``k`` rows of ``pool`` by greedy farthest-point traversal.

    Args:
        emb: (n, D) embeddings (a memmap is read only at ``pool`` and ``centres`` rows).
        pool: Candidate row ids.
        k: How many to choose (at most ``len(pool)``).
        centres: Row ids already covered (labelled, or chosen by another criterion).
        dims: Project to this many PCA dimensions first when smaller than D (0: exact distances).
        seed: Seeds the PCA's training sample.

    Returns:
        The picks in order; with no centres the first pick is the candidate farthest from the
        pool's mean (no randomness, so the same input gives the same picks).
    """
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    centres = np.sort(np.asarray(centres, dtype=np.int64))
    k = min(int(k), len(pool))
    if k <= 0:
        return KCenterResult(np.zeros(0, np.int64), np.zeros(0, np.float32), float("inf"), 0)
    pca = _train_pca(emb, pool, dims, seed) if 0 < dims < emb.shape[1] and len(pool) > dims else None
    x = _gather(emb, pool, pca)
    sq = np.einsum("ij,ij->i", x, x)
    mind = min_sq_distances(x, _gather(emb, centres, pca)) if len(centres) else None
    first = 0
    if mind is None:
        centre = x.mean(axis=0)
        mind = np.full(len(x), np.inf, np.float32)
        first = int(np.argmax(sq - 2.0 * (x @ centre)))
    picks = np.empty(k, np.int64)
    dists = np.empty(k, np.float32)
    buf = np.empty(len(x), np.float32)
    for t in range(k):
        i = first if t == 0 and np.isinf(mind).all() else int(np.argmax(mind))
        picks[t], dists[t] = i, np.sqrt(mind[i]) if np.isfinite(mind[i]) else np.inf
        np.matmul(x, x[i], out=buf)
        buf *= -2.0
        buf += sq
        buf += sq[i]
        np.maximum(buf, 0.0, out=buf)
        np.minimum(mind, buf, out=mind)
        mind[i] = -1.0  # chosen: never again
    radius = float(np.sqrt(max(float(mind.max()), 0.0))) if len(mind) else 0.0
    return KCenterResult(pool[picks], dists, radius, x.shape[1])
