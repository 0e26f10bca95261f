"""Single-positive multi-label (SPML) losses, chosen by name so the trainer can swap them.

Targets use the SPML encoding: ``1`` observed positive, ``0`` unobserved (unknown), ``-1``
observed negative (present in partial-label splits). Logits are raw scores before the sigmoid
(the model's ``cos / tau``); ``p = sigmoid(logit)``, ``p_m = sigmoid(logit - margin)``.

Observed negatives (``-1``): every loss here treats them as *known* negatives and gives them the
plain BCE negative term ``-log(1 - p)``, inside that loss's own reduction. They are never
pseudo-labelled (SPLC), never entropy-maximised (EM), never rejected or corrected (LargeLoss).

=========  =============================================================  ====================
name       per-entry term                                                 reduction
=========  =============================================================  ====================
splc       pos ``-(1-p_m)^g log p_m``; unobserved ``-p^g log(1-p)``, or   sum over B x C
           ``-(1-p)^g log p`` when ``p > threshold`` from ``start_epoch``
hill       pos as SPLC; unobserved ``(lamb - p) p^2``                     sum over B x C
an         BCE, every unobserved entry a negative                         mean over B x C
epr        pos ``-log p``; plus ``(mean_b sum_c p - k)^2 / C^2``          term sum / (B C)
                                                                          + regulariser
em         pos ``-log p``; unobserved ``-alpha H(p)``                     mean over B x C
ll-r/ct/cp AN, the k largest unobserved losses rejected / corrected       mean over B x C
role       0.5 (pos(p) + pos(e)) + 0.5 (BCE(p; e) + BCE(e; p)), e the     mean over B x C
           learned label estimate of the entry, other side detached       + regularisers
bce        BCE on known entries (1, -1) only; unknown ignored             mean over known
=========  =============================================================  ====================

Every log of a probability is computed as a log-sigmoid of the logit, and powers of
probabilities as ``exp(g * logsigmoid)``, so no clamp is needed and gradients stay finite for
any finite logit. The published code computes ``-log(p + 1e-5)`` instead; that epsilon is not
negligible where p is small. Measured per entry (float64), ``|-logsigmoid(x) + log(sigmoid(x) +
1e-5)|`` is 2e-5 at x = 0, 5.6e-4 at x = -4, 0.029 at x = -8 and 0.20 at x = -10 (the fixed
scale 10 puts logits in [-10, 10]); its gradient there is -0.82 instead of -1.0. So per-entry
values here differ from the published ones by up to 0.20 for confidently wrong entries, and
such entries get a little more gradient here; elsewhere the two agree closely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hspnet_cli.errors import UserError

__all__ = ["LOSS_NAMES", "SPMLLoss", "build_loss", "loss_defaults", "loss_param_groups"]


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

    def forward(
        self, logits: Tensor, targets: Tensor, *, epoch: int, index: Tensor | None = None
    ) -> Tensor:
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
            raise ValueError(f"logits {tuple(logits.shape)} and targets "
                             f"{tuple(targets.shape)} must be the same (B, C) shape")
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

    def __init__(self, scheme: str, delta_rel: float, num_samples: int | None = None,
                 num_classes: int | None = None) -> None:
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

    def __init__(self, expected_positives: float, estimator_lr_mult: float, num_samples: int,
                 num_classes: int, observed: Tensor | None = None) -> None:
        super().__init__()
        self.expected_positives, self.estimator_lr_mult = expected_positives, estimator_lr_mult
        q = math.log(0.6 / 0.4)                                   # logit(0.5 + 0.1)
        theta = q * (2 * torch.rand(num_samples, num_classes) - 1)
        if observed is not None:
            if tuple(observed.shape) != (num_samples, num_classes):
                raise ValueError(f"role: observed labels {tuple(observed.shape)} must be "
                                 f"({num_samples}, {num_classes})")
            theta[observed == 1] = math.log(0.995 / 0.005)
            theta[observed == -1] = math.log(0.005 / 0.995)
        self.estimates = nn.Parameter(theta)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups of the loss's own parameters: the estimates, undecayed, at
        ``estimator_lr_mult`` x ``lr``."""
        return [{"params": [self.estimates], "lr": self.estimator_lr_mult * lr, "weight_decay": 0.0,
                 "name": "role-estimates"}]

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        b, c = x.shape
        if index is None or index.shape != (b,):
            raise ValueError("role needs the batch's dataset row indices (index=..., shape (B,))")
        theta = self.estimates[index.to(self.estimates.device, torch.long)].to(x.device).float()
        if theta.shape[1] != c:
            raise ValueError(f"role: {c} classes but estimates for {theta.shape[1]}")
        p_det, e_det = torch.sigmoid(x).detach(), torch.sigmoid(theta).detach()
        zero = torch.zeros_like(x)
        own = (_by_target(t, -_log_p(x), zero, -_log_p(-x))
               + _by_target(t, -_log_p(theta), zero, -_log_p(-theta)))
        cross = (e_det * -_log_p(x) + (1 - e_det) * -_log_p(-x)
                 + p_det * -_log_p(theta) + (1 - p_det) * -_log_p(-theta))
        k = self.expected_positives
        reg = ((torch.sigmoid(x).sum(dim=1).mean() - k) ** 2
               + (torch.sigmoid(theta).sum(dim=1).mean() - k) ** 2) / c**2
        return (0.5 * own + 0.5 * cross).sum() / (b * c) + 0.5 * reg


class PartialBCELoss(SPMLLoss):
    """BCE on known entries (1 and -1); unknown (0) ignored. Mean over known entries.

    A batch with no known entry returns a zero that is still attached to the graph, so
    ``backward()`` works and contributes nothing.
    """

    def _compute(self, x: Tensor, t: Tensor, epoch: int, index: Tensor | None) -> Tensor:
        known = t != 0
        bce = F.binary_cross_entropy_with_logits(x, (t == 1).float(), reduction="none")
        return torch.where(known, bce, 0.0).sum() / known.sum().clamp(min=1)


def loss_param_groups(loss: SPMLLoss, lr: float) -> list[dict]:
    """Optimiser parameter groups of a loss's own trainable state (ROLE's estimates; else none)."""
    return loss.param_groups(lr) if isinstance(loss, ROLELoss) else []


def _by_target(t: Tensor, pos: Tensor, unk: Tensor, neg: Tensor) -> Tensor:
    """Pick each entry's term by its target (1 -> pos, 0 -> unk, -1 -> neg)."""
    return torch.where(t == 1, pos, torch.where(t == 0, unk, neg))


@dataclass(frozen=True)
class _Opt:
    """One option: default (None = required), kind, and the accepted range."""

    default: float | int | None
    kind: type
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: the value must be strictly greater than ``low``
    high_open: bool = False
    note: str = ""


_MARGIN = _Opt(1.0, float, 0.0)
_GAMMA = _Opt(2.0, float, 0.0)
_DELTA = _Opt(0.002, float, 0.0, 1.0, high_open=True,
              note="a fraction per epoch: 0.002 = 0.2 %; the published CLI takes percent")
_EXPECTED = _Opt(None, float, 0.0, low_open=True,
                 note="expected positives per image; published: VOC 1.5, COCO 2.9, NUS 1.9, "
                      "CUB 31.4")

_OPTIONS: dict[str, dict[str, _Opt]] = {
    "splc": {"margin": _MARGIN, "threshold": _Opt(0.6, float, 0.0, 1.0, True, True),
             "start_epoch": _Opt(1, int, 0.0), "gamma": _GAMMA},
    "hill": {"margin": _MARGIN, "gamma": _GAMMA, "lamb": _Opt(1.5, float)},
    "an": {},
    "epr": {"expected_positives": _EXPECTED},
    "em": {"alpha": _Opt(0.1, float, 0.0, note="published: 0.1 (VOC 0.2, CUB 0.01)")},
    "ll-r": {"delta_rel": _DELTA},
    "ll-ct": {"delta_rel": _DELTA},
    "ll-cp": {"delta_rel": _DELTA},
    "role": {"expected_positives": _EXPECTED,
             "estimator_lr_mult": _Opt(10.0, float, 0.0, low_open=True,
                                       note="learning-rate multiple of the label estimates (published 10)")},
    "bce": {},
}

LOSS_NAMES: tuple[str, ...] = tuple(_OPTIONS)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in _OPTIONS:
        raise UserError(f"unknown loss {name!r}; choose one of: {', '.join(LOSS_NAMES)}")
    return key


def loss_defaults(name: str) -> dict[str, Any]:
    """Documented default options of loss ``name`` (a value of None means required).

    Raises:
        UserError: if ``name`` is not one of :data:`LOSS_NAMES`.
    """
    return {k: o.default for k, o in _OPTIONS[_canonical(name)].items()}


def _coerce(loss: str, key: str, opt: _Opt, value: Any) -> float | int:
    """Check one option value; strings (from a command line) are parsed."""
    where = f"loss {loss!r} option {key!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{where} must be a number, got {value!r}")
    try:
        num = float(value)
    except ValueError:
        raise UserError(f"{where} must be a number, got {value!r}") from None
    if opt.kind is int:
        if not num.is_integer():
            raise UserError(f"{where} must be a whole number, got {value!r}")
        num = int(num)
    too_low = num <= opt.low if opt.low_open else num < opt.low
    too_high = num >= opt.high if opt.high_open else num > opt.high
    if too_low or too_high or math.isnan(num):
        lo, hi = "(" if opt.low_open else "[", ")" if opt.high_open else "]"
        hint = f" ({opt.note})" if opt.note else ""
        raise UserError(f"{where} must be in {lo}{opt.low}, {opt.high}{hi}, got {value!r}{hint}")
    return num


def build_loss(name: str, num_samples: int | None = None, num_classes: int | None = None,
               observed: Tensor | None = None, **options: Any) -> SPMLLoss:
    """Build the loss called ``name`` with ``options`` over its :func:`loss_defaults`.

    Args:
        name: one of :data:`LOSS_NAMES` (case and ``_``/``-`` are not significant).
        num_samples: training-set size; LL-Cp needs it for its correction buffer.
        num_classes: number of labels; LL-Cp and ROLE need it, EPR uses it to check
            ``expected_positives``.
        observed: (N, C) training targets in {1, 0, -1}; ROLE initialises its estimates from them.
        **options: loss options, named as in the papers (see :func:`loss_defaults`).

    Raises:
        UserError: unknown loss or option name, a bad option value, or a missing required one.
    """
    key = _canonical(name)
    spec = _OPTIONS[key]
    unknown = sorted(set(options) - set(spec))
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise UserError(f"loss {key!r} has no option {', '.join(map(repr, unknown))}; "
                        f"allowed: {allowed}")
    vals: dict[str, Any] = {}
    for opt_name, opt in spec.items():
        if options.get(opt_name) is None:
            if opt.default is None:
                raise UserError(f"loss {key!r} needs option {opt_name!r}: {opt.note}")
            vals[opt_name] = opt.default
        else:
            vals[opt_name] = _coerce(key, opt_name, opt, options[opt_name])
    loss: SPMLLoss
    if key == "splc":
        loss = SPLCLoss(**vals)
    elif key == "hill":
        loss = HillLoss(**vals)
    elif key == "an":
        loss = ANLoss()
    elif key in ("epr", "role"):
        if num_classes is not None and vals["expected_positives"] > num_classes:
            raise UserError(f"expected_positives {vals['expected_positives']} exceeds the "
                            f"number of classes ({num_classes})")
        if key == "epr":
            loss = EPRLoss(**vals)
        else:
            if not num_samples or not num_classes:
                raise ValueError("role needs num_samples and num_classes for its label estimates")
            loss = ROLELoss(num_samples=num_samples, num_classes=num_classes, observed=observed, **vals)
    elif key == "em":
        loss = EMLoss(**vals)
    elif key.startswith("ll-"):
        loss = LargeLoss(key, vals["delta_rel"], num_samples, num_classes)
    else:
        loss = PartialBCELoss()
    loss.name = key
    return loss
