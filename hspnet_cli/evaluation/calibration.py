"""Per-class decision thresholds that maximise F1 on a labelled split (``hspnet calibrate``).

A ranking metric (mAP) needs no threshold, but tagging does: ``hspnet tag --thresholds`` reads
the file written here. Each class gets the probability threshold that maximises its F1 on the
calibration split. A class with fewer than ``min_positives`` positives would get a threshold
fitted to one or two images, so it falls back to one shared threshold instead: by default the
one that maximises overall (micro) F1 over all classes pooled, or with ``fallback="default"``
a fixed value (``default``, also used when the data has no positive at all).

Thresholds are placed half-way between the lowest probability that is tagged and the next
lower one seen, so a new image scored just below a calibration positive is still tagged.
Unknown (0) entries are handled as in :func:`hspnet_cli.evaluation.metrics.known_mask`.

File format (JSON)::

    {"format": "hspnet-thresholds", "version": 1, "labels": [...],
     "thresholds": {"cat": 0.41, ...},
     "fallback": {"rule": "global", "threshold": 0.37, "min_positives": 5, "labels": [...]},
     "per_class": {"cat": {"positives": 12, "f1": 0.8}, ...},
     "source": {"scorer": "...", "data": "val.csv", "images": 30}}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.evaluation.metrics import known_mask
from hspnet_cli.scoring.thresholds import FORMAT, VERSION


def best_f1_threshold(probs: np.ndarray, positives: np.ndarray) -> tuple[float, float]:
    """The threshold maximising F1 of ``probs >= t`` against ``positives``, and that F1.

    Among thresholds with equal F1 the highest is chosen (fewest tags). Returns (NaN, NaN)
    without a positive.
    """
    probs = np.asarray(probs, dtype=np.float32).ravel()
    positives = np.asarray(positives, dtype=bool).ravel()
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan"), float("nan")
    order = np.argsort(-probs, kind="stable")
    ranked, ranked_pos = probs[order], positives[order]
    # One candidate per distinct score: cut after the last of each run of ties.
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(ranked_pos)[last]
    f1 = 2.0 * tp / (last + 1 + n_pos)
    best = int(np.argmax(f1))  # first maximum = highest threshold
    cut = last[best]
    low = ranked[cut]
    threshold = (float(low) + float(ranked[cut + 1])) / 2 if cut + 1 < len(ranked) else float(low)
    return threshold, float(f1[best])


def calibrate(
    probs: np.ndarray,
    targets: np.ndarray,
    label_names: list[str],
    *,
    min_positives: int = 5,
    default: float = 0.5,
    fallback: str = "global",
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-class F1-optimal thresholds, in the file format of the module docstring.

    Args:
        probs: (n, C) probabilities.
        targets: (n, C) labels 1/0/-1.
        label_names: The C label names, in column order.
        min_positives: Classes with fewer known positives use the fallback threshold.
        default: Fixed fallback (``fallback="default"``, or when nothing has a positive).
        fallback: ``global`` (micro-F1-optimal shared threshold) or ``default``.
        source: What was calibrated on (scorer, data file); stored as given.
    """
    if fallback not in ("global", "default"):
        raise UserError(f"--fallback must be global or default; got '{fallback}'")
    probs = np.asarray(probs, dtype=np.float32)
    targets = np.asarray(targets)
    known = known_mask(targets)
    positives = (targets == 1) & known
    shared, shared_f1 = (
        best_f1_threshold(probs[known], positives[known]) if fallback == "global" else (float("nan"), float("nan"))
    )
    rule = fallback
    if math.isnan(shared):
        shared, rule = float(default), "default"
    thresholds: dict[str, float] = {}
    per_class: dict[str, dict[str, Any]] = {}
    fell_back: list[str] = []
    for c, name in enumerate(label_names):
        n_pos = int(positives[:, c].sum())
        if n_pos >= max(1, min_positives):
            t, f1 = best_f1_threshold(probs[known[:, c], c], positives[known[:, c], c])
            thresholds[name] = t
            per_class[name] = {"positives": n_pos, "f1": f1, "rule": "class"}
        else:
            thresholds[name] = shared
            fell_back.append(name)
            per_class[name] = {"positives": n_pos, "f1": None, "rule": rule}
    return {
        "format": FORMAT,
        "version": VERSION,
        "labels": list(label_names),
        "thresholds": thresholds,
        "fallback": {
            "rule": rule,
            "threshold": shared,
            "micro_f1": None if math.isnan(shared_f1) else shared_f1,
            "min_positives": min_positives,
            "labels": fell_back,
        },
        "per_class": per_class,
        "source": dict(source or {}),
    }
