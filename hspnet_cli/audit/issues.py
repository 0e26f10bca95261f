"""Label issues from out-of-sample probabilities with cleanlab's multi-label functions.

cleanlab reads a multi-label annotation as each image's list of positive classes; every class
not listed is taken as absent. Per class it estimates, by confident learning, which images'
given presence or absence disagrees with the probabilities beyond that class's own thresholds
(``cleanlab.multilabel_classification.filter.find_multilabel_issues_per_class``), and scores
every (image, class) entry's label quality (``rank.get_label_quality_scores_per_class``:
``self_confidence``, the probability of the given value, p for a positive and 1 - p otherwise).
With ``adjust`` (``--adjust-probabilities``) each class's probabilities are first shifted by its
own confident threshold (cleanlab's ``adjust_pred_probs``). On the demo benchmark
(benchmarks/audit_quality.py, docs/quality.md) the plain score ranked injected errors better
with the better model (trained on full labels) and the adjusted one with the weak
single-positive model; plain is the default.

What an entry says depends on the SPML encoding of the labels (1 / 0 / -1):

* given positive (1) and flagged: ``wrong positive``, a claim that looks false;
* observed negative (-1) and flagged: ``missing positive``, a claim of absence that looks false;
* unknown (0) and flagged: ``likely missing positive``, a suggestion. Single-positive and
  partial labels say nothing about unknown entries, so they are never errors: the image may
  simply hold more than the one label a person gave.

Rows are ranked by quality, lowest first (the surest issues first); an image's rank is its
lowest flagged entry.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, UNKNOWN, LabelSet

log = logging.getLogger(__name__)

KINDS = {POSITIVE: "wrong positive", NEGATIVE: "missing positive", UNKNOWN: "likely missing positive"}
CLAIM_KINDS = ("wrong positive", "missing positive")


@dataclass
class Findings:
    """Flagged (image, label) entries, ranked (surest first), and per-image facts.

    Attributes:
        rows, cols: Image and label index of each flagged entry.
        given: The entry's SPML value (1, 0, -1).
        probability: The model's probability of the label.
        quality: cleanlab's label quality of the given value (lower: more likely wrong).
        kinds: ``wrong positive``, ``missing positive`` or ``likely missing positive``.
        image_quality: (n,) cleanlab's per-image label quality (aggregated over classes).
    """

    rows: np.ndarray
    cols: np.ndarray
    given: np.ndarray
    probability: np.ndarray
    quality: np.ndarray
    kinds: list[str]
    image_quality: np.ndarray

    @property
    def claims(self) -> np.ndarray:
        """(entries,) True for errors in given labels (not suggestions)."""
        return np.array([k in CLAIM_KINDS for k in self.kinds], dtype=bool)

    def flagged_images(self, claims_only: bool = True) -> np.ndarray:
        """Image indices in rank order (first appearance), each once."""
        rows = self.rows[self.claims] if claims_only else self.rows
        _, first = np.unique(rows, return_index=True)
        return rows[np.sort(first)]


def find_issues(labels: LabelSet, probs: np.ndarray, adjust: bool = False) -> Findings:
    """Flag and rank label issues of ``labels`` given out-of-sample ``probs`` (n, C).

    ``adjust``: rank by cleanlab's threshold-adjusted self-confidence (``adjust_pred_probs``)
    instead of the plain one (see the module docstring for when each ranked better).

    Raises:
        UserError: Probabilities of another shape, or a label set cleanlab cannot work on.
    """
    from cleanlab.multilabel_classification import filter as ml_filter
    from cleanlab.multilabel_classification import rank as ml_rank

    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != labels.matrix.shape:
        raise UserError(f"probabilities {probs.shape} do not fit {labels.n_images} images x {labels.n_labels} labels")
    if labels.n_images < 2:
        raise UserError("an audit needs at least 2 labelled images")
    positives = (labels.matrix == POSITIVE).sum(axis=0)
    if not positives.any():
        raise UserError("no image has a positive label; nothing to audit")
    given_lists = [list(map(int, np.flatnonzero(row == POSITIVE))) for row in labels.matrix]
    probs = np.clip(probs, 1e-6, 1 - 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns per class with few examples; counted below
        try:
            flagged = np.asarray(ml_filter.find_multilabel_issues_per_class(given_lists, probs), dtype=bool)
            quality = np.asarray(
                ml_rank.get_label_quality_scores_per_class(
                    given_lists, probs, method="self_confidence", adjust_pred_probs=adjust
                ),
                dtype=np.float64,
            )
            image_quality = np.asarray(
                ml_rank.get_label_quality_scores(
                    given_lists, probs, method="self_confidence", adjust_pred_probs=adjust
                ),
                dtype=np.float64,
            )
        except ValueError as exc:
            raise UserError(f"cleanlab cannot audit these labels: {exc}") from None
    rare = int(((positives > 0) & (positives < 5)).sum())
    if rare:
        log.warning("%d label(s) have fewer than 5 positives: their issues rest on very few examples", rare)
    rows, cols = np.nonzero(flagged)
    q = quality[rows, cols]
    order = np.lexsort((cols, rows, q))
    rows, cols = rows[order], cols[order]
    given = labels.matrix[rows, cols]
    return Findings(
        rows=rows,
        cols=cols,
        given=given,
        probability=probs[rows, cols].astype(np.float32),
        quality=quality[rows, cols],
        kinds=[KINDS[int(g)] for g in given],
        image_quality=image_quality,
    )
