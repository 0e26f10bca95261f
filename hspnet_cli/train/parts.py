"""The first steps of a training run: what it trains on (:class:`RunInputs`: config, taxonomy,
split, images, a resumed run's state) and what it trains with (:class:`RunParts`: model, data
sources, loss, optimiser, schedule, EMA, grad scaler), built once, and restored for a resume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hspnet_cli.config import RunConfig
from hspnet_cli.data.keyset import training_record
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.data.split_io import read_split_csv, read_split_yaml
from hspnet_cli.losses import build_loss, loss_param_groups
from hspnet_cli.model import checkpoint as ckpt
from hspnet_cli.model.hspnet import HSPNet, build_model
from hspnet_cli.model.image_size import fit_image_size
from hspnet_cli.taxonomy import Taxonomy
from hspnet_cli.train.batches import BatchSource, image_source
from hspnet_cli.train.optim import EMA, build_optimizer
from hspnet_cli.train.results import Best
from hspnet_cli.train.run_folder import (
    resolve_taxonomy,
)
from hspnet_cli.train.runtime import Runtime


@dataclass
class RunInputs:
    """What a run trains on: config, taxonomy, split and images, and a resumed run's state."""

    config: RunConfig
    tax: Taxonomy
    split_dir: Path
    images: Path
    train_set: LabelSet
    val_set: LabelSet | None
    state: dict[str, Any] | None
    taxonomy_source: str | None
    train_keys: dict[str, Any]  # which images trained the model, hashed (data/keyset.py)


@dataclass
class RunParts:
    """What a run trains with, built once: ``net`` is ``model``, or its DDP wrapper."""

    model: HSPNet
    net: torch.nn.Module
    train_src: BatchSource
    val_src: BatchSource | None
    loss_fn: Any
    loss_groups: list[dict]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: EMA | None
    scaler: torch.amp.GradScaler


def read_inputs(
    split_dir: str | Path,
    images: str | Path,
    out_dir: Path,
    config: RunConfig,
    taxonomy: str | Path | None,
    resume: bool,
) -> RunInputs:
    """Step 1: what the run trains on; a resumed run takes everything from its ``last.ckpt``."""
    state: dict[str, Any] | None = None
    taxonomy_source: str | None = None  # a resumed run keeps the config.yaml it started with
    if resume:
        state = ckpt.load_checkpoint(out_dir / "last.ckpt")
        config = ckpt.checkpoint_config(state)
        tax = ckpt.checkpoint_taxonomy(state)
        split_dir, images = Path(state["data"]["split"]), Path(state["data"]["images"])
    else:
        split_dir, images = Path(split_dir), Path(images)
        tax = resolve_taxonomy(split_dir, taxonomy)
        # What config.yaml records as the taxonomy's source: as given, else as the split names it.
        taxonomy_source = (
            str(taxonomy) if taxonomy is not None else (read_split_yaml(split_dir).get("taxonomy") or {}).get("source")
        )
    train_set = read_split_csv(split_dir / "train.csv", tax)
    val_set = read_split_csv(split_dir / "val.csv", tax) if (split_dir / "val.csv").exists() else None
    # Which images train this model (hashed): hspnet audit refuses to judge them with it.
    return RunInputs(
        config,
        tax,
        split_dir,
        images,
        train_set,
        val_set,
        state,
        taxonomy_source,
        training_record(train_set.images, images),
    )


def build_parts(inputs: RunInputs, rt: Runtime) -> RunParts:
    """Step 2: model, data sources, loss, optimiser and schedule, EMA and grad scaler."""
    config, tc = inputs.config, inputs.config.train
    torch.manual_seed(tc.seed)
    state = inputs.state
    model = build_model(
        inputs.tax,
        config.model,
        device=str(rt.device),
        seed=tc.seed,
        quick_gelu=ckpt.built_quick_gelu(state) if state is not None else None,
    )
    if tc.image_size:
        fit_image_size(model.visual, int(tc.image_size), config.model.clip_model)
    train_src = image_source(model, inputs.train_set, inputs.images, config, rt, shuffle=True, what="training")
    val_src = (
        image_source(model, inputs.val_set, inputs.images, config, rt, shuffle=False, what="validation")
        if inputs.val_set
        else None
    )
    steps = len(train_src)
    loss_fn = build_loss(
        tc.loss,
        num_samples=inputs.train_set.n_images,
        num_classes=inputs.tax.num_labels,
        observed=torch.as_tensor(inputs.train_set.matrix),
        **tc.loss_options,
    ).to(rt.device)
    loss_groups = loss_param_groups(loss_fn, tc.lr)  # ROLE's label estimates train too
    optimizer, scheduler = build_optimizer(model, tc, steps, loss_groups)
    ema = EMA(model, tc.ema_decay or EMA.default_decay(steps)) if tc.ema else None
    scaler = torch.amp.GradScaler(enabled=rt.amp_dtype == torch.float16)
    return RunParts(model, model, train_src, val_src, loss_fn, loss_groups, optimizer, scheduler, ema, scaler)


def restore(parts: RunParts, state: dict[str, Any], rt: Runtime) -> tuple[int, int, Best]:
    """Step 3 of a resumed run: weights, optimiser, schedule, scaler, loss and EMA state.

    Returns:
        (epochs done, optimiser steps done, best epoch so far).
    """
    ckpt.restore_text_tower(parts.model, state)
    parts.model.load_state_dict(state["model"], strict=False)
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    parts.loss_fn.load_state_dict(state["loss"])
    if parts.ema is not None and state.get("ema") is not None:
        parts.ema.state = {k: v.to(rt.device) for k, v in state["ema"].items()}
    return ckpt.epochs_done(state), int(state["step"]), Best.from_dict(ckpt.best_record(state))
