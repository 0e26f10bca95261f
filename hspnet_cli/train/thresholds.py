"""Per-label thresholds fitted while training, for the checkpoint the run keeps.

A model trained on single positives scores most labels below 0.5, so cutting at 0.5 leaves most
images without a tag (demo world: 1,148 of 2,000 images, test CF1 0.164 against 0.480 with
thresholds fitted on validation). When the split's validation set is fully labelled (observed
negatives in every image: ``hspnet split`` with ``--val-labels full``, its default),
each time ``best.ckpt`` is written its validation probabilities are calibrated
(:func:`hspnet_cli.evaluation.calibration.calibrate`), the result is stored in the checkpoint
as ``thresholds`` and written to ``thresholds.json`` in the run folder. ``tag``, ``eval``,
``export``, ``export-labels`` and ``select`` then use them unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.taxonomy import Taxonomy

THRESHOLDS_FILE = "thresholds.json"


def fully_labelled(labels: LabelSet | None) -> bool:
    """Whether a split's labels can fit thresholds: every image has observed negatives.

    A single-positive validation set (``--val-labels observed``) has none, and a threshold
    fitted there would tag everything. A few unknown entries (VOC's "difficult" objects) do not
    matter: :func:`~hspnet_cli.evaluation.calibration.calibrate` leaves them out.
    """
    return labels is not None and labels.n_images > 0 and bool((labels.matrix == -1).any(axis=1).all())


def fit_kept_thresholds(
    logits: Any, val_set: LabelSet | None, taxonomy: Taxonomy, split_dir: Path, out_dir: Path, epoch: int, weights: str
) -> dict[str, Any] | None:
    """Fit thresholds on the kept weights' validation logits, write ``thresholds.json``.

    Args:
        logits: (n, C) validation logits of the weights being kept (None off the main process).
        val_set: The validation labels (None without a validation split).
        taxonomy: The labels, in column order.
        split_dir: The split folder (recorded as the thresholds' source).
        out_dir: The run folder.
        epoch: The kept epoch (from 1).
        weights: ``raw`` or ``ema``.

    Returns:
        The thresholds document to store in the checkpoint, or None when the validation set is
        missing or not fully labelled (and any ``thresholds.json`` of an earlier run is removed,
        so the folder never holds thresholds of other weights).
    """
    from hspnet_cli.evaluation.calibration import calibrate
    from hspnet_cli.scoring.thresholds import write_thresholds

    if logits is None or not fully_labelled(val_set):
        (out_dir / THRESHOLDS_FILE).unlink(missing_ok=True)
        return None
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    doc = calibrate(
        probs.astype(np.float32),
        val_set.matrix,
        taxonomy.label_names,
        source={
            "fitted_by": "hspnet train",
            "data": str(split_dir / "val.csv"),
            "images": int(val_set.n_images),
            "epoch": int(epoch),
            "weights": weights,
        },
    )
    write_thresholds(out_dir / THRESHOLDS_FILE, doc)
    return doc


def thresholds_line(doc: dict[str, Any] | None, out_dir: Path) -> str:
    """One line for the training summary: where the thresholds are, or how to get them."""
    if doc is None and (out_dir / THRESHOLDS_FILE).is_file():  # resumed: kept from an earlier invocation
        import json

        try:
            doc = json.loads((out_dir / THRESHOLDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
    if doc is None:
        return (
            "thresholds: uncalibrated (the split has no fully labelled validation set), so tag/eval cut at 0.5; "
            f"fit them with: hspnet calibrate --checkpoint {out_dir} --data LABELLED.csv --images DIR -o thresholds.json"
        )
    fell = len((doc.get("fallback") or {}).get("labels") or [])
    return (
        f"thresholds: calibrated per label on {(doc.get('source') or {}).get('images', '?')} validation images "
        f"({fell} label(s) with too few positives share one); stored in best.ckpt and {out_dir / THRESHOLDS_FILE}"
    )
