"""Ranking metrics for multi-label scores: per-class average precision and mAP.

AP follows scikit-learn's ``average_precision_score`` (tied scores form one step) on float32
scores, the variant method-notes section 5 recommends. A class with no positive in the
evaluation set has no AP: it is reported by name and left out of the mean, never averaged in
as 0 or 1 silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MAPResult:
    """mAP over the classes that have positives, with per-class AP (NaN where undefined).

    Attributes:
        map: Mean AP over classes with at least one positive (NaN if there are none).
        per_class: (C,) AP per class, NaN for classes without positives.
        no_positive: Indices of classes without a positive.
    """

    map: float
    per_class: np.ndarray
    no_positive: list[int] = field(default_factory=list)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """scikit-learn-style AP of one class.

    Args:
        scores: (n,) scores (higher = more likely positive); cast to float32.
        positives: (n,) bool, True for positives.

    Returns:
        AP, or NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_pos = scores[order], positives[order]
    # Thresholds at each distinct score: the last index of every run of tied scores.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tp = np.cumsum(sorted_pos)[last_of_run]
    predicted = last_of_run + 1
    precision = tp / predicted
    recall = tp / n_pos
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> MAPResult:
    """mAP of a score matrix against labels.

    Args:
        scores: (n, C) scores.
        targets: (n, C) labels; 1 is positive, anything else (0 unknown, -1 negative) is
            counted as not positive.

    Returns:
        The mAP over classes with positives, per-class AP and the classes without positives.
    """
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(targets) == 1
    per_class = np.array([average_precision(scores[:, c], positives[:, c]) for c in range(scores.shape[1])])
    defined = ~np.isnan(per_class)
    value = float(per_class[defined].mean()) if defined.any() else float("nan")
    return MAPResult(map=value, per_class=per_class, no_positive=np.flatnonzero(~defined).tolist())
