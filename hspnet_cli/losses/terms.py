"""The per-entry SPML losses: SPLC, Hill, AN, EPR, EM, LargeLoss and partial-label BCE
(formulas and reductions: see :mod:`hspnet_cli.losses`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hspnet_cli.losses.base import SPMLLoss, _by_target, _log_p, _p_pow


class SPLCLoss(SPMLLoss):
    """SPLC with focal margin (Zhang et al. 2022), HSPNet's objective. Sum over B x C.

    Unobserved entries with ``p > threshold`` (strict) count as positives for this batch only,
    from epoch ``start_epoch`` on; nothing is stored. The focal weights are not detached, as in
    the published code, so they take part in the gradient.
    """

    def __init__(self, margin: float, threshold: float, start_epoch: int, gamma: float) -> None:
        super().__init__()
        self.margin, self.threshold = margin, threshold
        self.start_epoch, self.gamma = start_epoch, gamma

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        g, xm = self.gamma, x - self.margin
        pos = -_p_pow(-xm, g) * _log_p(xm)  # (1 - p_m)^g = sigmoid(-(x - m))^g
        unk = -_p_pow(x, g) * _log_p(-x)
        if epoch >= self.start_epoch:
            with torch.no_grad():  # the selection itself is not differentiable
                pseudo = (t == 0) & (torch.sigmoid(x) > self.threshold)
            unk = torch.where(pseudo, -_p_pow(-x, g) * _log_p(x), unk)
        return _by_target(t, pos, unk, -_log_p(-x)).sum()


class HillLoss(SPMLLoss):
    """Hill loss (Zhang et al. 2022): focal-margin positives, ``(lamb - p) p^2`` unobserved. Sum."""

    def __init__(self, margin: float, gamma: float, lamb: float) -> None:
        super().__init__()
        self.margin, self.gamma, self.lamb = margin, gamma, lamb

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        xm, p = x - self.margin, torch.sigmoid(x)
        pos = -_p_pow(-xm, self.gamma) * _log_p(xm)
        return _by_target(t, pos, (self.lamb - p) * p * p, -_log_p(-x)).sum()


class ANLoss(SPMLLoss):
    """Assume negative: BCE with every non-positive entry as a negative. Mean over B x C."""

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        return F.binary_cross_entropy_with_logits(x, (t == 1).float())


class EPRLoss(SPMLLoss):
    """Expected positive regularisation (Cole et al. 2021).

    As in the published code: the per-entry matrix (``-log p`` on positives, ``-log(1-p)`` on
    observed negatives, 0 elsewhere) is summed and divided by B x C, not by the number of
    positives; the regulariser ``(mean_b sum_c p - k)^2 / C^2`` is added once per batch.
    """

    def __init__(self, expected_positives: float) -> None:
        super().__init__()
        self.expected_positives = expected_positives

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        b, c = x.shape
        terms = _by_target(t, -_log_p(x), torch.zeros_like(x), -_log_p(-x))
        reg = (torch.sigmoid(x).sum(dim=1).mean() - self.expected_positives) ** 2 / c**2
        return terms.sum() / (b * c) + reg


class EMLoss(SPMLLoss):
    """Entropy maximisation (Zhou et al. 2022): ``-alpha H(p)`` on unobserved. Mean over B x C."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        # H(p) = -p log p - (1-p) log(1-p); 1-p is taken as sigmoid(-x) so it keeps precision.
        entropy = -(torch.sigmoid(x) * _log_p(x) + torch.sigmoid(-x) * _log_p(-x))
        return _by_target(t, -_log_p(x), -self.alpha * entropy, -_log_p(-x)).mean()


class LargeLoss(SPMLLoss):
    """LargeLoss (Kim et al. 2022): AN with the largest unobserved losses rejected or corrected.

    Schedule (published code, 1-based epoch t): nothing in epoch 1, then per batch the
    ``k = ceil(B C (t-1) delta_rel)`` largest AN losses among unobserved entries. With our 0-based
    ``epoch`` that is ``k = ceil(B C epoch delta_rel)``; epoch 0 modifies nothing. LL-Cp, like the
    published code, uses a constant ``k = ceil(B C delta_rel)`` from epoch 1 on, because its
    corrections accumulate in a buffer instead of being re-chosen each batch.

    Candidates are unobserved entries only (never observed positives or negatives, nor entries
    LL-Cp already corrected); k is capped at their number. Exactly k entries are chosen: ties are
    broken by position (row-major, earlier first), where the published code takes every entry
    tied with the k-th value. LL-R sets their loss to 0, LL-Ct replaces it by BCE with target 1
    for this batch, LL-Cp does the same and records entries in the (N, C) bool buffer
    ``corrected`` (in ``state_dict``), so later batches treat them as observed positives. Which
    entries LL-Cp records follows the published rule exactly: those whose loss is strictly
    greater than the k-th largest (``unobserved_loss > topk_value``), i.e. k - 1 per batch
    without ties (fewer with ties at the top), although k are corrected in the batch's loss;
    all of them when the batch has fewer than k candidates (the k-th value is then a 0).
    The buffer is written only in training mode. Mean over B x C (rejected entries count in it).
    """

    corrected: Tensor | None

    def __init__(
        self, scheme: str, delta_rel: float, num_samples: int | None = None, num_classes: int | None = None
    ) -> None:
        super().__init__()
        self.scheme, self.delta_rel = scheme, delta_rel
        buf = None
        if scheme == "ll-cp":
            if not num_samples or not num_classes:
                raise ValueError("ll-cp needs num_samples and num_classes for its buffer")
            buf = torch.zeros(num_samples, num_classes, dtype=torch.bool)
        # A buffer, so it moves with .to(device) and is saved in checkpoints (exact resume).
        self.register_buffer("corrected", buf)

    def num_selected(self, batch: int, classes: int, epoch: int) -> int:
        """How many unobserved entries a full batch modifies at ``epoch`` (before capping)."""
        steps = min(epoch, 1) if self.scheme == "ll-cp" else epoch
        # round() first: B*C*t*d may land a hair above an integer in floating point.
        return math.ceil(round(batch * classes * steps * self.delta_rel, 9))

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        b, c = x.shape
        pos, unk = t == 1, t == 0
        rows: Tensor | None = None
        if self.corrected is not None and (index is not None or self.training):
            if index is None:
                raise ValueError("ll-cp needs the batch's dataset row indices (index=...)")
            if self.corrected.shape[1] != c or index.shape != (b,):
                raise ValueError("ll-cp: index must be (B,) and C must match num_classes")
            rows = index.to(self.corrected.device, torch.long)
            done = self.corrected[rows].to(x.device) & unk
            pos, unk = pos | done, unk & ~done
        loss = F.binary_cross_entropy_with_logits(x, pos.float(), reduction="none")
        k_full = self.num_selected(b, c, epoch)
        k = min(k_full, int(unk.sum()))
        if k > 0:
            with torch.no_grad():
                cand = torch.where(unk, loss.detach(), float("-inf")).flatten()
                top = torch.sort(cand, descending=True, stable=True).indices[:k]
                chosen = torch.zeros(b * c, dtype=torch.bool, device=x.device)
                chosen[top] = True
                chosen = chosen.view(b, c)
            fixed = torch.zeros_like(loss) if self.scheme == "ll-r" else -_log_p(x)
            loss = torch.where(chosen, fixed, loss)
            if rows is not None and self.training:
                # Published rule: the entries recorded for good are those whose loss is strictly
                # above the k-th largest (``>``), so k - 1 per batch without ties, while k are
                # corrected in this batch's loss. With fewer candidates than k, the published
                # k-th value is a masked-out 0 and every candidate (loss > 0) is recorded.
                record = chosen if k_full > k else chosen & (cand.view(b, c) > cand[top[-1]])
                r, col = record.nonzero(as_tuple=True)
                self.corrected[rows[r.to(rows.device)], col.to(rows.device)] = True
        return loss.mean()


class PartialBCELoss(SPMLLoss):
    """BCE on known entries (1 and -1); unknown (0) ignored. Mean over known entries.

    A batch with no known entry returns a zero that is still attached to the graph, so
    ``backward()`` works and contributes nothing.
    """

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        known = t != 0
        bce = F.binary_cross_entropy_with_logits(x, (t == 1).float(), reduction="none")
        return torch.where(known, bce, 0.0).sum() / known.sum().clamp(min=1)
