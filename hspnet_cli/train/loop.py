"""``hspnet train``: the epoch loop, validation, model selection, checkpoints, resume.

Each epoch: train on the split's ``train.csv``; score ``val.csv`` with the raw model and its
EMA; keep the better of the two as ``best.ckpt`` when it beats every earlier epoch (selection
is on validation, never on test); write ``last.ckpt`` for resuming and one line per epoch to
``metrics.jsonl``. Epochs are numbered from 1 everywhere a person or a script reads them (the
console, ``metrics.jsonl``, the summary and the checkpoints' ``epoch``: the epochs completed);
only the seeding uses the 0-based index. ``--resume RUN_DIR`` continues from ``last.ckpt``
exactly: the data order, augmentation and every other draw of an epoch are seeded by (seed,
epoch) (so no RNG state needs saving), and optimiser, schedule, EMA, grad scaler and loss state
are restored.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from hspnet_cli.config import RunConfig
from hspnet_cli.core.device import intra_op_threads_set
from hspnet_cli.core.io_utils import OutputError, write_text_atomic
from hspnet_cli.core.progress import NoBar
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.evaluation.metrics import mean_average_precision
from hspnet_cli.model import checkpoint as ckpt
from hspnet_cli.model.hspnet import HSPNet
from hspnet_cli.train.batches import BatchSource
from hspnet_cli.train.parts import RunInputs, RunParts, build_parts, read_inputs, restore
from hspnet_cli.train.record import run_config_yaml
from hspnet_cli.train.results import Best, EpochRecord, TrainResult
from hspnet_cli.train.run_folder import (
    append_metrics,
    check_run_dir,
    how_to_continue,
    prepare_run_dir,
)
from hspnet_cli.train.runtime import Runtime, all_reduce_mean, average_gradients, gather_rows, runtime_for, say_threads
from hspnet_cli.train.thresholds import fit_kept_thresholds


def label_frequency_baseline(train: LabelSet, val: LabelSet) -> float:
    """mAP of scoring every validation image with the labels' training frequencies."""
    freq = (train.matrix == 1).mean(axis=0).astype(np.float32)
    return mean_average_precision(np.tile(freq, (val.n_images, 1)), val.matrix).map


def _evaluate(model: HSPNet, source: BatchSource, labels: LabelSet, rt: Runtime) -> tuple[float, np.ndarray | None]:
    """Validation mAP of ``model`` on ``source`` and the (n, C) logits (gathered over processes;
    NaN and None elsewhere)."""
    model.eval()
    idx_parts, score_parts = [], []
    with torch.no_grad(), rt.autocast():
        label_feats = model.label_features()
        for inputs, _, index in source.batches(epoch=0):
            feats = inputs if source.is_features else model.encode_image(inputs)
            score_parts.append(model.scores_from_features(feats, label_feats).float().cpu())
            idx_parts.append(index)
    scores = torch.cat(score_parts) if score_parts else torch.zeros(0, labels.n_labels)
    index = torch.cat(idx_parts) if idx_parts else torch.zeros(0, dtype=torch.long)
    full = gather_rows(index, scores, rt, labels.n_images)
    if full is None:
        return float("nan"), None
    return mean_average_precision(full.numpy(), labels.matrix).map, full.numpy()


def train(
    split_dir: str | Path | None,
    images: str | Path | None,
    out_dir: str | Path,
    config: RunConfig | None,
    *,
    taxonomy: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    stop_after_epochs: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: Callable[[str, int], Any] | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train a model on a split, writing a run folder, while holding the folder's output lock
    (rank 0 of a torchrun launch holds it for all ranks; :mod:`hspnet_cli.core.locks`).

    Args:
        split_dir: Folder made by ``hspnet split`` (``train.csv``, optional ``val.csv``); ignored
            with ``resume``.
        images: Folder the split's image paths are relative to; ignored with ``resume``.
        out_dir: Run folder (``config.yaml``, ``metrics.jsonl``, ``last.ckpt``, ``best.ckpt``).
        config: Resolved run configuration (ignored with ``resume``: the run's own is used).
        taxonomy: Taxonomy name or file (default: the split's, if it is a built-in).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        resume: Continue the run in ``out_dir`` from ``last.ckpt``.
        overwrite: Replace an earlier run in ``out_dir``.
        stop_after_epochs: Stop after this many epochs of this invocation (as an interruption
            would); the run stays resumable.
        on_epoch: Called with each epoch's record on the main process.
        progress: Factory ``(description, images) -> context manager with .advance(n)`` for
            the per-epoch progress bar (main process only); None for no bar.
        threads: Intra-op CPU threads (None: :func:`~hspnet_cli.core.device.intra_op_threads`'s
            rule, which leaves a core to each DataLoader worker).

    Returns:
        The result (meaningful on the main process).

    Raises:
        UserError: Bad split, config or run folder; another process writing ``out_dir``.
        OutputError: A write failed (full disk, quota, permissions); the message says how to go on.
    """
    from hspnet_cli.core.locks import is_rank_zero, output_lock

    with output_lock(out_dir, "run folder") if is_rank_zero() else contextlib.nullcontext():
        try:
            return _train(
                split_dir,
                images,
                out_dir,
                config,
                taxonomy,
                device,
                resume,
                overwrite,
                stop_after_epochs,
                on_epoch,
                progress,
                threads,
            )
        except OutputError as exc:  # full disk, quota, permissions: say how this run goes on
            raise OutputError(f"{exc}; {how_to_continue(Path(out_dir), resume)}", exc.path, exc.errno) from None


def _train(
    split_dir: str | Path | None,
    images: str | Path | None,
    out_dir: str | Path,
    config: RunConfig | None,
    taxonomy: str | Path | None,
    device: str,
    resume: bool,
    overwrite: bool,
    stop_after_epochs: int | None,
    on_epoch: Callable[[EpochRecord], None] | None,
    progress: Callable[[str, int], Any] | None,
    threads: int | None,
) -> TrainResult:
    """The run itself, without the lock, as its named steps in order; arguments: see :func:`train`."""
    out_dir = Path(out_dir)
    inputs = read_inputs(split_dir, images, out_dir, config, taxonomy, resume)
    tc = inputs.config.train
    with runtime_for(device, tc.amp) as rt, intra_op_threads_set(tc.num_workers, threads) as used_threads:
        if rt.is_main and not resume:
            check_run_dir(out_dir, overwrite)
        parts = build_parts(inputs, rt)
        if rt.is_main and not resume:
            prepare_run_dir(out_dir, overwrite)
        rt.barrier()
        start_epoch, step, best = restore(parts, inputs.state, rt) if inputs.state is not None else (0, 0, Best())
        # DDP broadcasts rank 0's weights when it wraps the model: only after they are restored.
        parts.net = DistributedDataParallel(parts.model) if rt.distributed else parts.model
        if rt.is_main:
            if not resume:
                write_text_atomic(
                    out_dir / "config.yaml", run_config_yaml(inputs.config, inputs.tax, inputs.taxonomy_source)
                )
            say_threads(rt, used_threads, tc.num_workers)
        baseline = label_frequency_baseline(inputs.train_set, inputs.val_set) if inputs.val_set else float("nan")
        result = TrainResult(out_dir, float("nan"), 0, "raw", baseline, is_main=rt.is_main, threads=used_threads)
        end_epoch = tc.epochs if stop_after_epochs is None else min(tc.epochs, start_epoch + stop_after_epochs)
        for epoch in range(start_epoch, end_epoch):
            if _patience_spent(tc.patience, epoch, best, parts.val_src is not None, rt):
                result.stopped_early = True
                break
            start = time.perf_counter()
            losses, step = _train_epoch(parts, inputs, epoch, step, rt, progress)
            seconds = time.perf_counter() - start
            train_loss = all_reduce_mean(float(np.mean(losses)) if losses else float("nan"), rt)
            raw_map, ema_map, logits = _validate(parts, inputs, rt)
            record = EpochRecord(
                epoch + 1,
                train_loss,
                raw_map,
                ema_map,
                parts.scheduler.get_last_lr()[0],
                seconds,
                inputs.train_set.n_images / max(seconds, 1e-9),
            )
            result.step_losses.extend(losses)
            if rt.is_main:
                best, fitted = _keep_epoch(parts, inputs, out_dir, record, best, step, logits)
                result.thresholds = fitted if record.best else result.thresholds
                result.history.append(record)
                if on_epoch is not None:
                    on_epoch(record)
            rt.barrier()
        result.best_map, result.best_epoch, result.best_source = best.map, best.epoch, best.source
        return result


def _train_epoch(
    parts: RunParts, inputs: RunInputs, epoch: int, step: int, rt: Runtime, progress: Callable[[str, int], Any] | None
) -> tuple[list[float], int]:
    """Step 4, once an epoch: one pass over the training batches.

    Returns:
        (the loss of every step, optimiser steps done after the epoch).
    """
    config, tc, model = inputs.config, inputs.config.train, parts.model
    model.train()
    if config.model.freeze_image_encoder:
        model.visual.eval()  # frozen tower: fixed BatchNorm statistics, so features never change
    elif epoch == 0 and tc.bn_frozen_first_epoch:
        freeze_batchnorm(model.visual)
    # Kept on the device and read once an epoch: a float() per step would make the host wait for
    # the GPU every step instead of queueing the next one.
    step_losses: list[torch.Tensor] = []
    bar = (
        progress(f"epoch {epoch + 1}/{tc.epochs}", len(parts.train_src.loader.sampler))
        if (progress and rt.is_main)
        else None
    )
    with bar if bar is not None else NoBar():
        for inputs_, targets, index in parts.train_src.batches(epoch):
            with rt.autocast():
                logits = model.scores_from_features(inputs_) if parts.train_src.is_features else parts.net(inputs_)
            loss = parts.loss_fn(logits.float(), targets, epoch=epoch, index=index.to(rt.device))
            parts.optimizer.zero_grad(set_to_none=True)
            parts.scaler.scale(loss).backward()
            if parts.loss_groups and rt.distributed:
                average_gradients([p for g in parts.loss_groups for p in g["params"]], rt)
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
            parts.scheduler.step()
            if parts.ema is not None:
                parts.ema.update(model)
            step_losses.append(loss.detach())
            step += 1
            if bar is not None:
                bar.advance(len(index))
    return (torch.stack(step_losses).float().cpu().tolist() if step_losses else []), step


def _validate(
    parts: RunParts, inputs: RunInputs, rt: Runtime
) -> tuple[float, float | None, dict[str, np.ndarray | None]]:
    """Step 5, once an epoch: validation mAP of the raw weights and of their EMA (NaN / None
    without a validation split or an EMA), and the validation logits of each (for thresholds)."""
    if parts.val_src is None or inputs.val_set is None:
        return float("nan"), None, {}
    raw_map, raw_logits = _evaluate(parts.model, parts.val_src, inputs.val_set, rt)
    if parts.ema is None:
        return raw_map, None, {"raw": raw_logits}
    backup = parts.ema.swap_into(parts.model)
    ema_map, ema_logits = _evaluate(parts.model, parts.val_src, inputs.val_set, rt)
    parts.model.load_state_dict(backup, strict=False)
    return raw_map, ema_map, {"raw": raw_logits, "ema": ema_logits}


def _keep_epoch(
    parts: RunParts,
    inputs: RunInputs,
    out_dir: Path,
    record: EpochRecord,
    best: Best,
    step: int,
    logits: dict[str, np.ndarray | None],
) -> tuple[Best, dict[str, Any] | None]:
    """Step 6, once an epoch on the main process: ``best.ckpt`` when validation improved (raw or
    EMA weights, whichever scored higher), with per-label thresholds fitted on the kept weights'
    validation logits when the validation split is fully labelled; always ``last.ckpt`` and a
    ``metrics.jsonl`` line.

    Returns:
        The best epoch so far, this one included; the thresholds fitted now (None otherwise).
    """
    has_val = parts.val_src is not None
    raw_map, ema_map = record.val_map_raw, record.val_map_ema
    source, value = ("ema", ema_map) if (ema_map is not None and ema_map > raw_map) else ("raw", raw_map)
    if not has_val or (not math.isnan(value) and value > best.map):
        best = Best(value if has_val else float("nan"), record.epoch, source)
        record.best, record.best_weights = True, source
        fitted = fit_kept_thresholds(
            logits.get(source), inputs.val_set, inputs.tax, inputs.split_dir, out_dir, record.epoch, source
        )
        _save(
            out_dir / "best.ckpt",
            parts,
            inputs,
            record.epoch,
            step,
            best,
            ema_weights=source == "ema",
            full=False,
            thresholds=fitted,
        )
    else:
        fitted = None
    _save(out_dir / "last.ckpt", parts, inputs, record.epoch, step, best, ema_weights=False, full=True)
    append_metrics(out_dir / "metrics.jsonl", record)
    return best, fitted


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: normalise with the pretrained running
    statistics and leave them unchanged (the published first epoch; its weights still train)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _patience_spent(patience: int | None, epoch: int, best: Best, has_val: bool, rt: Runtime) -> bool:
    """True when ``patience`` epochs have passed since the best validation mAP (early stopping).

    Decided from the best epoch alone, so a resumed run stops exactly where it would have; rank
    0 keeps ``best``, so its answer is shared with every process (they must stop together).
    """
    if not patience or not has_val:
        return False
    # ``epoch`` (0-based) epochs are done; ``best.epoch`` counts from 1, 0 when none was saved.
    spent = rt.is_main and best.epoch >= 1 and epoch - best.epoch >= patience
    return all_reduce_mean(1.0 if spent else 0.0, rt) > 0


def _save(
    path: Path,
    parts: RunParts,
    inputs: RunInputs,
    epoch: int,
    step: int,
    best: Best,
    *,
    ema_weights: bool,
    full: bool,
    thresholds: dict[str, Any] | None = None,
) -> None:
    """best.ckpt: the chosen weights (EMA or raw) for use; last.ckpt: everything to resume.

    ``epoch`` is the number (from 1) of the epoch just finished, i.e. the epochs completed.
    """
    model, ema = parts.model, parts.ema
    backup = ema.swap_into(model) if (ema is not None and ema_weights) else None
    # The payload copies the weights, so restoring the raw ones below cannot change it.
    payload = ckpt.checkpoint_payload(
        model,
        inputs.config,
        inputs.tax,
        epoch=epoch,
        step=step,
        best=best.to_dict(),
        data={"split": str(inputs.split_dir), "images": str(inputs.images)},
        thresholds=thresholds,
    )
    if backup is not None:
        model.load_state_dict(backup, strict=False)
    keys = inputs.train_keys
    payload["data"]["train_keys"] = {**keys, "hashes": torch.from_numpy(keys["hashes"])}
    if full:
        payload.update(
            {
                "ema": {k: v.detach().cpu() for k, v in ema.state.items()} if ema is not None else None,
                "optimizer": parts.optimizer.state_dict(),
                "scheduler": parts.scheduler.state_dict(),
                "scaler": parts.scaler.state_dict(),
                "loss": parts.loss_fn.state_dict(),
            }
        )
    ckpt.save_checkpoint(path, payload)
