"""Judging scores: scoring a labelled split, metrics (mAP, F1, top-k, group mAP), per-label threshold
calibration and plots."""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this room that defines it (imported on first use, so
# importing the room stays cheap: nothing heavy loads until a name is used).
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
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
