"""The published weak-label protocols, as pure functions of a label matrix and seeded draws.

- Validation split (LargeLoss, Kim et al. 2022): a seeded permutation of the training set; the
  last ``fraction`` is validation. ``n_train = round((1 - fraction) * n)`` reproduces the
  published sizes (COCO 65,665 / 16,416; VOC 4,574 / 1,143; NUS 120,000 / 30,000; CUB 4,795 / 1,199).
- Subset (few-shot SPML): a seeded fraction of the training images.
- Single positive (Cole et al. 2021): one of each image's positives, uniformly at random;
  everything else unknown.
- Partial labels (SST / SARB): each entry, positive or negative, kept with probability p,
  else unknown, from one seeded uniform mask.

Randomness: every purpose has its own numpy stream, ``SeedSequence([seed, stream id])``, and
draws one value per *input* image (or image x label) whatever the other options are. So the
positive an image gets does not change when ``--val-fraction`` or ``--subset`` change, larger
subsets contain smaller ones, and the partial masks for p = 0.1 ... 0.9 are nested.
"""

from __future__ import annotations

import numpy as np

from hspnet_cli.data.labelset import POSITIVE, UNKNOWN

STREAMS = {"val": 1, "subset": 2, "positive": 3, "partial": 4}


def stream(seed: int, purpose: str) -> np.random.Generator:
    """The generator for one purpose (a key of :data:`STREAMS`) of one seed."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[purpose]]))


def val_sizes(n: int, fraction: float) -> tuple[int, int]:
    """``(n_train, n_val)`` for a validation fraction, rounded as the LargeLoss code does."""
    n_train = int(np.round((1.0 - fraction) * n)) if fraction > 0 else n
    return n_train, n - n_train


def val_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` images into train and validation rows.

    Args:
        n: Number of images.
        fraction: Validation fraction in [0, 1); 0 gives no validation rows.
        seed: The split seed (stream ``val``).

    Returns:
        ``(train_rows, val_rows)``, each sorted ascending so files keep the input order.
    """
    n_train, _ = val_sizes(n, fraction)
    if n_train == n:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = stream(seed, "val").permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def subset_size(n: int, fraction: float) -> int:
    """Images kept by a subset fraction: ``round(fraction * n)``, at least one."""
    return max(1, int(np.round(fraction * n)))


def subset_rows(rows: np.ndarray, n_total: int, fraction: float, seed: int) -> np.ndarray:
    """Keep a seeded ``fraction`` of ``rows`` (indices into the ``n_total`` input images).

    Every input image gets one random key; the rows with the smallest keys are kept. A larger
    fraction therefore keeps a superset, and the choice does not depend on the val split.

    Returns:
        The kept rows, sorted ascending.
    """
    keys = stream(seed, "subset").random(n_total)[rows]
    keep = np.argsort(keys, kind="stable")[: subset_size(len(rows), fraction)]
    return np.sort(rows[keep])


def positive_draws(n_total: int, seed: int) -> np.ndarray:
    """(n_total,) uniform [0, 1) draws, one per input image, for :func:`single_positive`."""
    return stream(seed, "positive").random(n_total)


def partial_draws(n_total: int, n_labels: int, seed: int) -> np.ndarray:
    """(n_total, n_labels) float32 uniform [0, 1) draws: the one mask behind every keep ratio."""
    return stream(seed, "partial").random((n_total, n_labels), dtype=np.float32)


def single_positive(matrix: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Keep one positive per row, uniformly at random; everything else becomes unknown.

    Args:
        matrix: (n, L) int8 in the SPML encoding.
        draws: (n,) uniform [0, 1) values; row ``i`` keeps its ``floor(draws[i] * k_i)``-th
            positive of ``k_i`` (in label order), which is uniform over its positives.

    Returns:
        (n, L) int8 with exactly one 1 in each row that had a positive, and all 0 elsewhere
        (rows without a positive are all 0; the caller drops them).
    """
    positive = matrix == POSITIVE
    counts = positive.sum(axis=1)
    pick = np.minimum(np.floor(draws * counts), np.maximum(counts - 1, 0)).astype(np.int64)
    chosen = positive & (np.cumsum(positive, axis=1) == (pick + 1)[:, None])
    out = np.full(matrix.shape, UNKNOWN, dtype=np.int8)
    out[chosen] = POSITIVE
    return out


def partial(matrix: np.ndarray, draws: np.ndarray, keep: float) -> np.ndarray:
    """Keep each entry (positive or negative) where ``draws < keep``; the rest becomes unknown.

    Args:
        matrix: (n, L) int8 in the SPML encoding.
        draws: (n, L) uniform [0, 1) values (the same for every ``keep``, so masks are nested).
        keep: Probability of keeping an entry, in (0, 1].

    Returns:
        (n, L) int8; entries that were already unknown stay unknown.
    """
    return np.where(draws < keep, matrix, UNKNOWN).astype(np.int8)
