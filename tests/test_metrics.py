"""Metrics against scikit-learn and hand-computed examples: AP variants, F1, top-k, groups, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from hspnet_cli.evaluation.calibration import best_f1_threshold, calibrate
from hspnet_cli.evaluation.evaluate import evaluate_scores
from hspnet_cli.evaluation.metrics import (
    average_precision,
    average_precision_asl,
    group_scores_and_targets,
    known_mask,
    mean_average_precision,
    threshold_metrics,
    top_k_precision,
)
from hspnet_cli.taxonomy import taxonomy_from_dict


@pytest.mark.parametrize("ties", [False, True])
def test_map_matches_sklearn_on_random_data(ties: bool) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 7)).astype(np.float32)
    if ties:
        scores = np.round(scores, 1)  # many tied scores per class
    targets = np.where(rng.random((200, 7)) < 0.2, 1, rng.choice([0, -1], size=(200, 7)))
    result = mean_average_precision(scores, targets)
    expected = [average_precision_score(targets[:, c] == 1, scores[:, c]) for c in range(7)]
    np.testing.assert_allclose(result.per_class, expected, rtol=1e-10)
    assert result.map == pytest.approx(np.mean(expected))
    asl = mean_average_precision(scores, targets, "asl")
    if ties:
        assert not np.allclose(asl.per_class, expected)  # the variants differ only through ties
    else:
        np.testing.assert_allclose(asl.per_class, expected, rtol=1e-10)


def test_tie_handling_of_both_variants() -> None:
    # Ranks: 0.9 (neg), then 0.5 twice (one pos, one neg), then 0.1 (pos).
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    pos_first = np.array([0, 1, 0, 1], dtype=bool)
    pos_second = np.array([0, 0, 1, 1], dtype=bool)
    # sklearn: the tie is one step: recall 0.5 at precision 1/3, then recall 1 at precision 2/4.
    assert average_precision(scores, pos_first) == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)
    assert average_precision(scores, pos_second) == pytest.approx(5 / 12)
    # ASL with a stable sort: tied rows keep input order, so the positive's rank depends on it.
    assert average_precision_asl(scores, pos_first) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision_asl(scores, pos_second) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_classes_without_positives_are_reported_not_averaged() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
    targets = np.array([[1, -1, 0], [-1, 1, -1]])
    for variant in ("sklearn", "asl"):
        result = mean_average_precision(scores, targets, variant)
        assert result.no_positive == [2] and np.isnan(result.per_class[2])
        assert result.map == pytest.approx(1.0)
    tax = taxonomy_from_dict({"labels": ["a", "b", "c"], "groups": {"g": ["a", "b"], "h": ["c"]}})
    report = evaluate_scores(scores, targets, tax)
    assert report.no_positive == ["c"] and report.to_dict()["per_class"]["c"]["ap"] is None
    assert report.worst_first() == [0, 1]


def test_f1_precision_recall_and_unknowns() -> None:
    probs = np.array([[0.9, 0.6, 0.1], [0.8, 0.2, 0.7], [0.3, 0.7, 0.4]])
    full = np.array([[1, 1, -1], [-1, -1, 1], [1, -1, -1]])
    m = threshold_metrics(probs, full, 0.5)
    # a: pred rows 0,1 / pos rows 0,2 -> P 1/2 R 1/2; b: pred 0,2 / pos 0 -> P 1/2 R 1; c: pred 1 / pos 1 -> 1, 1
    np.testing.assert_allclose(m.per_class_precision, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(m.per_class_recall, [0.5, 1.0, 1.0])
    cp, cr = 2 / 3, 5 / 6
    assert (m.cp, m.cr) == pytest.approx((cp, cr)) and m.cf1 == pytest.approx(2 * cp * cr / (cp + cr))
    assert (m.op, m.or_) == pytest.approx((3 / 5, 3 / 4)) and m.of1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # With observed negatives in the file, 0 = unknown is left out: hiding the false positive of
    # class b (row 2) makes b perfect.
    partial = full.copy()
    partial[2, 1] = 0
    assert threshold_metrics(probs, partial, 0.5).per_class_precision[1] == pytest.approx(1.0)
    # Without any -1 (positives only), 0 counts as negative.
    positives_only = np.where(full == 1, 1, 0)
    assert known_mask(positives_only).all()
    np.testing.assert_allclose(threshold_metrics(probs, positives_only, 0.5).per_class_precision, [0.5, 0.5, 1.0])


def test_top_k_precision() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.9], [0.5, 0.5, 0.5, 0.5]])
    targets = np.array(
        [
            [1, 0, 1, -1],
            [-1, -1, -1, -1],  # no positive: left out
            [0, 0, 1, 1],
        ]
    )
    # row 0: top-2 = {0, 1} -> 1 hit; row 2 (all tied, label order): {0, 1} -> 0 hits.
    assert top_k_precision(scores, targets, k=2) == pytest.approx((1 / 2 + 0) / 2)
    assert top_k_precision(scores, targets, k=1) == pytest.approx(0.5)


def test_group_map() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.4, 0.8], [0.2, 0.1, 0.1]])
    targets = np.array([[0, 1, -1], [-1, -1, 1], [-1, -1, -1]])
    g_scores, g_targets = group_scores_and_targets(scores, targets, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(g_scores, [[0.9, 0.2], [0.4, 0.8], [0.2, 0.1]])
    np.testing.assert_array_equal(g_targets, [[1, -1], [-1, 1], [-1, -1]])
    tax = taxonomy_from_dict({"labels": ["a", "b", "c"], "groups": {"g": ["a", "b"], "h": ["c"]}})
    report = evaluate_scores(scores, targets, tax)
    assert report.to_dict()["per_group_ap"] == {"g": 1.0, "h": 1.0} and report.group_map == 1.0
    # a has no positive; b's positive (0.1) ties with a negative behind 0.4: one step, P 1/3; c first.
    assert report.no_positive == ["a"] and report.map == pytest.approx((1 / 3 + 1.0) / 2)


def test_calibration_finds_the_separating_threshold() -> None:
    # Class 0 separates perfectly between 0.6 and 0.7; class 1 has one positive -> fallback.
    probs = np.array([[0.9, 0.2], [0.7, 0.9], [0.6, 0.1], [0.3, 0.3], [0.65, 0.1], [0.8, 0.4]])
    targets = np.array([[1, -1], [1, 1], [-1, -1], [-1, -1], [-1, -1], [1, -1]])
    t, f1 = best_f1_threshold(probs[:, 0], targets[:, 0] == 1)
    assert t == pytest.approx(0.675) and f1 == 1.0  # half-way between 0.7 (lowest positive) and 0.65
    result = calibrate(probs, targets, ["a", "b"], min_positives=2)
    assert result["thresholds"]["a"] == pytest.approx(0.675)
    assert result["fallback"]["labels"] == ["b"] and result["per_class"]["b"]["rule"] == "global"
    # The pooled (micro) optimum tags a's three positives and b's one (0.9) with no false positive.
    pooled_t = result["fallback"]["threshold"]
    assert result["thresholds"]["b"] == pooled_t and 0.65 < pooled_t < 0.7
    fixed = calibrate(probs, targets, ["a", "b"], min_positives=2, fallback="default", default=0.42)
    assert fixed["thresholds"]["b"] == 0.42 and fixed["fallback"]["rule"] == "default"
