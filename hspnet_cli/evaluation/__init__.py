"""Judging scores: scoring a labelled split, metrics (mAP, F1, top-k, group mAP), per-label threshold
calibration and plots."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
_EXPORTS = {
    "average_precision": "metrics",
    "best_f1_threshold": "calibration",
    "calibrate": "calibration",
    "EvalReport": "evaluate",
    "evaluate_scores": "evaluate",
    "known_mask": "metrics",
    "mean_average_precision": "metrics",
    "score_split": "evaluate",
    "sigmoid": "evaluate",
    "threshold_metrics": "metrics",
    "ThresholdMetrics": "metrics",
    "top_k_precision": "metrics",
    "write_plots": "plots",
}
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
