"""Optimiser parameter groups, OneCycle length and EMA, as published."""

from __future__ import annotations

import math

import pytest
import torch

from hspnet_cli.config import ModelConfig, TrainConfig
from hspnet_cli.model.hspnet import build_model
from hspnet_cli.taxonomy import load_taxonomy
from hspnet_cli.train.optim import EMA, build_optimizer, param_groups


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_taxonomy("voc"), ModelConfig(clip_model="hspnet-tiny", pretrained="none"))


def test_decay_only_on_matrices_and_gcn_has_its_own_lr(model) -> None:
    groups = {g["name"]: g for g in param_groups(model, TrainConfig(lr=1e-4, gcn_lr=5e-4, weight_decay=1e-4))}
    assert set(groups) == {"main-decay", "main-no_decay", "gcn-decay", "gcn-no_decay"}
    assert all(p.ndim >= 2 for p in groups["main-decay"]["params"] + groups["gcn-decay"]["params"])
    assert all(p.ndim < 2 for p in groups["main-no_decay"]["params"] + groups["gcn-no_decay"]["params"])
    assert groups["main-no_decay"]["weight_decay"] == 0.0 and groups["main-decay"]["weight_decay"] == 1e-4
    assert groups["gcn-decay"]["lr"] == 5e-4 and groups["main-decay"]["lr"] == 1e-4
    gcn = {id(p) for p in model.gcn_group.parameters()}
    assert {id(p) for p in groups["gcn-decay"]["params"] + groups["gcn-no_decay"]["params"]} == gcn
    assert any(p is model.gcn_group.gamma for p in groups["gcn-no_decay"]["params"])
    frozen = {id(p) for p in model.text.parameters()}
    assert not frozen & {id(p) for g in groups.values() for p in g["params"]}


def test_onecycle_spans_schedule_epochs_and_peaks_at_max_lr(model) -> None:
    optimizer, scheduler = build_optimizer(
        model, TrainConfig(epochs=2, schedule_epochs=4, lr=1e-3, gcn_lr=1e-2, pct_start=0.25), steps_per_epoch=10
    )
    assert scheduler.total_steps == 40
    lrs = []
    for _ in range(40):
        optimizer.step()
        scheduler.step()
        lrs.append([g["lr"] for g in optimizer.param_groups])
    peak = max(range(40), key=lambda i: lrs[i][0])
    assert peak in (8, 9, 10)  # 25% of 40 steps (lrs[i] is the rate after i + 1 steps)
    assert max(row[0] for row in lrs) == pytest.approx(
        max(g["max_lr"] for g in optimizer.param_groups if g["name"].startswith("main")), rel=1e-3
    )


def test_ema_default_decay_and_update(model) -> None:
    assert EMA.default_decay(641) == pytest.approx(0.99969, abs=1e-5)  # COCO: 82,081 / 128 steps
    assert EMA.default_decay(10) ** 10 == pytest.approx(0.82)
    ema = EMA(model, decay=0.9)
    key = "meta.0.weight"
    before = ema.state[key].clone()
    with torch.no_grad():
        model.meta[0].weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.state[key], 0.9 * before + 0.1 * model.meta[0].weight)
    backup = ema.swap_into(model)
    torch.testing.assert_close(model.meta[0].weight, ema.state[key])
    model.load_state_dict(backup, strict=False)
    torch.testing.assert_close(model.meta[0].weight, before + 1.0)
    assert not math.isnan(float(ema.state[key].sum()))


def test_ema_follows_every_tensor_after_a_memory_format_change_and_a_new_state() -> None:
    """EMA keeps no stale references: converting the image tower to channels-last (as GPU runs
    do after the EMA exists) or loading a resumed EMA state changes nothing it should see."""
    torch.manual_seed(0)
    model = build_model(load_taxonomy("voc"), ModelConfig(clip_model="hspnet-tiny-rn", pretrained="none"))
    ema = EMA(model, decay=0.5)
    ema.update(model)  # builds its name -> tensor lookup
    model.visual.to(memory_format=torch.channels_last)  # replaces the tensors behind the names
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0) if p.requires_grad else None
        for b in model.buffers():
            if b.dtype == torch.long:
                b.add_(7)  # BatchNorm step counters are copied, not averaged
    start = {k: v.clone() for k, v in ema.state.items()}
    ema.update(model)
    live = model.trainable_state_dict()
    for key, value in ema.state.items():
        want = live[key] if not value.is_floating_point() else 0.5 * start[key] + 0.5 * live[key]
        torch.testing.assert_close(value, want, msg=key)
    ema.state = {k: v * 0 if v.is_floating_point() else v for k, v in ema.state.items()}  # a resumed state
    ema.update(model)
    key = "meta.0.weight"
    torch.testing.assert_close(ema.state[key], 0.5 * model.meta[0].weight)
