"""Whitening the embeddings before comparing them: centre, decorrelate, equalise the spread.

The embeddings of one model over one collection share a large common component and a few
dominant directions (the label directions a tagger was trained on); raw cosines then crowd
near 1 for unrelated images, and no threshold separates copies from look-alikes. Measured on
the demo world (benchmarks/dedup_quality.py): with raw embeddings of the trained demo model,
every threshold that finds 20% of the planted copies also puts hundreds of unrelated images
in one group; whitened, the same model's copies stand out (see docs/quality.md).

Whitening is PCA whitening fitted on the collection itself in one streamed pass (sum and
sum of outer products, float64; memory D x D): ``x' = (x - mean) V diag(1 / sqrt(l + eps))``
with ``eps = 1e-3 * max(l)`` so the directions with almost no variance (a collection smaller
than the width, or a tagger's unused dimensions) are not blown up into noise. Rows are
L2-normalised again after it, so the threshold is still a cosine, in the whitened space.

No transform can make features that do not tell images apart do so: an undertrained or random
model's embeddings vary along one or two directions only, and whitening them spreads noise.
:func:`effective_dimensions` measures that (participation ratio of the covariance: the trained
demo model 8.2 of 32, the same model after 2 epochs 1.6, random weights 1.1), and dedup warns
below :data:`MIN_EFFECTIVE_DIMENSIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EPS_FRACTION = 1e-3
MIN_IMAGES = 16
MIN_EFFECTIVE_DIMENSIONS = 4.0


def effective_dimensions(eigenvalues: np.ndarray) -> float:
    """Participation ratio (sum l)^2 / sum l^2 of a covariance's eigenvalues: about how many
    directions the embeddings really vary along (1: all on a line; D: spread evenly)."""
    vals = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    return float(vals.sum() ** 2 / max(float((vals**2).sum()), 1e-300))


def fit_whitening(chunks: Iterable[tuple[int, np.ndarray]], dim: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean (D,), matrix (D, D), effective dimensions) from unit rows, or None for fewer than
    :data:`MIN_IMAGES` rows."""
    total = np.zeros(dim, dtype=np.float64)
    outer = np.zeros((dim, dim), dtype=np.float64)
    n = 0
    for _, block in chunks:
        b = block.astype(np.float64)
        total += b.sum(axis=0)
        outer += b.T @ b
        n += len(b)
    if n < MIN_IMAGES:
        return None
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    vals = np.clip(vals, 0.0, None)
    scale = 1.0 / np.sqrt(vals + EPS_FRACTION * max(float(vals.max()), 1e-12))
    return mean.astype(np.float32), (vecs * scale[None, :]).astype(np.float32), effective_dimensions(vals)


def apply_whitening(block: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Whitened, L2-normalised copy of unit rows ``block``."""
    out = (block - mean) @ matrix
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)
