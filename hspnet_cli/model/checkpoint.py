"""Checkpoints that carry everything needed to use them, loadable with ``weights_only=True``.

A checkpoint holds the resolved config, the taxonomy (as data), the label order, the trained
weights, the label features T* of those weights (inference needs no text tower), and the
package version. ``last.ckpt`` adds what an exact resume needs: optimiser, schedule, EMA, grad
scaler, loss state (LargeLoss-Cp corrections) and epoch/step counters. Only plain
containers, numbers, strings and tensors are stored, so ``torch.load(weights_only=True)``
reads them and no pickled code ever runs.

The frozen text tower (with its token embedding, so the checkpoint can encode any text for
text search) is stored only when it cannot be fetched again by name: for a random
backbone (``pretrained: none``) or a local checkpoint file. For a published tag (``openai``)
it is recreated from the tag, and a fingerprint of its weights checks it is the same tower.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from hspnet_cli import __version__
from hspnet_cli.config import RunConfig, config_from_dict
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import output_error
from hspnet_cli.taxonomy import Taxonomy, taxonomy_from_dict

FORMAT = "hspnet-checkpoint"
FORMAT_VERSION = 1
# Marks checkpoints whose ``epoch`` (and ``best.epoch``) count from 1 (the epochs completed);
# earlier ones stored the 0-based index of the last epoch.
EPOCHS_FROM_1 = "from 1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format markers) atomically: temp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **payload}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # never leave a half checkpoint taking the space
        cause = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
        err = output_error(cause, path, "checkpoint") if isinstance(cause, OSError) else None
        if err is not None:
            raise err from None
        raise


def checkpoint_payload(
    model: Any,
    config: RunConfig,
    taxonomy: Taxonomy,
    *,
    epoch: int,
    step: int,
    best: dict[str, Any],
    data: dict[str, Any],
    thresholds: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to use ``model`` as it is now, as plain containers and tensors.

    Args:
        model: The HSPNet model, holding the weights to store (the caller swaps EMA weights in
            first when those are the ones kept).
        config: The resolved run config.
        taxonomy: The taxonomy trained on (stored as data, with its label order).
        epoch: Epochs completed (counted from 1).
        step: Optimiser steps taken.
        best: The best-epoch record so far.
        data: Where the training data came from (split folder, images root, ...).
        thresholds: Per-label decision thresholds fitted for these weights (the thresholds-file
            format of :mod:`hspnet_cli.scoring.thresholds`); None when uncalibrated.

    Returns:
        The payload for :func:`save_checkpoint`; a resumable checkpoint adds optimiser state.
    """
    # A copy: on the CPU .cpu() returns the model's own tensors, which restoring other weights
    # afterwards would overwrite in place (a checkpoint would hold weights unlike its T*).
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.trainable_state_dict().items()}
    model.eval()
    with torch.no_grad():
        label_feats = model.label_features().float().cpu()
    return {
        "config": config.to_dict(),
        "taxonomy": taxonomy.to_dict(),
        "label_names": taxonomy.label_names,
        "model": weights,
        "label_features": label_feats,
        "logit_scale": float(model.logit_scale.exp()),
        "epoch": epoch,
        "epoch_numbering": EPOCHS_FROM_1,
        "step": step,
        "best": dict(best),
        "data": dict(data),
        "thresholds": thresholds,
        **frozen_text_payload(model, config.model.pretrained),
    }


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and check it is one of ours.

    Raises:
        UserError: Missing file, unreadable file, or not an hspnet checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.ckpt"
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several unpickling error types
        raise UserError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an hspnet checkpoint (made by another tool?)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path}: written by a newer hspnet ({data.get('package_version')}); upgrade hspnet")
    return data


def frozen_text_payload(model: Any, pretrained: str | None) -> dict[str, Any]:
    """What a checkpoint keeps of the frozen text tower (see module docstring), and how the
    backbone was built (``clip_build``: its activation), so a rebuild makes the same network."""
    from hspnet_cli.model.clip_models import RANDOM_TAGS, uses_quick_gelu

    tag = (pretrained or "").strip().lower()
    keep = tag in RANDOM_TAGS or Path(str(pretrained)).expanduser().exists()
    return {
        "text_sha256": model.text_fingerprint(),
        "frozen_text": {k: v.detach().cpu() for k, v in model.text.state_dict().items()} if keep else None,
        "clip_build": {"quick_gelu": uses_quick_gelu(model)},
    }


def built_quick_gelu(data: dict[str, Any]) -> bool:
    """Whether the checkpoint's backbone was built with QuickGELU.

    Checkpoints record it since the activation started following the weights. Older ones were
    built with the architecture config's own activation (GELU for ``RN50`` even with ``openai``
    weights), except from a local OpenAI TorchScript archive (always QuickGELU): they are rebuilt
    exactly so, so their scores do not change.
    """
    from hspnet_cli.model.clip_models import _is_torchscript_archive

    recorded = (data.get("clip_build") or {}).get("quick_gelu")
    if recorded is not None:
        return bool(recorded)
    cfg = data["config"]["model"]
    path = Path(str(cfg.get("pretrained"))).expanduser()
    return str(cfg.get("clip_model", "")).endswith("quickgelu") or (path.is_file() and _is_torchscript_archive(path))


def model_from_checkpoint(data: dict[str, Any], device: str = "cpu"):  # type: ignore[no-untyped-def]
    """Rebuild the trained model of a checkpoint (weights, graphs, prompts, text tower).

    Raises:
        UserError: The pretrained text tower fetched by name differs from the one trained with.
    """
    from hspnet_cli.model.clip_models import load_clip
    from hspnet_cli.model.hspnet import HSPNet, ablate_taxonomy
    from hspnet_cli.model.image_size import fit_image_size

    config = checkpoint_config(data)
    tax = checkpoint_taxonomy(data)
    # The trained weights are loaded below: a random backbone here is not a random model.
    clip = load_clip(
        config.model.clip_model,
        config.model.pretrained if data.get("frozen_text") is None else "none",
        device=device,
        weights_follow=True,
        quick_gelu=built_quick_gelu(data),
    )
    if config.train.image_size:  # the positional embedding was resampled for this side in training
        fit_image_size(clip.model.visual, int(config.train.image_size), config.model.clip_model)
    tax = ablate_taxonomy(tax, config.model.taxonomy_ablation, config.train.seed)
    # The graphs are buffers of the checkpoint's weights: no similarity file is read again.
    model = HSPNet(clip.model, clip.tokenizer, tax, config.model)
    restore_text_tower(model, data)
    model.load_state_dict(data["model"], strict=False)
    return model.to(device).eval()


def restore_text_tower(model: Any, data: dict[str, Any]) -> None:
    """Load a checkpoint's stored text tower, or check the re-fetched one is the same.

    Raises:
        UserError: The tower fetched by name differs from the one the checkpoint was trained with.
    """
    if data.get("frozen_text") is not None:
        stored = data["frozen_text"]
        if "token_embedding.weight" not in stored:
            # Checkpoints written before the tower kept its token embedding: scoring needs only
            # the rest; free-text encoding (text search) is then unavailable.
            model.text.token_embedding = None
            missing = [k for k in model.text.state_dict() if k not in stored]
            if missing:
                raise UserError(f"checkpoint's stored text tower lacks {missing[:3]}; retrain with this hspnet")
        model.text.load_state_dict(stored)
    elif data.get("text_sha256") and model.text_fingerprint() != data["text_sha256"]:
        cfg = data["config"]["model"]
        raise UserError(
            f"the text tower of {cfg['clip_model']}/{cfg['pretrained']} differs from the one this "
            "checkpoint was trained with; use the same pretrained weights"
        )


def checkpoint_config(data: dict[str, Any]) -> RunConfig:
    """The resolved run config stored in a checkpoint."""
    return config_from_dict(
        {k: v for k, v in data["config"].items() if k in ("preset", "model", "train")}, source="checkpoint"
    )


def checkpoint_taxonomy(data: dict[str, Any]) -> Taxonomy:
    """The taxonomy stored in a checkpoint (its label order is the score columns' order)."""
    return taxonomy_from_dict(data["taxonomy"], source="checkpoint")


def epochs_done(data: dict[str, Any]) -> int:
    """Epochs a checkpoint's run had completed (also for checkpoints counting from 0)."""
    return int(data["epoch"]) + (0 if data.get("epoch_numbering") == EPOCHS_FROM_1 else 1)


def best_record(data: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's best-so-far record with its epoch counted from 1."""
    best = dict(data["best"])
    if data.get("epoch_numbering") != EPOCHS_FROM_1:
        best["epoch"] = int(best["epoch"]) + 1
    return best
