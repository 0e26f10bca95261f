"""Synthetic clustered embeddings for benchmarks/index_scale.py, written shard by shard.

Real CLIP embeddings are not isotropic noise: they sit near a low-dimensional structure, in
clusters. Pure Gaussian clusters in 512 dims make every point of a cluster nearly equidistant
from the others (nearest neighbours meaningless, every ANN index scores badly), so the vectors
here are: a cluster centre (one of ``clusters``) + a point of a 32-dim latent subspace (shared
random orthonormal basis) + small isotropic noise, L2-normalised, stored as float16 ``.npy``
shards (the tagger's Parquet stores float16 too). Queries are drawn from the same
distribution with another seed, so none is in the data. Deterministic for a seed; a shard
already on disk with the right shape is kept (rerunning resumes).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

LATENT = 32


def _model(dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, LATENT)))  # (dim, 32) orthonormal
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) * 0.35
    return basis.astype(np.float32), centres


def sample(n: int, dim: int, clusters: int, seed: int, stream: int) -> np.ndarray:
    """(n, dim) float32 unit vectors of the synthetic distribution; ``stream`` picks the draw."""
    basis, centres = _model(dim, clusters, seed)
    rng = np.random.default_rng([seed, stream])
    c = rng.integers(0, clusters, size=n)
    x = centres[c]
    x += rng.standard_normal((n, LATENT), dtype=np.float32) @ basis.T
    x += rng.standard_normal((n, dim), dtype=np.float32) * 0.03
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def generate(
    out: Path,
    n: int,
    dim: int = 512,
    shard_rows: int = 1_000_000,
    clusters: int = 2000,
    seed: int = 0,
    queries: int = 1000,
) -> list[Path]:
    """Write ``ceil(n / shard_rows)`` float16 shards ``emb-XXXX.npy`` and ``queries.npy`` (float32)."""
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - start)
        path = out / f"emb-{s:04d}.npy"
        shards.append(path)
        if path.is_file():
            try:
                if np.load(path, mmap_mode="r").shape == (rows, dim):
                    continue
            except ValueError:
                pass
        tmp = out / f".{path.name}.tmp"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, dim))
        for b in range(0, rows, 100_000):
            m = min(100_000, rows - b)
            arr[b : b + m] = sample(m, dim, clusters, seed, stream=1 + s * 1000 + b // 100_000)
        arr.flush()
        del arr
        os.replace(tmp, path)
        print(f"wrote {path} ({rows:,} x {dim})", flush=True)
    qpath = out / "queries.npy"
    if not qpath.is_file():
        np.save(qpath, sample(queries, dim, clusters, seed, stream=10**9))
    return shards


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--shard-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    generate(args.out, args.n, args.dim, args.shard_rows)
