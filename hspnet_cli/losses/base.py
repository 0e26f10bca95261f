"""The common interface of the SPML losses and the numerically safe pieces they share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _log_p(x: Tensor) -> Tensor:
    """``log sigmoid(x)``, exact for large |x| where ``log(sigmoid(x))`` would give -inf."""
    return F.logsigmoid(x)


def _p_pow(x: Tensor, gamma: float) -> Tensor:
    """``sigmoid(x) ** gamma`` via exp/log-sigmoid: finite gradient even where sigmoid underflows."""
    return torch.exp(gamma * F.logsigmoid(x))


class SPMLLoss(nn.Module):
    """Common interface: ``loss(logits, targets, epoch=e, index=rows) -> scalar``.

    Subclasses implement :meth:`_compute`; this class checks shapes and the target encoding and
    computes in float32 (logits may arrive in half precision under autocast).
    """

    name: str = ""

    def forward(self, logits: Tensor, targets: Tensor, *, epoch: int, index: Tensor | None = None) -> Tensor:
        """Return the scalar loss of one batch.

        Args:
            logits: (B, C) raw scores before the sigmoid.
            targets: (B, C) in {1, 0, -1} (observed positive, unknown, observed negative).
            epoch: 0-based index of the current epoch.
            index: (B,) dataset row indices of the batch; LL-Cp and ROLE need them.

        Raises:
            ValueError: on a shape mismatch, a target outside {-1, 0, 1} or a negative epoch
                (bugs in the caller, not user mistakes).
        """
        if logits.dim() != 2 or logits.shape != targets.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must be the same (B, C) shape"
            )
        if epoch < 0:
            raise ValueError(f"epoch is a 0-based index, got {epoch}")
        valid = ((targets == 1) | (targets == 0) | (targets == -1)).all()
        if targets.is_cuda:
            # Checked on the device: reading the answer back would stall every training step.
            torch._assert_async(valid, "targets must use the SPML encoding 1 / 0 / -1")
        elif not bool(valid):
            raise ValueError("targets must use the SPML encoding 1 / 0 / -1")
        return self._compute(logits.float(), targets, epoch, index)

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        raise NotImplementedError


def _by_target(t: Tensor, pos: Tensor, unk: Tensor, neg: Tensor) -> Tensor:
    """Pick each entry's term by its target (1 -> pos, 0 -> unk, -1 -> neg)."""
    return torch.where(t == 1, pos, torch.where(t == 0, unk, neg))
