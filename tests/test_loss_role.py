"""ROLE (Cole et al. 2021) against its initialisation rule and a step worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from test_losses import T, X, bce_neg, bce_pos, close, run, sig

from hspnet_cli.core.errors import UserError
from hspnet_cli.losses import build_loss


def test_role_initialises_estimates_from_the_observed_labels() -> None:
    observed = torch.tensor([[1, 0, -1], [0, 0, 1]])
    torch.manual_seed(0)
    loss = build_loss("role", num_samples=2, num_classes=3, observed=observed, expected_positives=1.5)
    e = torch.sigmoid(loss.estimates.detach())
    assert math.isclose(e[0, 0].item(), 0.995, rel_tol=1e-6) and math.isclose(e[1, 2].item(), 0.995, rel_tol=1e-6)
    assert math.isclose(e[0, 2].item(), 0.005, rel_tol=1e-4)
    unknown = e[observed == 0]
    assert ((unknown > 0.4) & (unknown < 0.6)).all() and len(set(unknown.tolist())) == 3
    assert "estimates" in loss.state_dict() and loss.param_groups(1e-4)[0]["lr"] == pytest.approx(1e-3)


def test_role_loss_and_one_step_match_a_hand_computation() -> None:
    """Value, gradients and one SGD step of the estimates, worked out with plain math."""
    n, k, lr = 4, 1.5, 0.5
    loss = build_loss("role", num_samples=n, num_classes=3, expected_positives=k)
    thetas = [[0.3, -1.0, 2.0], [1.0, 0.2, -0.4], [-0.7, 1.5, 0.1], [0.0, 0.0, 0.0]]
    with torch.no_grad():
        loss.estimates.copy_(torch.tensor(thetas))
    index = [2, 0]  # batch rows 0, 1 are dataset rows 2, 0
    x = torch.tensor(X, requires_grad=True)
    out = loss(x, torch.tensor(T), epoch=0, index=torch.tensor(index))
    out.backward()

    b, c = 2, 3
    total, grad_theta = 0.0, {}
    sum_p = [sum(sig(X[i][j]) for j in range(c)) for i in range(b)]
    sum_e = [sum(sig(thetas[index[i]][j]) for j in range(c)) for i in range(b)]
    reg_p, reg_e = (sum(sum_p) / b - k) ** 2 / c**2, (sum(sum_e) / b - k) ** 2 / c**2
    for i in range(b):
        for j in range(c):
            xv, th, t = X[i][j], thetas[index[i]][j], T[i][j]
            p, e = sig(xv), sig(th)
            own = {1: bce_pos(xv) + bce_pos(th), -1: bce_neg(xv) + bce_neg(th), 0: 0.0}[t]
            cross = e * bce_pos(xv) + (1 - e) * bce_neg(xv) + p * bce_pos(th) + (1 - p) * bce_neg(th)
            total += (0.5 * own + 0.5 * cross) / (b * c)
            d_own = {1: e - 1, -1: e, 0: 0.0}[t]
            grad_theta[(index[i], j)] = (0.5 * d_own + 0.5 * (e - p)) / (b * c) + 0.5 * 2 * (
                sum(sum_e) / b - k
            ) / c**2 / b * e * (1 - e)
    assert close(out.item(), total + 0.5 * (reg_p + reg_e))
    grad = loss.estimates.grad
    for (row, j), want in grad_theta.items():
        assert math.isclose(grad[row, j].item(), want, rel_tol=1e-5, abs_tol=1e-8), (row, j)
    assert torch.equal(grad[[1, 3]], torch.zeros(2, 3))  # rows not in the batch get nothing
    # The classifier side: d/dx = (0.5 * d_own + 0.5 * (p - e)) / (BC) + reg term.
    i, j = 1, 0  # unobserved entry, dataset row 0
    p, e = sig(X[i][j]), sig(thetas[0][j])
    want_x = 0.5 * (p - e) / (b * c) + 0.5 * 2 * (sum(sum_p) / b - k) / c**2 / b * p * (1 - p)
    assert math.isclose(x.grad[i, j].item(), want_x, rel_tol=1e-5)
    torch.optim.SGD(loss.parameters(), lr=lr).step()
    for (row, j), want in grad_theta.items():
        assert math.isclose(loss.estimates[row, j].item(), thetas[row][j] - lr * want, rel_tol=1e-6)


def test_role_needs_the_batch_index_and_its_sizes() -> None:
    loss = build_loss("role", num_samples=2, num_classes=3, expected_positives=1.0)
    with pytest.raises(ValueError, match="index"):
        run(loss, X, T, epoch=0)
    with pytest.raises(UserError, match="needs option 'expected_positives'"):
        build_loss("role", num_samples=2, num_classes=3)
