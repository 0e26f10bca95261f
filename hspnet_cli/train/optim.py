"""Optimiser, schedule and EMA as published (method-notes section 2).

Adam with coupled L2 weight decay on weights of two or more dimensions only (biases, norms,
the GCN's gamma and the logit scale are not decayed); the GCN gets its own max learning rate;
OneCycle is stepped every iteration; an EMA of the trainable state (BatchNorm statistics
included) is kept with a decay of exp(ln 0.82 / iterations per epoch), i.e. 0.82 per epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hspnet_cli.config import TrainConfig
from hspnet_cli.model.hspnet import HSPNet


def param_groups(model: HSPNet, config: TrainConfig) -> list[dict]:
    """Adam parameter groups: (backbone/prompt | GCN) x (decay | no decay)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    gcn_ids = {id(p) for m in (model.gcn_group, model.gcn_label) if m is not None for p in m.parameters()}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = (id(p) in gcn_ids, p.ndim >= 2)
        groups.setdefault(key, []).append(p)
    out = []
    for (is_gcn, decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": config.gcn_lr if is_gcn else config.lr,
                "weight_decay": config.weight_decay if decay else 0.0,
                "name": f"{'gcn' if is_gcn else 'main'}-{'decay' if decay else 'no_decay'}",
            }
        )
    return out


def build_optimizer(
    model: HSPNet, config: TrainConfig, steps_per_epoch: int, extra_groups: list[dict] | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam + OneCycle over ``schedule_epochs`` (or ``epochs``) x ``steps_per_epoch`` steps.

    ``extra_groups`` are parameter groups outside the model (ROLE's label estimates), each with
    its own ``lr`` as its OneCycle maximum.
    """
    groups = param_groups(model, config) + list(extra_groups or [])
    # One fused kernel for the whole update on a GPU instead of a few per parameter tensor.
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    optimizer = torch.optim.Adam(groups, lr=config.lr, fused=True if on_cuda else None)
    total = max((config.schedule_epochs or config.epochs) * steps_per_epoch, 1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=total,
        pct_start=warmup_fraction(config.pct_start, total),
    )
    return optimizer, scheduler


def warmup_fraction(pct_start: float, total_steps: int) -> float:
    """OneCycle's warm-up fraction, nudged where torch's schedule would divide by zero.

    torch ends the warm-up at step ``pct_start * total - 1``; when that is exactly step 0 (e.g. 5
    steps at 0.2: one short epoch of a small split) the warm-up phase has zero length and
    OneCycleLR raises ZeroDivisionError. The warm-up then ends half-way to step 1 instead.
    """
    if total_steps >= 2 and abs(pct_start * total_steps - 1.0) < 1e-9:
        return 1.5 / total_steps
    return pct_start


class EMA:
    """Exponential moving average of a model's trainable state (parameters and buffers).

    ``update`` runs every step, so it is kept cheap for the GPU: the model's tensors are found by
    name once (no ``state_dict`` walk per step; looked up again each step, so a module moved or
    converted since, e.g. to channels-last, is still followed) and averaged with one fused
    ``_foreach_lerp_`` (integer buffers, BatchNorm's step counters, with one ``_foreach_copy_``)
    instead of two kernels per tensor.
    """

    def __init__(self, model: HSPNet, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        self._where: list[tuple[nn.Module, str]] = []
        self._where_for: tuple[int, int] = (0, 0)
        self._floats: list[int] = []
        self._others: list[int] = []

    @staticmethod
    def default_decay(steps_per_epoch: int) -> float:
        """0.82 per epoch, spread over its iterations (COCO: 0.99969)."""
        return math.exp(math.log(0.82) / max(steps_per_epoch, 1))

    def _live(self, model: HSPNet) -> list[torch.Tensor]:
        """The model's current tensors in ``self.state``'s key order."""
        if self._where_for != (id(model), id(self.state)):
            self._where = [
                ((model.get_submodule(prefix) if prefix else model), name)
                for prefix, _, name in (key.rpartition(".") for key in self.state)
            ]
            self._where_for = (id(model), id(self.state))
            kinds = [t.is_floating_point() for t in self.state.values()]
            self._floats = [i for i, f in enumerate(kinds) if f]
            self._others = [i for i, f in enumerate(kinds) if not f]
        return [getattr(module, name).detach() for module, name in self._where]

    @torch.no_grad()
    def update(self, model: HSPNet) -> None:
        live = self._live(model)
        mine = list(self.state.values())
        floats, others = self._floats, self._others
        if floats:
            # mine + (1 - decay) * (live - mine) = decay * mine + (1 - decay) * live
            torch._foreach_lerp_(
                [mine[i] for i in floats], [live[i].to(mine[i].dtype) for i in floats], 1.0 - self.decay
            )
        if others:
            torch._foreach_copy_([mine[i] for i in others], [live[i] for i in others])

    def swap_into(self, model: HSPNet) -> dict[str, torch.Tensor]:
        """Load the EMA weights into ``model``; return its own weights to restore later."""
        backup = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        model.load_state_dict(self.state, strict=False)
        return backup
