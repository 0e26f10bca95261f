"""Probabilities of every label for the images of a LabelSet, from a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet


def checkpoint_probabilities(
    checkpoint: str | Path,
    labels: LabelSet,
    images: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, Any]:
    """(n, C) float32 probabilities of ``labels``' images under ``checkpoint``, and its scorer.

    Raises:
        UserError: Another label order than the checkpoint's, a missing or unreadable image.
    """
    from hspnet_cli.evaluation.evaluate import score_split, sigmoid
    from hspnet_cli.scoring.scorer import open_scorer

    scorer = open_scorer(checkpoint, device=device)
    if scorer.taxonomy.label_names != labels.label_names:
        raise UserError(
            f"{checkpoint}: its labels are not the taxonomy's ({scorer.taxonomy.num_labels} vs "
            f"{labels.n_labels}, or another order); pass the taxonomy it was trained with"
        )
    logits, _ = score_split(scorer, labels, images, batch_size=batch_size, workers=workers, progress=progress)
    return sigmoid(logits), scorer
