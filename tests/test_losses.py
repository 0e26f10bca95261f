"""SPML losses against values worked out by hand with plain math (not the module's expressions)."""

from __future__ import annotations

import math

import pytest
import torch

from hspnet_cli.core.errors import UserError
from hspnet_cli.losses import LOSS_NAMES, SPMLLoss, build_loss, loss_defaults

# One small batch used throughout: 2 images x 3 labels.
X = [[2.0, 0.5, -1.0], [0.41, 3.0, 1.2]]
T = [[1, 0, 0], [0, 1, -1]]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce_pos(x: float) -> float:  # -log p
    return -math.log(sig(x))


def bce_neg(x: float) -> float:  # -log(1 - p)
    return -math.log(1.0 - sig(x))


def focal_pos(x: float, m: float = 1.0, g: float = 2.0) -> float:  # -(1-p_m)^g log p_m
    q = sig(x - m)
    return -((1.0 - q) ** g) * math.log(q)


def focal_neg(x: float, g: float = 2.0) -> float:  # -p^g log(1-p)
    p = sig(x)
    return -(p**g) * math.log(1.0 - p)


def run(loss: SPMLLoss, x=X, t=T, epoch: int = 0, index=None) -> float:
    return loss(torch.tensor(x), torch.tensor(t), epoch=epoch, index=index).item()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def make(name: str, n: int = 2, c: int = 3, **opts: object) -> SPMLLoss:
    """Any loss by name, with what it needs (EPR's k, LL-Cp's buffer size)."""
    if name in ("epr", "role"):
        opts.setdefault("expected_positives", 1.0)
    return build_loss(name, num_samples=n, num_classes=c, **opts)


# ---------------------------------------------------------------- SPLC


def test_splc_before_start_epoch_is_focal_margin_with_all_unobserved_negative() -> None:
    # 0.5 and 0.41 have p > 0.6 but epoch 0 < start_epoch 1: still negatives.
    want = focal_pos(2.0) + focal_neg(0.5) + focal_neg(-1.0) + focal_neg(0.41) + focal_pos(3.0) + bce_neg(1.2)
    assert close(run(build_loss("splc"), epoch=0), want)


def test_splc_from_start_epoch_pseudo_labels_confident_unobserved() -> None:
    # sig(0.5) = 0.622 and sig(0.41) = 0.601 pass 0.6: -(1-p)^2 log p, no margin.
    # The observed negative at 1.2 (p = 0.77) is never pseudo-labelled.
    def pseudo(x: float) -> float:
        return -((1 - sig(x)) ** 2) * math.log(sig(x))

    want = focal_pos(2.0) + pseudo(0.5) + focal_neg(-1.0) + pseudo(0.41) + focal_pos(3.0) + bce_neg(1.2)
    assert close(run(build_loss("splc"), epoch=1), want)
    assert close(run(build_loss("splc"), epoch=5), want)  # recomputed, same every epoch


def test_splc_threshold_is_strict_and_options_apply() -> None:
    loss = build_loss("splc", threshold=0.5, start_epoch=0, margin=0.5, gamma=1.0)
    # sig(0) is exactly 0.5: not above the threshold, so it stays a (focal) negative.
    want = focal_pos(1.0, m=0.5, g=1.0) + focal_neg(0.0, g=1.0)
    assert close(run(loss, [[1.0, 0.0]], [[1, 0]]), want)
    # Just below / above the default 0.6 (logit log 1.5 = 0.405465).
    splc = build_loss("splc")
    below, above = math.log(1.5) - 1e-3, math.log(1.5) + 1e-3
    assert close(run(splc, [[below]], [[0]], epoch=1), focal_neg(below))
    assert close(run(splc, [[above]], [[0]], epoch=1), -((1 - sig(above)) ** 2) * math.log(sig(above)))


def test_splc_focal_weight_is_not_detached() -> None:
    x = torch.tensor([[0.3]], requires_grad=True)
    build_loss("splc")(x, torch.tensor([[1]]), epoch=0).backward()
    q = sig(0.3 - 1.0)
    # d/dx of -(1-q)^2 log q with q = sig(x - 1), weight differentiated too:
    full = 2 * (1 - q) ** 2 * q * math.log(q) - (1 - q) ** 3
    detached = -((1 - q) ** 3)  # what a detached weight would give
    assert close(x.grad.item(), full)
    assert abs(full - detached) > 0.05 and not close(x.grad.item(), detached)


# ---------------------------------------------------------------- Hill, AN, EPR, EM


def test_hill() -> None:
    def hill(x: float) -> float:
        p = sig(x)
        return (1.5 - p) * p * p

    want = focal_pos(2.0) + hill(0.5) + hill(-1.0) + hill(0.41) + focal_pos(3.0) + bce_neg(1.2)
    assert close(run(build_loss("hill"), epoch=3), want)
    # lamb changes only the unobserved term.
    p = sig(0.5)
    assert close(run(build_loss("hill", lamb=2.0), [[0.5]], [[0]]), (2.0 - p) * p * p)


def test_an_is_mean_bce_with_unobserved_as_negative() -> None:
    want = (bce_pos(2.0) + bce_neg(0.5) + bce_neg(-1.0) + bce_neg(0.41) + bce_pos(3.0) + bce_neg(1.2)) / 6
    assert close(run(build_loss("an")), want)


def test_epr_divides_terms_by_batch_times_classes_and_adds_regulariser() -> None:
    terms = bce_pos(2.0) + bce_pos(3.0) + bce_neg(1.2)
    rows = [sum(sig(v) for v in row) for row in X]
    reg = ((rows[0] + rows[1]) / 2 - 1.5) ** 2 / 3**2
    assert close(run(build_loss("epr", expected_positives=1.5)), terms / 6 + reg)


def test_em_maximises_entropy_on_unobserved() -> None:
    def h(x: float) -> float:
        p = sig(x)
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    want = (bce_pos(2.0) - 0.1 * h(0.5) - 0.1 * h(-1.0) - 0.1 * h(0.41) + bce_pos(3.0) + bce_neg(1.2)) / 6
    assert close(run(build_loss("em")), want)
    want2 = (bce_pos(2.0) - 0.2 * h(0.5)) / 2
    assert close(run(build_loss("em", alpha=0.2), [[2.0, 0.5]], [[1, 0]]), want2)


# ---------------------------------------------------------------- LargeLoss

# Unobserved AN losses: (0,1) 3.049, (0,2) 0.313, (1,0) 2.127, (1,1) 0.127.
# The observed negative (1,2) has the largest loss (4.018) but is never a candidate.
LX = [[0.5, 3.0, -1.0], [2.0, -2.0, 4.0]]
LT = [[1, 0, 0], [0, 0, -1]]


def an_terms() -> list[float]:
    return [bce_pos(0.5), bce_neg(3.0), bce_neg(-1.0), bce_neg(2.0), bce_neg(-2.0), bce_neg(4.0)]


def test_largeloss_epoch_zero_is_plain_an() -> None:
    for name in ("ll-r", "ll-ct", "ll-cp"):
        loss = build_loss(name, num_samples=4, num_classes=3, delta_rel=0.2)
        got = run(loss, LX, LT, epoch=0, index=torch.tensor([0, 1]))
        assert close(got, sum(an_terms()) / 6), name
    cp = build_loss("ll-cp", num_samples=4, num_classes=3, delta_rel=0.2)
    assert not cp.corrected.any()


def test_ll_r_rejects_the_k_largest_unobserved_losses() -> None:
    loss = build_loss("ll-r", delta_rel=0.2)
    terms = an_terms()
    # epoch 1: k = ceil(6 * 1 * 0.2) = 2 -> (0,1) and (1,0) set to 0; still divided by 6.
    want = (terms[0] + terms[2] + terms[4] + terms[5]) / 6
    assert close(run(loss, LX, LT, epoch=1), want)
    # epoch 2: k = ceil(6 * 2 * 0.2) = 3 -> (0,2) too.
    assert close(run(loss, LX, LT, epoch=2), (terms[0] + terms[4] + terms[5]) / 6)
    # k larger than the 4 candidates: all unobserved rejected, positives/negatives kept.
    assert close(run(loss, LX, LT, epoch=10), (terms[0] + terms[5]) / 6)


def test_ll_ct_corrects_temporarily() -> None:
    loss = build_loss("ll-ct", delta_rel=0.2)
    terms = an_terms()
    want = (terms[0] + bce_pos(3.0) + terms[2] + bce_pos(2.0) + terms[4] + terms[5]) / 6
    assert close(run(loss, LX, LT, epoch=1), want)
    assert close(run(loss, LX, LT, epoch=1), want)  # nothing remembered


def test_ll_cp_corrections_persist_and_live_in_state_dict() -> None:
    loss = build_loss("ll-cp", num_samples=6, num_classes=3, delta_rel=0.2)
    idx = torch.tensor([5, 2])
    terms = an_terms()
    first = (terms[0] + bce_pos(3.0) + terms[2] + bce_pos(2.0) + terms[4] + terms[5]) / 6
    assert close(run(loss, LX, LT, epoch=1, index=idx), first)
    # k = 2 corrected in this batch's loss, but only the entry strictly above the 2nd largest
    # loss, (0,1) = dataset row 5 col 1, is recorded for good (the published ``>`` rule).
    assert loss.corrected.nonzero().tolist() == [[5, 1]]
    # Next call: (5,1) is now a positive; k stays ceil(6 * 0.2) = 2 for LL-Cp: the two largest
    # remaining candidates (1,0) 2.127 and (0,2) 0.313 are corrected, (1,0) recorded.
    second = (terms[0] + bce_pos(3.0) + bce_pos(-1.0) + bce_pos(2.0) + terms[4] + terms[5]) / 6
    assert close(run(loss, LX, LT, epoch=2, index=idx), second)
    assert loss.corrected.nonzero().tolist() == [[2, 0], [5, 1]]
    # A third call records (0,2) and corrects the last candidate (1,1) in its loss.
    third = (terms[0] + bce_pos(3.0) + bce_pos(-1.0) + bce_pos(2.0) + bce_pos(-2.0) + terms[5]) / 6
    assert close(run(loss, LX, LT, epoch=2, index=idx), third)
    assert loss.corrected.sum().item() == 3
    assert close(run(loss, LX, LT, epoch=2, index=idx), third)
    assert loss.corrected.sum().item() == 4
    # Saved and restored exactly; a fresh loss with that state behaves the same.
    state = loss.state_dict()
    assert state["corrected"].dtype == torch.bool and state["corrected"].shape == (6, 3)
    fresh = build_loss("ll-cp", num_samples=6, num_classes=3, delta_rel=0.2)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.corrected, loss.corrected)
    # All unobserved entries of these rows corrected: no candidates left, pure positives now.
    assert close(run(fresh, LX, LT, epoch=1, index=idx), third)


def test_ll_cp_eval_mode_does_not_write_and_training_needs_index() -> None:
    loss = build_loss("ll-cp", num_samples=2, num_classes=3, delta_rel=0.2).eval()
    run(loss, LX, LT, epoch=1, index=torch.tensor([0, 1]))
    run(loss, LX, LT, epoch=1)  # no index in eval: behaves as LL-Ct
    assert not loss.corrected.any()
    with pytest.raises(ValueError, match="index"):
        run(loss.train(), LX, LT, epoch=1)
    with pytest.raises(ValueError):
        build_loss("ll-cp", delta_rel=0.2)  # no buffer size


def test_largeloss_ties_break_by_position_and_schedule_rounding() -> None:
    loss = build_loss("ll-r", delta_rel=0.25)  # 2 x 2, epoch 1: k = ceil(4 * 0.25) = 1
    got = run(loss, [[0.0, 0.0], [0.0, 0.0]], [[0, 0], [0, 0]], epoch=1)
    assert close(got, 3 * bce_neg(0.0) / 4)  # exactly one rejected despite the 4-way tie
    # 100 * 7 * 10 * 0.001 is 7.000000000000001 in floating point; the schedule says 7.
    assert build_loss("ll-r", delta_rel=0.001).num_selected(100, 7, 10) == 7
    # LL-Cp: constant k = ceil(700 * 0.002) = 2 at any epoch >= 1, 0 at epoch 0.
    cp = build_loss("ll-cp", num_samples=4, num_classes=2)
    assert cp.num_selected(100, 7, 10) == 2 and cp.num_selected(100, 7, 0) == 0
    # k = 1 and a 4-way tie: one entry corrected in the loss (the earliest in row-major order),
    # none recorded, as no loss is strictly above the k-th (the published ``>`` rule).
    cp = build_loss("ll-cp", num_samples=4, num_classes=2, delta_rel=0.25)
    got = run(cp, [[0.0, 0.0], [0.0, 0.0]], [[0, 0], [0, 0]], epoch=1, index=torch.tensor([3, 1]))
    assert close(got, (3 * bce_neg(0.0) + bce_pos(0.0)) / 4)
    assert not cp.corrected.any()
    # k = 2 over distinct losses: the larger one, dataset row 1 col 1, is the one recorded.
    cp = build_loss("ll-cp", num_samples=4, num_classes=2, delta_rel=0.5)
    run(cp, [[0.0, 1.0], [2.0, 3.0]], [[0, 0], [0, 0]], epoch=1, index=torch.tensor([3, 1]))
    assert cp.corrected.nonzero().tolist() == [[1, 1]]


# ---------------------------------------------------------------- partial-label BCE


def test_partial_bce_ignores_unknown_entries() -> None:
    want = (bce_pos(2.0) + bce_pos(3.0) + bce_neg(1.2)) / 3
    assert close(run(build_loss("bce")), want)


def test_partial_bce_without_known_entries_is_zero_with_grad() -> None:
    x = torch.tensor([[1.0, -2.0]], requires_grad=True)
    out = build_loss("bce")(x, torch.tensor([[0, 0]]), epoch=0)
    out.backward()
    assert out.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_observed_negative_gets_the_bce_negative_term(name: str) -> None:
    """Turning an unobserved entry with a confident score into -1 gives it -log(1 - p)."""
    loss = make(name, n=1, c=2)
    x = [[2.0, 3.0]]
    got = run(loss, x, [[1, -1]], epoch=3, index=torch.tensor([0]))
    base = run(loss, x, [[1, 0]], epoch=0, index=torch.tensor([0])) if name in ("epr", "role") else None
    pos = {"splc": focal_pos(2.0), "hill": focal_pos(2.0)}.get(name, bce_pos(2.0))
    if name in ("splc", "hill"):
        want = pos + bce_neg(3.0)
    elif name == "epr":
        assert base is not None
        want = base + bce_neg(3.0) / 2  # the regulariser is the same for both
    elif name == "role":  # both sides get the negative term: -log(1-p) and -log(1-e), halved
        assert base is not None
        theta = loss.estimates[0, 1].item()
        want = base + 0.5 * (bce_neg(3.0) + bce_neg(theta)) / 2
    elif name == "bce":
        want = (pos + bce_neg(3.0)) / 2
    else:  # an, em, ll-*: mean over B x C
        want = (pos + bce_neg(3.0)) / 2
    assert close(got, want)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_extreme_logits_give_finite_loss_and_gradients(name: str) -> None:
    # A fractional focal exponent is the hard case for pow() at an underflowed probability.
    loss = make(name, c=4, **({"gamma": 0.5} if name in ("splc", "hill") else {}))
    x = torch.tensor([[50.0, -50.0, 50.0, -50.0], [-50.0, 50.0, 50.0, -50.0]], requires_grad=True)
    t = torch.tensor([[1, 1, 0, 0], [-1, -1, 0, 1]])
    for epoch in (0, 2):
        out = loss(x, t, epoch=epoch, index=torch.tensor([0, 1]))
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(x.grad).all(), (name, epoch)
        x.grad = None


def test_half_precision_logits_are_computed_in_float32() -> None:
    out = build_loss("splc")(torch.tensor(X).half(), torch.tensor(T), epoch=0)
    assert out.dtype == torch.float32


# ---------------------------------------------------------------- registry and options


def test_registry_names_defaults_and_canonical_names() -> None:
    assert {"splc", "hill", "an", "epr", "em", "ll-r", "ll-ct", "ll-cp", "bce"} <= set(LOSS_NAMES)
    assert loss_defaults("splc") == {"margin": 1.0, "threshold": 0.6, "start_epoch": 1, "gamma": 2.0}
    assert loss_defaults("LL_R") == {"delta_rel": 0.002}
    assert loss_defaults("epr") == {"expected_positives": None}
    assert build_loss("LL_Ct").name == "ll-ct" and build_loss("SPLC").name == "splc"
    for name in LOSS_NAMES:
        assert make(name).name == name


def test_cli_strings_are_parsed() -> None:
    loss = build_loss("splc", threshold="0.7", start_epoch="2")
    assert loss.threshold == 0.7 and loss.start_epoch == 2


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("nope", {}, "unknown loss 'nope'"),
        ("splc", {"tau": 0.6}, "allowed: margin, threshold, start_epoch, gamma"),
        ("an", {"alpha": 1}, "allowed: none"),
        ("splc", {"threshold": 1.0}, "threshold"),
        ("splc", {"start_epoch": 1.5}, "whole number"),
        ("splc", {"gamma": True}, "number"),
        ("splc", {"margin": "abc"}, "number"),
        ("ll-r", {"delta_rel": 1.0}, "percent"),
        ("em", {"alpha": -0.1}, "alpha"),
        ("epr", {}, "needs option 'expected_positives'.*COCO 2.9"),
        ("epr", {"expected_positives": 5.0}, "exceeds"),
    ],
)
def test_bad_names_and_options_are_user_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        build_loss(name, num_classes=3, **options)


def test_loss_defaults_unknown_name() -> None:
    with pytest.raises(UserError, match="choose one of"):
        loss_defaults("focal")


def test_bad_targets_are_rejected() -> None:
    with pytest.raises(ValueError, match="encoding"):
        run(build_loss("an"), [[0.0]], [[2]])
    with pytest.raises(ValueError, match="shape"):
        build_loss("an")(torch.zeros(2, 3), torch.zeros(3, 2), epoch=0)
