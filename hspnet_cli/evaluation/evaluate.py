"""Evaluating a scorer on a labelled split: scores for every image, then every metric in one report.

:func:`score_split` runs any :class:`~hspnet_cli.scoring.scorer.Scorer` over a split CSV's images
(batched, with DataLoader workers) and returns float32 logits with the label matrix;
:func:`evaluate_scores` turns them into an :class:`EvalReport` (mAP, per-class AP, CF1/OF1,
top-k precision, group mAP). The two halves are separate so metrics can be recomputed, tested
and calibrated on without touching images again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.evaluation.metrics import (
    ThresholdMetrics,
    group_scores_and_targets,
    mean_average_precision,
    threshold_metrics,
    top_k_precision,
)
from hspnet_cli.taxonomy import Taxonomy

if TYPE_CHECKING:
    from hspnet_cli.scoring.scorer import Scorer


def score_split(
    scorer: Scorer,
    labels: LabelSet,
    images: str | Path,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score every image of ``labels``.

    Args:
        scorer: Any scorer (checkpoint or zero-shot).
        labels: The split (its label order must be the scorer's).
        images: Folder the split's image paths are relative to.
        batch_size: Images per forward pass.
        workers: DataLoader worker processes (0 = in this process).
        progress: Called with (images done, total) after each batch.

    Returns:
        (n, C) float32 logits (sigmoid -> probabilities) and the (n, C) int8 label matrix.

    Raises:
        UserError: Missing images folder or image, or an unreadable image (named with its split line).
    """
    import torch

    from hspnet_cli.data.images import SplitImages, check_images_exist, make_loader, raise_on_bad_images

    root = Path(images)
    check_images_exist(labels, root, "evaluation")
    dataset = SplitImages(labels, root, scorer.transform, scorer.image_size)
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, num_workers=workers)
    out = np.empty((labels.n_images, labels.n_labels), dtype=np.float32)
    done = 0
    with torch.no_grad():
        for batch, _targets, index, errors in loader:
            raise_on_bad_images(list(errors), index, labels, root)
            out[index.numpy()] = scorer(batch).float().cpu().numpy()
            done += len(index)
            if progress is not None:
                progress(done, labels.n_images)
    return out, labels.matrix.copy()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically safe float32 sigmoid."""
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float32)))).astype(np.float32)


@dataclass
class EvalReport:
    """Every metric of one evaluation; ``to_dict`` is the ``--json`` file."""

    label_names: list[str]
    label_groups: list[str]
    variant: str
    map: float
    per_class_ap: np.ndarray
    positives: np.ndarray
    no_positive: list[str]
    threshold: float | np.ndarray
    at_threshold: ThresholdMetrics
    top_k: int
    top_k_precision: float
    group_names: list[str]
    group_map: float
    group_ap: np.ndarray
    n_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def worst_first(self) -> list[int]:
        """Class indices with an AP, lowest AP first (ties by label order)."""
        defined = np.flatnonzero(~np.isnan(self.per_class_ap))
        return defined[np.argsort(self.per_class_ap[defined], kind="stable")].tolist()

    def _threshold_dict(self) -> dict[str, Any]:
        """``threshold`` (one for all classes) or ``thresholds`` (per class, by label name)."""
        if np.ndim(self.threshold) == 0:
            return {"threshold": float(self.threshold)}
        return {"threshold": None, "thresholds": dict(zip(self.label_names, map(float, self.threshold)))}

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        t = self.at_threshold
        return {
            **self.extra,
            "images": self.n_images,
            "labels": len(self.label_names),
            "map_variant": self.variant,
            "map": num(self.map),
            "group_map": num(self.group_map),
            "cf1": num(t.cf1),
            "cp": num(t.cp),
            "cr": num(t.cr),
            "of1": num(t.of1),
            "op": num(t.op),
            "or": num(t.or_),
            **self._threshold_dict(),
            f"top{self.top_k}_precision": num(self.top_k_precision),
            "no_positive": list(self.no_positive),
            "per_class": {
                name: {"group": group, "ap": num(ap), "positives": int(n), "precision": num(p), "recall": num(r)}
                for name, group, ap, n, p, r in zip(
                    self.label_names,
                    self.label_groups,
                    self.per_class_ap,
                    self.positives,
                    t.per_class_precision,
                    t.per_class_recall,
                )
            },
            "per_group_ap": {g: num(ap) for g, ap in zip(self.group_names, self.group_ap)},
        }


def evaluate_scores(
    logits: np.ndarray,
    targets: np.ndarray,
    taxonomy: Taxonomy,
    *,
    threshold: float | np.ndarray = 0.5,
    top_k: int = 3,
    variant: str = "sklearn",
) -> EvalReport:
    """All metrics of ``logits`` (n, C) against ``targets`` (n, C, 1/0/-1).

    mAP ranks the logits (positives = 1, everything else not positive); F1/precision/recall use
    ``sigmoid(logits) >= threshold`` (one threshold or (C,) per class) with unknown entries handled by
    :func:`hspnet_cli.evaluation.metrics.known_mask`; groups are scored by their best member.
    """
    if variant not in ("sklearn", "asl"):
        raise UserError(f"--map-variant must be sklearn or asl; got '{variant}'")
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1; got {top_k}")
    logits = np.asarray(logits, dtype=np.float32)
    result = mean_average_precision(logits, targets, variant)
    thr = threshold_metrics(sigmoid(logits), targets, threshold)
    g_scores, g_targets = group_scores_and_targets(logits, targets, taxonomy.group_index(), taxonomy.num_groups)
    groups = mean_average_precision(g_scores, g_targets, variant)
    owner = taxonomy.group_of()
    return EvalReport(
        label_names=list(taxonomy.label_names),
        label_groups=[owner[n] for n in taxonomy.label_names],
        variant=variant,
        map=result.map,
        per_class_ap=result.per_class,
        positives=(np.asarray(targets) == 1).sum(0),
        no_positive=[taxonomy.label_names[i] for i in result.no_positive],
        threshold=threshold,
        at_threshold=thr,
        top_k=top_k,
        top_k_precision=top_k_precision(logits, targets, top_k),
        group_names=list(taxonomy.group_names),
        group_map=groups.map,
        group_ap=groups.per_class,
        n_images=int(logits.shape[0]),
    )
