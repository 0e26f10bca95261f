"""``hspnet train``: options -> resolved config -> :func:`hspnet_cli.train.loop.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from hspnet_cli.commands import options as opt
from hspnet_cli.config import list_presets
from hspnet_cli.core.console import is_quiet, print_json, say
from hspnet_cli.core.errors import UserError

# Read from the presets folder so --help lists what exists (a glob: --help stays instant).
_PRESETS = list_presets()


def _parse_set(items: list[str]) -> dict[str, Any]:
    """``--set model.n_ctx=8`` -> {"model.n_ctx": 8}; values are read as YAML scalars."""
    from hspnet_cli.core.safe_yaml import load_yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set '{item}' must look like section.name=value (e.g. model.n_ctx=8)")
        out[key.strip()] = load_yaml(value, f"--set {key.strip()}")
    return out


def train(
    split: Optional[Path] = typer.Option(None, "--split", help="Split folder made by hspnet split."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the split's image paths are relative to."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder to write."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML config (preset + overrides)."),
    taxonomy: Optional[str] = opt.taxonomy("Taxonomy (default: the split's)."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help=f"Recipe: {', '.join(_PRESETS)} (default official, the published code's)."
    ),
    clip_model: Optional[str] = opt.clip_model(None, "open_clip model (default RN50)."),
    pretrained: Optional[str] = opt.pretrained(None, "Tag, checkpoint file, or none."),
    method: Optional[str] = typer.Option(None, "--method", help="hspnet, hcp, spl_gcn or spl."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs to train."),
    patience: Optional[int] = typer.Option(
        None, "--patience", help="Stop after N epochs without a better validation mAP (official: 10)."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (per GPU)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Max learning rate (image encoder, prompts)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="splc, hill, an, epr, em, ll-r, ll-ct, ll-cp, bce."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input side (default: the model's)."),
    augment: Optional[str] = typer.Option(None, "--augment", help="none or flip_crop."),
    freeze_image_encoder: bool = typer.Option(False, "--freeze-image-encoder", help="Keep the image tower fixed."),
    cache_features: bool = typer.Option(
        False, "--cache-features", help="Frozen tower only: compute image features once and reuse them."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader workers."),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        help="Intra-op CPU threads (default: OMP_NUM_THREADS if set, else usable cores minus --workers, at least 1).",
    ),
    overrides: list[str] = typer.Option([], "--set", help="Any config field: --set model.n_ctx=8 (repeatable)."),
    device: str = opt.device(),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder."),
    overwrite: bool = opt.overwrite("Replace an earlier run in --out."),
    as_json: bool = opt.as_json("Print the final metrics as JSON."),
    old_model: Optional[str] = opt.old_option("--model"),
) -> None:
    """Train HSPNet (or a baseline) on a split. Multi-GPU: torchrun --nproc_per_node N -m hspnet_cli train ..."""
    from hspnet_cli.config import apply_overrides, load_config, load_preset
    from hspnet_cli.core.progress import epoch_progress
    from hspnet_cli.train.loop import train as run_training
    from hspnet_cli.train.progress import epoch_reporter

    clip_model = opt.deprecated(clip_model, old_model, old="--model", new="--clip-model")
    if resume is not None:
        given = [
            name
            for name, value in (
                ("--split", split),
                ("--config", config_file),
                ("--preset", preset),
                ("--clip-model", clip_model),
                ("--epochs", epochs),
                ("--lr", lr),
                ("--set", overrides),
            )
            if value
        ]
        if given:
            raise UserError(f"--resume continues a run with its own config; drop {', '.join(given)}")
        config, split_dir, images_dir, out_dir = None, None, None, resume
    else:
        missing = [n for n, v in (("--split", split), ("--images", images), ("--out", out)) if v is None]
        if missing:
            raise UserError(f"missing {', '.join(missing)} (or --resume RUN_DIR to continue a run)")
        config = load_config(config_file) if config_file else load_preset(preset or "official")
        if preset and config_file:
            raise UserError("give --preset or --config (which names its own preset), not both")
        plain = {
            "model.clip_model": clip_model,
            "model.pretrained": pretrained,
            "model.method": method,
            "train.epochs": epochs,
            "train.patience": patience,
            "train.batch_size": batch_size,
            "train.lr": lr,
            "train.loss": loss,
            "train.seed": seed,
            "train.image_size": image_size,
            "train.augment": augment,
            "train.num_workers": workers,
            "model.freeze_image_encoder": True if freeze_image_encoder else None,
            "train.cache_features": True if cache_features else None,
        }
        changes = {k: v for k, v in plain.items() if v is not None}
        if epochs is not None and config.train.schedule_epochs is not None and config.train.schedule_epochs < epochs:
            changes["train.schedule_epochs"] = epochs
        changes.update(_parse_set(overrides))
        config = apply_overrides(config, changes)
        split_dir, images_dir, out_dir = split, images, out

    quiet = is_quiet() or as_json
    result = run_training(
        split_dir,
        images_dir,
        out_dir,
        config,
        taxonomy=taxonomy,
        device=device,
        resume=resume is not None,
        overwrite=overwrite,
        on_epoch=None if quiet else _reporter(config, out_dir, epoch_reporter),
        progress=None if quiet else epoch_progress,
        threads=threads,
    )
    if not result.is_main:
        return  # under torchrun only rank 0 reports
    if as_json:
        print_json(result.summary())
    else:
        if result.stopped_early:
            say(f"stopped early (train.patience): no epoch after {result.best_epoch} had a better validation mAP")
        say(
            f"[green]best[/] validation mAP {result.best_map:.4f} (epoch {result.best_epoch}, "
            f"{result.best_source} weights); label-frequency baseline {result.baseline_map:.4f}; run in {out_dir}"
        )
        say(result.summary()["thresholds"])


def _reporter(config, out_dir: Path, make):  # type: ignore[no-untyped-def]
    """The per-epoch printer, told the run's epoch count (resumed: from the run's config.yaml)."""
    if config is not None:
        return make(config.train.epochs)
    import yaml

    try:
        epochs = yaml.safe_load((Path(out_dir) / "config.yaml").read_text(encoding="utf-8"))["train"]["epochs"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        epochs = None  # the resume itself reports what is wrong with the folder
    return make(epochs)
