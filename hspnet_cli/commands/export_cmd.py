"""``hspnet export``: a training checkpoint -> a small inference model (see :mod:`hspnet_cli.scoring.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import print_json, say
from hspnet_cli.core.errors import UserError


def export(
    old_checkpoint: Optional[Path] = opt.old_checkpoint_argument(),
    checkpoint: Optional[Path] = opt.checkpoint("best.ckpt / last.ckpt of hspnet train, or its run folder (required)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (torchscript/onnx also write OUT.json)."),
    fmt: str = typer.Option("ckpt", "--format", "-f", help="ckpt (torch file, weights_only), torchscript or onnx."),
    thresholds: Optional[Path] = typer.Option(
        None,
        "--thresholds",
        help="Per-label thresholds JSON: "
        '{"labels": [...], "thresholds": {label: value}} (default: the '
        "checkpoint's own, fitted in training on a labelled validation split).",
    ),
    device: str = opt.device("cpu", "Where the source model is rebuilt (cpu or cuda[:N])."),
    as_json: bool = opt.as_json("Print what was written as JSON."),
) -> None:
    """Export the image tower and the fixed label features: inference without the text tower."""
    from hspnet_cli.scoring.export import export_model
    from hspnet_cli.scoring.model_file import sidecar_path

    checkpoint = opt.deprecated(checkpoint, old_checkpoint, old="a positional CHECKPOINT", new="--checkpoint")
    if checkpoint is None:
        raise UserError("missing --checkpoint: the run folder or training checkpoint to export")
    fmt = fmt.strip().lower()
    facts: dict = {}
    path = export_model(checkpoint, out, fmt=fmt, thresholds=thresholds, device=device, report=facts)
    files = [path] + ([sidecar_path(path)] if sidecar_path(path).is_file() and fmt != "ckpt" else [])
    summary = {
        "format": fmt,
        "source": str(checkpoint),
        "files": {str(p): p.stat().st_size for p in files},
        "thresholds": facts.get("thresholds_source"),
    }
    if as_json:
        print_json(summary)
    else:
        sizes = ", ".join(f"{p} ({p.stat().st_size / 2**20:.1f} MiB)" for p in files)
        say(f"[green]exported[/] {checkpoint} as {fmt}: {sizes}")
        say(f"thresholds: {facts.get('thresholds_source')}")
