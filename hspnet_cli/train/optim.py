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
        out.append({"params": params, "lr": config.gcn_lr if is_gcn else config.lr,
                    "weight_decay": config.weight_decay if decay else 0.0,
                    "name": f"{'gcn' if is_gcn else 'main'}-{'decay' if decay else 'no_decay'}"})
    return out


def build_optimizer(model: HSPNet, config: TrainConfig, steps_per_epoch: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam + OneCycle over ``schedule_epochs`` (or ``epochs``) x ``steps_per_epoch`` steps."""
    groups = param_groups(model, config)
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    total = (config.schedule_epochs or config.epochs) * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(total, 1), pct_start=config.pct_start)
    return optimizer, scheduler


class EMA:
    """Exponential moving average of a model's trainable state (parameters and buffers)."""

    def __init__(self, model: HSPNet, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}

    @staticmethod
    def default_decay(steps_per_epoch: int) -> float:
        """0.82 per epoch, spread over its iterations (COCO: 0.99969)."""
        return math.exp(math.log(0.82) / max(steps_per_epoch, 1))

    @torch.no_grad()
    def update(self, model: HSPNet) -> None:
        for key, value in model.trainable_state_dict().items():
            mine = self.state[key]
            if mine.is_floating_point():
                mine.mul_(self.decay).add_(value.detach().to(mine.dtype), alpha=1.0 - self.decay)
            else:
                mine.copy_(value)

    def swap_into(self, model: HSPNet) -> dict[str, torch.Tensor]:
        """Load the EMA weights into ``model``; return its own weights to restore later."""
        backup = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        model.load_state_dict(self.state, strict=False)
        return backup
