"""ROLE (Cole et al. 2021): a classifier loss paired with learnable per-image label estimates."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hspnet_cli.losses.base import SPMLLoss, _by_target, _log_p


class ROLELoss(SPMLLoss):
    """ROLE, regularised online label estimation (Cole et al. 2021).

    Beside the classifier's probabilities p, a learnable (N, C) matrix of label-estimate logits
    theta holds an estimate e = sigmoid(theta) of every training entry (the parameter
    ``estimates``; trained by the optimiser, saved and resumed with the loss's state). Per
    entry, with each side's target detached from the other's graph::

        0.5 * (pos(p) + pos(e)) + 0.5 * (BCE(p; target e) + BCE(e; target p))

    where pos(q) = -log q on observed positives (0 elsewhere). The matrix is summed and divided
    by B x C; the expected-positive regulariser ``(mean_b sum_c q - k)^2 / C^2`` of EPR is added
    for q = p and q = e, averaged. Initialisation as published: unobserved logits uniform in
    +-logit(0.6), observed positives logit(0.995), observed negatives logit(0.005). Observed
    negatives (the published code has none) get -log(1 - q) on both sides in place of pos(q).
    The published optimiser runs the estimates at ``estimator_lr_mult`` (10) x the learning
    rate: see :meth:`param_groups`.
    """

    def __init__(
        self,
        expected_positives: float,
        estimator_lr_mult: float,
        num_samples: int,
        num_classes: int,
        observed: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.expected_positives, self.estimator_lr_mult = expected_positives, estimator_lr_mult
        q = math.log(0.6 / 0.4)  # logit(0.5 + 0.1)
        theta = q * (2 * torch.rand(num_samples, num_classes) - 1)
        if observed is not None:
            if tuple(observed.shape) != (num_samples, num_classes):
                raise ValueError(
                    f"role: observed labels {tuple(observed.shape)} must be ({num_samples}, {num_classes})"
                )
            theta[observed == 1] = math.log(0.995 / 0.005)
            theta[observed == -1] = math.log(0.005 / 0.995)
        self.estimates = nn.Parameter(theta)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups of the loss's own parameters: the estimates, undecayed, at
        ``estimator_lr_mult`` x ``lr``."""
        return [
            {
                "params": [self.estimates],
                "lr": self.estimator_lr_mult * lr,
                "weight_decay": 0.0,
                "name": "role-estimates",
            }
        ]

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        b, c = x.shape
        if index is None or index.shape != (b,):
            raise ValueError("role needs the batch's dataset row indices (index=..., shape (B,))")
        theta = self.estimates[index.to(self.estimates.device, torch.long)].to(x.device).float()
        if theta.shape[1] != c:
            raise ValueError(f"role: {c} classes but estimates for {theta.shape[1]}")
        p_det, e_det = torch.sigmoid(x).detach(), torch.sigmoid(theta).detach()
        zero = torch.zeros_like(x)
        own = _by_target(t, -_log_p(x), zero, -_log_p(-x)) + _by_target(t, -_log_p(theta), zero, -_log_p(-theta))
        cross = e_det * -_log_p(x) + (1 - e_det) * -_log_p(-x) + p_det * -_log_p(theta) + (1 - p_det) * -_log_p(-theta)
        k = self.expected_positives
        reg = ((torch.sigmoid(x).sum(dim=1).mean() - k) ** 2 + (torch.sigmoid(theta).sum(dim=1).mean() - k) ** 2) / c**2
        return (0.5 * own + 0.5 * cross).sum() / (b * c) + 0.5 * reg
