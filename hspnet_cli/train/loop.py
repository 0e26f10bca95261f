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
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from hspnet_cli.config import RunConfig
from hspnet_cli.data.keyset import training_record
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.data.split_io import read_split_csv, read_split_yaml
from hspnet_cli.errors import UserError
from hspnet_cli.io_utils import OutputError, write_text_atomic
from hspnet_cli.losses import build_loss, loss_param_groups
from hspnet_cli.metrics import mean_average_precision
from hspnet_cli.model.hspnet import HSPNet, build_model
from hspnet_cli.model.image_size import fit_image_size
from hspnet_cli.taxonomy import Taxonomy, load_taxonomy
from hspnet_cli.train import checkpoint as ckpt
from hspnet_cli.train.batches import BatchSource, image_source
from hspnet_cli.train.optim import EMA, build_optimizer
from hspnet_cli.train.progress import NoBar
from hspnet_cli.train.record import run_config_yaml
from hspnet_cli.train.runtime import (Runtime, all_reduce_mean, average_gradients, gather_rows, intra_op_threads_set,
                                      runtime_for, say_threads)


@dataclass
class EpochRecord:
    """One line of ``metrics.jsonl``.

    Attributes:
        epoch: Epoch number, from 1.
        best_weights: ``raw`` or ``ema`` when this epoch's weights of that kind were saved as
            ``best.ckpt``; None otherwise.
    """

    epoch: int
    train_loss: float
    val_map_raw: float
    val_map_ema: float | None
    lr: float
    seconds: float
    images_per_second: float
    best: bool = False
    best_weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    """What a run achieved.

    Attributes:
        out_dir: The run folder.
        best_map: Best validation mAP (raw or EMA), NaN without a validation split.
        best_epoch: Epoch (from 1) of the best checkpoint; 0 when none was saved.
        best_source: ``raw`` or ``ema``.
        baseline_map: Validation mAP of the label-frequency baseline (every image scored by the
            training frequency of each label).
        history: Epoch records of this invocation (resumed runs: only the new epochs).
        step_losses: Loss of every optimisation step of this invocation, in order.
        is_main: False on the non-zero ranks of a torchrun job (whose figures are partial).
        threads: Intra-op CPU threads the run used.
        stopped_early: True when ``train.patience`` epochs passed without a better validation mAP.
    """

    out_dir: Path
    best_map: float
    best_epoch: int
    best_source: str
    baseline_map: float
    history: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    is_main: bool = True
    threads: int = 0
    stopped_early: bool = False

    def summary(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "best_val_map": self.best_map, "best_epoch": self.best_epoch,
                "best_source": self.best_source, "label_frequency_baseline_map": self.baseline_map,
                "threads": self.threads, "stopped_early": self.stopped_early,
                "epochs": [r.to_dict() for r in self.history]}


def label_frequency_baseline(train: LabelSet, val: LabelSet) -> float:
    """mAP of scoring every validation image with the labels' training frequencies."""
    freq = (train.matrix == 1).mean(axis=0).astype(np.float32)
    return mean_average_precision(np.tile(freq, (val.n_images, 1)), val.matrix).map


def _resolve_taxonomy(split_dir: Path, taxonomy: str | Path | None) -> Taxonomy:
    """The given taxonomy, else the one the split records (built-in name or file), checked
    against the split's digest of the label order."""
    from hspnet_cli.data.split_io import labels_sha256

    if taxonomy is not None:
        return load_taxonomy(taxonomy)
    recorded = read_split_yaml(split_dir).get("taxonomy") or {}
    source = recorded.get("source") or recorded.get("name")
    try:
        tax = load_taxonomy(source)
    except UserError:
        raise UserError(f"{split_dir}: pass --taxonomy (the split was made with '{source}', which is not found)") from None
    if recorded.get("labels_sha256") and labels_sha256(tax.label_names) != recorded["labels_sha256"]:
        raise UserError(f"{split_dir}: taxonomy '{source}' changed since the split was made (label order "
                        "differs); pass --taxonomy with the one it was made with, or remake the split")
    return tax


def _check_run_dir(out_dir: Path, overwrite: bool) -> None:
    if (out_dir / "last.ckpt").exists() and not overwrite:
        raise UserError(f"{out_dir}: holds a run already; continue it with --resume {out_dir} or pass --overwrite")


def _prepare_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Create (or clear) the run folder; called only once the model, data and schedule are built,
    so a run refused or failing on the way leaves no folder behind."""
    _check_run_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("last.ckpt", "best.ckpt", "metrics.jsonl"):
        (out_dir / name).unlink(missing_ok=True)


def _evaluate(model: HSPNet, source: BatchSource, labels: LabelSet, rt: Runtime) -> float:
    """Validation mAP of ``model`` on ``source`` (gathered over processes; NaN elsewhere)."""
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
    return mean_average_precision(full.numpy(), labels.matrix).map if full is not None else float("nan")


def train(split_dir: str | Path, images: str | Path, out_dir: str | Path, config: RunConfig,
          **options: Any) -> TrainResult:
    """Train into ``out_dir`` holding its output lock (rank 0 of a torchrun launch holds it for all
    ranks; :mod:`hspnet_cli.locks`). Arguments: see :func:`_train`."""
    from hspnet_cli.locks import is_rank_zero, output_lock

    with output_lock(out_dir, "run folder") if is_rank_zero() else contextlib.nullcontext():
        try:
            return _train(split_dir, images, out_dir, config, **options)
        except OutputError as exc:  # full disk, quota, permissions: say how this run goes on
            raise OutputError(f"{exc}; {_how_to_continue(Path(out_dir), bool(options.get('resume')))}", exc.path,
                              exc.errno) from None


def _how_to_continue(out_dir: Path, resumed: bool) -> str:
    """What to run once the cause of a failed write is fixed."""
    if (out_dir / "last.ckpt").is_file():
        return f"continue from the last saved epoch with: hspnet train --resume {out_dir}"
    if resumed:
        return f"{out_dir}/last.ckpt is gone; start the run again with --overwrite"
    return "no checkpoint was written yet, so there is nothing to resume: rerun the same hspnet train command"


def _train(split_dir: str | Path, images: str | Path, out_dir: str | Path, config: RunConfig,
           taxonomy: str | Path | None = None, device: str = "auto", resume: bool = False,
           overwrite: bool = False, stop_after_epochs: int | None = None,
           on_epoch: Callable[[EpochRecord], None] | None = None,
           progress: Callable[[str, int], Any] | None = None, threads: int | None = None) -> TrainResult:
    """Train a model on a split, writing a run folder.

    Args:
        split_dir: Folder made by ``hspnet split`` (``train.csv``, optional ``val.csv``).
        images: Folder the split's image paths are relative to.
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
        threads: Intra-op CPU threads (None: :func:`~hspnet_cli.train.runtime.intra_op_threads`'s
            rule, which leaves a core to each DataLoader worker).

    Returns:
        The result (meaningful on the main process).
    """
    out_dir = Path(out_dir)
    state: dict[str, Any] | None = None
    taxonomy_source: str | None = None  # a resumed run keeps the config.yaml it started with
    if resume:
        state = ckpt.load_checkpoint(out_dir / "last.ckpt")
        config = ckpt.checkpoint_config(state)
        tax = ckpt.checkpoint_taxonomy(state)
        split_dir, images = Path(state["data"]["split"]), Path(state["data"]["images"])
    else:
        split_dir, images = Path(split_dir), Path(images)
        tax = _resolve_taxonomy(split_dir, taxonomy)
        # What config.yaml records as the taxonomy's source: as given, else as the split names it.
        taxonomy_source = (str(taxonomy) if taxonomy is not None
                           else (read_split_yaml(split_dir).get("taxonomy") or {}).get("source"))
    train_set = read_split_csv(split_dir / "train.csv", tax)
    # Which images trained this model (hashed, see data/keyset.py): hspnet audit refuses them.
    train_keys = training_record(train_set.images, images)
    val_set = read_split_csv(split_dir / "val.csv", tax) if (split_dir / "val.csv").exists() else None
    tc = config.train

    with runtime_for(device, tc.amp) as rt, intra_op_threads_set(tc.num_workers, threads) as used_threads:
        if rt.is_main and not resume:
            _check_run_dir(out_dir, overwrite)
        torch.manual_seed(tc.seed)
        model = build_model(tax, config.model, device=str(rt.device), seed=tc.seed,
                            quick_gelu=ckpt.built_quick_gelu(state) if state is not None else None)
        if tc.image_size:
            fit_image_size(model.visual, int(tc.image_size), config.model.clip_model)
        train_src = image_source(model, train_set, images, config, rt, shuffle=True, what="training")
        val_src = image_source(model, val_set, images, config, rt, shuffle=False, what="validation") if val_set else None
        steps = len(train_src)
        loss_fn = build_loss(tc.loss, num_samples=train_set.n_images, num_classes=tax.num_labels,
                             observed=torch.as_tensor(train_set.matrix), **tc.loss_options).to(rt.device)
        loss_groups = loss_param_groups(loss_fn, tc.lr)   # ROLE's label estimates train too
        optimizer, scheduler = build_optimizer(model, tc, steps, loss_groups)
        ema = EMA(model, tc.ema_decay or EMA.default_decay(steps)) if tc.ema else None
        scaler = torch.amp.GradScaler(enabled=rt.amp_dtype == torch.float16)
        if rt.is_main and not resume:
            _prepare_run_dir(out_dir, overwrite)
        rt.barrier()
        start_epoch, step = 0, 0
        best = {"map": -1.0, "epoch": 0, "source": "raw"}
        if state is not None:
            ckpt.restore_text_tower(model, state)
            model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            loss_fn.load_state_dict(state["loss"])
            if ema is not None and state.get("ema") is not None:
                ema.state = {k: v.to(rt.device) for k, v in state["ema"].items()}
            start_epoch, step, best = ckpt.epochs_done(state), state["step"], ckpt.best_record(state)
        net = DistributedDataParallel(model) if rt.distributed else model
        if rt.is_main:
            if not resume:
                write_text_atomic(out_dir / "config.yaml", run_config_yaml(config, tax, taxonomy_source))
            say_threads(rt, used_threads, tc.num_workers)
        baseline = label_frequency_baseline(train_set, val_set) if val_set else float("nan")
        result = TrainResult(out_dir, float("nan"), 0, "raw", baseline, is_main=rt.is_main, threads=used_threads)
        end_epoch = tc.epochs if stop_after_epochs is None else min(tc.epochs, start_epoch + stop_after_epochs)

        for epoch in range(start_epoch, end_epoch):
            if _patience_spent(tc.patience, epoch, best, val_src is not None, rt):
                result.stopped_early = True
                break
            start = time.perf_counter()
            model.train()
            if config.model.freeze_image_encoder:
                model.visual.eval()  # frozen tower: fixed BatchNorm statistics, so features never change
            elif epoch == 0 and tc.bn_frozen_first_epoch:
                freeze_batchnorm(model.visual)
            # Kept on the device and read once an epoch: a float() per step would make the host
            # wait for the GPU every step instead of queueing the next one.
            step_losses: list[torch.Tensor] = []
            bar = (progress(f"epoch {epoch + 1}/{tc.epochs}", len(train_src.loader.sampler))
                   if (progress and rt.is_main) else None)
            with bar if bar is not None else NoBar():
                for inputs, targets, index in train_src.batches(epoch):
                    with rt.autocast():
                        logits = (model.scores_from_features(inputs) if train_src.is_features
                                  else net(inputs))
                    loss = loss_fn(logits.float(), targets, epoch=epoch, index=index.to(rt.device))
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if loss_groups and rt.distributed:
                        average_gradients([p for g in loss_groups for p in g["params"]], rt)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None:
                        ema.update(model)
                    step_losses.append(loss.detach())
                    step += 1
                    if bar is not None:
                        bar.advance(len(index))
            seconds = time.perf_counter() - start
            losses = torch.stack(step_losses).float().cpu().tolist() if step_losses else []
            train_loss = all_reduce_mean(float(np.mean(losses)) if losses else float("nan"), rt)
            raw_map = _evaluate(model, val_src, val_set, rt) if val_src else float("nan")
            ema_map = None
            if ema is not None and val_src:
                backup = ema.swap_into(model)
                ema_map = _evaluate(model, val_src, val_set, rt)
                model.load_state_dict(backup, strict=False)
            record = EpochRecord(epoch + 1, train_loss, raw_map, ema_map, scheduler.get_last_lr()[0], seconds,
                                 train_set.n_images / max(seconds, 1e-9))
            result.step_losses.extend(losses)
            if rt.is_main:
                source, value = ("ema", ema_map) if (ema_map is not None and ema_map > raw_map) else ("raw", raw_map)
                improved = val_src is None or (not math.isnan(value) and value > best["map"])
                if improved:
                    best = {"map": value if val_src else float("nan"), "epoch": epoch + 1, "source": source}
                    record.best, record.best_weights = True, source
                    _save(out_dir / "best.ckpt", model, ema if source == "ema" else None, config, tax,
                          split_dir, images, epoch + 1, step, best, full=False, train_keys=train_keys)
                _save(out_dir / "last.ckpt", model, ema, config, tax, split_dir, images, epoch + 1, step, best,
                      full=True, optimizer=optimizer, scheduler=scheduler, scaler=scaler, loss_fn=loss_fn,
                      train_keys=train_keys)
                _append_metrics(out_dir / "metrics.jsonl", record)
                result.history.append(record)
                if on_epoch is not None:
                    on_epoch(record)
            rt.barrier()
        result.best_map, result.best_epoch, result.best_source = best["map"], best["epoch"], best["source"]
        return result



def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: normalise with the pretrained running
    statistics and leave them unchanged (the published first epoch; its weights still train)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _patience_spent(patience: int | None, epoch: int, best: dict, has_val: bool, rt: Runtime) -> bool:
    """True when ``patience`` epochs have passed since the best validation mAP (early stopping).

    Decided from the best epoch alone, so a resumed run stops exactly where it would have; rank
    0 keeps ``best``, so its answer is shared with every process (they must stop together).
    """
    if not patience or not has_val:
        return False
    # ``epoch`` (0-based) epochs are done; ``best["epoch"]`` counts from 1, 0 when none was saved.
    spent = rt.is_main and best["epoch"] >= 1 and epoch - best["epoch"] >= patience
    return all_reduce_mean(1.0 if spent else 0.0, rt) > 0


def _append_metrics(path: Path, record: EpochRecord) -> None:
    """Rewrite metrics.jsonl atomically with one more line (a crash never leaves half a line)."""
    old = path.read_text() if path.exists() else ""
    write_text_atomic(path, old + json.dumps(record.to_dict()) + "\n")


def _save(path: Path, model: HSPNet, ema: EMA | None, config: RunConfig, tax: Taxonomy, split_dir: Path,
          images: Path, epoch: int, step: int, best: dict, *, full: bool, optimizer=None, scheduler=None,
          scaler=None, loss_fn=None, train_keys: dict | None = None) -> None:  # type: ignore[no-untyped-def]
    """best.ckpt: the chosen weights (EMA or raw) for use; last.ckpt: everything to resume.

    ``epoch`` is the number (from 1) of the epoch just finished, i.e. the epochs completed.
    """
    if ema is not None and not full:
        backup = ema.swap_into(model)
    # A copy: on the CPU .cpu() returns the model's own tensors, which restoring the raw weights
    # below would overwrite in place (best.ckpt would hold raw weights beside EMA label features).
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.trainable_state_dict().items()}
    model.eval()
    with torch.no_grad():
        label_feats = model.label_features().float().cpu()
    if ema is not None and not full:
        model.load_state_dict(backup, strict=False)
    payload: dict[str, Any] = {
        "config": config.to_dict(), "taxonomy": tax.to_dict(), "label_names": tax.label_names,
        "model": weights, "label_features": label_feats, "logit_scale": float(model.logit_scale.exp()),
        "epoch": epoch, "epoch_numbering": ckpt.EPOCHS_FROM_1, "step": step, "best": dict(best),
        "data": {"split": str(split_dir), "images": str(images)},
        **ckpt.frozen_text_payload(model, config.model.pretrained),
    }
    if full:
        payload.update({
            "ema": {k: v.detach().cpu() for k, v in ema.state.items()} if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "loss": loss_fn.state_dict(),
        })
    if train_keys is not None:
        payload["data"]["train_keys"] = {**train_keys, "hashes": torch.from_numpy(train_keys["hashes"])}
    ckpt.save_checkpoint(path, payload)
