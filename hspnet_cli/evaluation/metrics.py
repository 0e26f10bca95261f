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


def average_precision_asl(scores: np.ndarray, positives: np.ndarray) -> float:
    """ASL/SPLC-style AP of one class: mean over positives of the precision at their rank.

    Ties are broken by a stable sort on descending score, so tied images keep their input
    (row) order; the published code's ``argsort()[::-1]`` breaks them arbitrarily. Without
    ties this equals :func:`average_precision`.

    Args:
        scores: (n,) scores; cast to float32.
        positives: (n,) bool.

    Returns:
        AP, or NaN when there is no positive (reported, not scored 0 as the published code does).
    """
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    ranks = np.flatnonzero(positives[order]) + 1  # 1-based ranks of the positives
    return float(np.mean(np.arange(1, n_pos + 1) / ranks))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, variant: str = "sklearn") -> MAPResult:
    """mAP of a score matrix against labels.

    Args:
        scores: (n, C) scores; cast to float32.
        targets: (n, C) labels; 1 is positive, anything else (0 unknown, -1 negative) is
            counted as not positive.
        variant: ``sklearn`` (:func:`average_precision`, ties form one step) or ``asl``
            (:func:`average_precision_asl`).

    Returns:
        The mAP over classes with positives, per-class AP and the classes without positives.
    """
    per_class_ap = {"sklearn": average_precision, "asl": average_precision_asl}.get(variant)
    if per_class_ap is None:
        raise ValueError(f"unknown mAP variant '{variant}' (sklearn or asl)")
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(targets) == 1
    per_class = np.array([per_class_ap(scores[:, c], positives[:, c]) for c in range(scores.shape[1])])
    defined = ~np.isnan(per_class)
    value = float(per_class[defined].mean()) if defined.any() else float("nan")
    return MAPResult(map=value, per_class=per_class, no_positive=np.flatnonzero(~defined).tolist())


def known_mask(targets: np.ndarray) -> np.ndarray:
    """Which entries count for precision/recall/F1.

    When the labels hold observed negatives (-1) anywhere, 0 means "nobody looked" and those
    entries are left out of every count (a prediction there is neither right nor wrong). When
    there is no -1 at all, the file lists positives only (single-positive style) and 0 is read
    as negative, because otherwise no prediction could ever be a false positive.
    """
    targets = np.asarray(targets)
    if (targets == -1).any():
        return targets != 0
    return np.ones(targets.shape, dtype=bool)


@dataclass
class ThresholdMetrics:
    """Precision/recall/F1 of thresholded predictions.

    Per-class precision of a class with no prediction is 0 (scikit-learn's ``zero_division=0``).
    CP/CR average over classes with at least one known positive; CF1 is the harmonic mean of
    CP and CR (ML-GCN's definition), OF1 that of the pooled (micro) precision and recall.

    Attributes:
        per_class_precision: (C,) precision, NaN for classes without positives.
        per_class_recall: (C,) recall, NaN for classes without positives.
        per_class_f1: (C,) F1, NaN for classes without positives.
        cp, cr, cf1: Class-averaged precision, recall and F1.
        op, or_, of1: Overall (micro) precision, recall and F1.
    """

    per_class_precision: np.ndarray
    per_class_recall: np.ndarray
    per_class_f1: np.ndarray
    cp: float
    cr: float
    cf1: float
    op: float
    or_: float
    of1: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def threshold_metrics(probs: np.ndarray, targets: np.ndarray, threshold: float | np.ndarray = 0.5) -> ThresholdMetrics:
    """CF1/OF1 and per-class precision/recall of ``probs >= threshold``.

    Args:
        probs: (n, C) probabilities (sigmoid of the logits).
        targets: (n, C) labels 1/0/-1; unknown entries follow :func:`known_mask`.
        threshold: One threshold, or (C,) per-class thresholds.
    """
    probs = np.asarray(probs, dtype=np.float32)
    targets = np.asarray(targets)
    known = known_mask(targets)
    pred = (probs >= np.asarray(threshold, dtype=np.float32)) & known
    pos = (targets == 1) & known
    tp = (pred & pos).sum(0).astype(np.float64)
    n_pred, n_pos = pred.sum(0).astype(np.float64), pos.sum(0).astype(np.float64)
    has_pos = n_pos > 0
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_pos, out=np.zeros_like(tp), where=has_pos)
    f1 = np.array([_f1(p, r) for p, r in zip(precision, recall)])
    precision, recall, f1 = (np.where(has_pos, a, np.nan) for a in (precision, recall, f1))
    cp = float(np.mean(precision[has_pos])) if has_pos.any() else float("nan")
    cr = float(np.mean(recall[has_pos])) if has_pos.any() else float("nan")
    op = float(tp.sum() / n_pred.sum()) if n_pred.sum() > 0 else 0.0
    or_ = float(tp.sum() / n_pos.sum()) if n_pos.sum() > 0 else float("nan")
    return ThresholdMetrics(
        precision,
        recall,
        f1,
        cp,
        cr,
        _f1(cp, cr) if has_pos.any() else float("nan"),
        op,
        or_,
        _f1(op, or_) if n_pos.sum() > 0 else float("nan"),
    )


def top_k_precision(scores: np.ndarray, targets: np.ndarray, k: int = 3) -> float:
    """Mean over images with a positive of (positives among the k top-scored labels) / k.

    Ties are broken by label order (stable sort). Images without any positive are left out:
    no prediction could be right on them.
    """
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(targets) == 1
    keep = positives.any(1)
    if not keep.any():
        return float("nan")
    k = max(1, min(k, scores.shape[1]))
    top = np.argsort(-scores[keep], axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(positives[keep], top, axis=1).sum(1)
    return float(np.mean(hits / k))


def group_scores_and_targets(
    scores: np.ndarray, targets: np.ndarray, group_index: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Label-level scores/targets -> group level: a group is present (1) when any member is
    positive, else -1; its score is the highest member score."""
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(targets) == 1
    g_scores = np.full((scores.shape[0], n_groups), -np.inf, dtype=np.float32)
    g_targets = np.full((scores.shape[0], n_groups), -1, dtype=np.int8)
    for g in range(n_groups):
        members = np.flatnonzero(np.asarray(group_index) == g)
        if len(members):
            g_scores[:, g] = scores[:, members].max(1)
            g_targets[positives[:, members].any(1), g] = 1
    return g_scores, g_targets
