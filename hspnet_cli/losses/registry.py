"""Losses by name: documented options with their ranges, and :func:`build_loss`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from hspnet_cli.core.errors import UserError
from hspnet_cli.losses.base import SPMLLoss
from hspnet_cli.losses.role import ROLELoss
from hspnet_cli.losses.terms import ANLoss, EMLoss, EPRLoss, HillLoss, LargeLoss, PartialBCELoss, SPLCLoss


def loss_param_groups(loss: SPMLLoss, lr: float) -> list[dict]:
    """Optimiser parameter groups of a loss's own trainable state (ROLE's estimates; else none)."""
    return loss.param_groups(lr) if isinstance(loss, ROLELoss) else []


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
_DELTA = _Opt(
    0.002, float, 0.0, 1.0, high_open=True, note="a fraction per epoch: 0.002 = 0.2 %; the published CLI takes percent"
)
_EXPECTED = _Opt(
    None,
    float,
    0.0,
    low_open=True,
    note="expected positives per image; published: VOC 1.5, COCO 2.9, NUS 1.9, CUB 31.4",
)

_OPTIONS: dict[str, dict[str, _Opt]] = {
    "splc": {
        "margin": _MARGIN,
        "threshold": _Opt(0.6, float, 0.0, 1.0, True, True),
        "start_epoch": _Opt(1, int, 0.0),
        "gamma": _GAMMA,
    },
    "hill": {"margin": _MARGIN, "gamma": _GAMMA, "lamb": _Opt(1.5, float)},
    "an": {},
    "epr": {"expected_positives": _EXPECTED},
    "em": {"alpha": _Opt(0.1, float, 0.0, note="published: 0.1 (VOC 0.2, CUB 0.01)")},
    "ll-r": {"delta_rel": _DELTA},
    "ll-ct": {"delta_rel": _DELTA},
    "ll-cp": {"delta_rel": _DELTA},
    "role": {
        "expected_positives": _EXPECTED,
        "estimator_lr_mult": _Opt(
            10.0, float, 0.0, low_open=True, note="learning-rate multiple of the label estimates (published 10)"
        ),
    },
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


def build_loss(
    name: str,
    num_samples: int | None = None,
    num_classes: int | None = None,
    observed: Tensor | None = None,
    **options: Any,
) -> SPMLLoss:
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
        raise UserError(f"loss {key!r} has no option {', '.join(map(repr, unknown))}; allowed: {allowed}")
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
            raise UserError(
                f"expected_positives {vals['expected_positives']} exceeds the number of classes ({num_classes})"
            )
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
