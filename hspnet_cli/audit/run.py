"""``hspnet audit``: read the labels, check or make out-of-sample probabilities, find issues, write them.

The command (:mod:`hspnet_cli.commands.audit_cmd`) chooses where the probabilities come from:
a checkpoint that never trained on the images (:func:`audit_with_checkpoint`), or ``--folds``
models trained by the training room's ``folds`` module and scored here fold by fold
(:func:`fold_probabilities`). :func:`audit_labels` then does the rest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.audit.insample import check_out_of_sample
from hspnet_cli.audit.issues import find_issues
from hspnet_cli.audit.outputs import side_files, write_issues, write_report, write_tasks
from hspnet_cli.audit.scores import checkpoint_probabilities
from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, LabelSet
from hspnet_cli.taxonomy import Taxonomy


@dataclass
class AuditOptions:
    """What ``hspnet audit`` was asked for besides labels, taxonomy, probabilities and output.

    Attributes:
        fmt: Force the LABELS format (None: detect), as ``hspnet split --format``.
        absent: What a label an image is not given means (``auto`` | ``negative`` | ``unknown``).
        allow_unknown_training_set: Audit with a checkpoint that records no training keys (unsafe).
        to: ``label-studio`` to also write review tasks, or None.
        url_prefix / absolute / local_files_root: How tasks reference images (as export-labels).
        suggestions_in_tasks: Also write tasks for images whose only findings are suggestions.
        adjust: Rank by cleanlab's threshold-adjusted self-confidence.
        device / batch_size / workers: Scoring.
    """

    fmt: str | None = None
    absent: str = "auto"
    allow_unknown_training_set: bool = False
    to: str | None = None
    url_prefix: str | None = None
    absolute: bool = False
    local_files_root: str | None = None
    suggestions_in_tasks: bool = False
    adjust: bool = False
    device: str = "auto"
    batch_size: int = 64
    workers: int = 0

    def check(self, out: Path) -> None:
        if self.to not in (None, "label-studio"):
            raise UserError(f"--to: only label-studio tasks are written by audit, got '{self.to}'")
        if out.suffix.lower() != ".csv":
            raise UserError(f"--out {out}: issues are written as CSV; name the file *.csv")


def read_labels(path: str | Path, taxonomy: str | Path | Taxonomy, options: AuditOptions) -> tuple[LabelSet, Taxonomy]:
    """LABELS (any format hspnet split reads) on the taxonomy's label order."""
    from hspnet_cli.data.readers import read_annotations
    from hspnet_cli.taxonomy import load_taxonomy

    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    labels, _ = read_annotations(path, tax, fmt=options.fmt, absent=options.absent)
    return labels, tax


def fold_probabilities(
    labels: LabelSet,
    folds: list[tuple[np.ndarray, Path]],
    images: str | Path,
    options: AuditOptions,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities: each fold's images scored by the model that left them out.

    ``folds`` holds (rows of ``labels`` held out, checkpoint trained without them); each
    checkpoint's training record is checked against its fold as any checkpoint is.
    """
    probs = np.full(labels.matrix.shape, np.nan, dtype=np.float32)
    for rows, ckpt in folds:
        part = labels.take(rows)
        check_out_of_sample(ckpt, part, images)
        probs[rows], _ = checkpoint_probabilities(
            ckpt,
            part,
            images,
            device=options.device,
            batch_size=options.batch_size,
            workers=options.workers,
            progress=progress,
        )
    if np.isnan(probs).any():
        raise AssertionError("folds do not cover every image")
    return probs


def audit_with_checkpoint(
    labels: LabelSet,
    checkpoint: str | Path,
    images: str | Path,
    tax: Taxonomy,
    out: str | Path,
    options: AuditOptions,
    source: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Audit ``labels`` with a checkpoint that never trained on them (checked first)."""
    options.check(Path(out))
    checked = check_out_of_sample(checkpoint, labels, images, options.allow_unknown_training_set)
    probs, scorer = checkpoint_probabilities(
        checkpoint,
        labels,
        images,
        device=options.device,
        batch_size=options.batch_size,
        workers=options.workers,
        progress=progress,
    )
    origin = {"kind": "checkpoint", "checkpoint": str(checkpoint), "model": scorer.description, **checked}
    return audit_labels(labels, probs, images, tax, out, options, origin, source)


def audit_labels(
    labels: LabelSet,
    probs: np.ndarray,
    images: str | Path,
    tax: Taxonomy,
    out: str | Path,
    options: AuditOptions,
    origin: dict[str, Any],
    source: str = "",
) -> dict[str, Any]:
    """Find issues in ``labels`` from out-of-sample ``probs`` and write ``out`` and its side files.

    Returns:
        The report (also written as ``STEM.audit.json``).
    """
    out = Path(out)
    options.check(out)
    started = time.perf_counter()
    found = find_issues(labels, probs, adjust=options.adjust)
    files = side_files(out)
    write_issues(files["issues"], labels, found)
    written = {"issues": str(files["issues"]), "report": str(files["report"])}
    if options.to is not None:
        from hspnet_cli.labeltools.rows import ImageRefs

        refs = ImageRefs.choose(
            Path(images), "local-files", options.url_prefix, options.absolute, options.local_files_root
        )
        written.update(
            write_tasks(
                files,
                labels,
                probs,
                found,
                refs,
                tax.groups,
                "hspnet audit",
                claims_only=not options.suggestions_in_tasks,
            )
        )
    kinds = Counter(found.kinds)
    facts: dict[str, Any] = {
        "labels": source,
        "images": labels.n_images,
        "label_count": labels.n_labels,
        "given": {
            "positive": int((labels.matrix == POSITIVE).sum()),
            "negative": int((labels.matrix == NEGATIVE).sum()),
            "unknown": int((labels.matrix == 0).sum()),
        },
        "probabilities": origin,
        "issues": len(found.kinds),
        "by_kind": dict(sorted(kinds.items())),
        "flagged_images": int(len(found.flagged_images(claims_only=True))),
        "images_with_suggestions": int(len(np.unique(found.rows[~found.claims]))),
        "method": "cleanlab multilabel find_multilabel_issues_per_class + get_label_quality_scores_per_class "
        + ("(self_confidence, adjust_pred_probs)" if options.adjust else "(self_confidence)"),
        "seconds": round(time.perf_counter() - started, 3),
        "files": written,
    }
    write_report(files["report"], facts)
    return facts
