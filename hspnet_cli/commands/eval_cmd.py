"""``hspnet eval`` and ``hspnet calibrate``: score a labelled split, report metrics / fit thresholds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import is_quiet, print_json, say
from hspnet_cli.core.errors import UserError

_SHOWN = 15


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _score(
    checkpoint: Optional[Path],
    zero_shot: bool,
    taxonomy: Optional[str],
    clip_model: str,
    pretrained: str,
    data: Path,
    images: Path,
    batch_size: int,
    workers: int,
    device: str,
):  # type: ignore[no-untyped-def]
    """Load the scorer and the split, score every image: (scorer, labels, logits, targets)."""
    from hspnet_cli.data.split_io import read_split_csv
    from hspnet_cli.evaluation.evaluate import score_split
    from hspnet_cli.scoring.scorer import choose_scorer

    scorer = choose_scorer(
        checkpoint, zero_shot=zero_shot, taxonomy=taxonomy, clip_model=clip_model, pretrained=pretrained, device=device
    )
    labels = read_split_csv(data, scorer.taxonomy)
    if labels.n_images == 0:
        raise UserError(f"{data}: no images to evaluate")
    logits, targets = score_split(scorer, labels, images, batch_size=batch_size, workers=workers)
    return scorer, labels, logits, targets


def _class_table(report: Any, rows: int) -> Table:
    table = Table(title=f"Per-class AP ({report.variant}), worst first")
    for column in ("class", "group", "AP", "#positives"):
        table.add_column(column, justify="right" if column in ("AP", "#positives") else "left")
    order = report.worst_first()
    for i in order[:rows] if rows > 0 else order:
        table.add_row(
            report.label_names[i], report.label_groups[i], _fmt(report.per_class_ap[i]), str(int(report.positives[i]))
        )
    if 0 < rows < len(order):
        table.add_row(f"[dim]... {len(order) - rows} more (--all-classes)[/]", "", "", "")
    return table


def _summary_table(data: dict[str, Any], k: int) -> Table:
    table = Table(title="Summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name in (
        ("map", f"mAP ({data['map_variant']})"),
        ("group_map", "group mAP"),
        ("cf1", "CF1"),
        ("cp", "CP"),
        ("cr", "CR"),
        ("of1", "OF1"),
        ("op", "OP"),
        ("or", "OR"),
        (f"top{k}_precision", f"top-{k} precision"),
    ):
        table.add_row(name, _fmt(data[key]))
    return table


def eval_command(
    old_checkpoint: Optional[Path] = opt.old_checkpoint_argument(),
    checkpoint: Optional[Path] = opt.checkpoint(),
    data: Path = typer.Option(..., "--data", help="Labelled split CSV (val.csv or test.csv of hspnet split)."),
    images: Path = typer.Option(..., "--images", help="Folder the CSV's image paths are relative to."),
    taxonomy: Optional[str] = opt.taxonomy(),
    zero_shot: bool = opt.zero_shot(),
    clip_model: str = opt.clip_model(),
    pretrained: str = opt.pretrained(),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every metric to this JSON file ('-': stdout)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write PNG pictures into this folder."),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        help="Probability threshold for F1/precision/recall (default: the model's calibrated ones, else 0.5).",
    ),
    thresholds_file: Optional[Path] = typer.Option(
        None, "--thresholds", help="Per-class thresholds JSON of hspnet calibrate for F1/precision/recall."
    ),
    top_k: int = typer.Option(3, "--top-k", help="k of top-k precision."),
    map_variant: str = typer.Option("sklearn", "--map-variant", help="sklearn (ties = one step) or asl."),
    all_classes: bool = typer.Option(False, "--all-classes", help="Show every class in the table."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers."),
    device: str = opt.device(),
    old_model: Optional[str] = opt.old_option("--model"),
) -> None:
    """Evaluate a trained model (or zero-shot CLIP) on a labelled split: mAP, per-class AP, F1, plots."""
    import json

    from hspnet_cli.core.io_utils import write_text_atomic
    from hspnet_cli.evaluation.evaluate import evaluate_scores
    from hspnet_cli.scoring.scorer import describe

    checkpoint = opt.deprecated(checkpoint, old_checkpoint, old="a positional CHECKPOINT", new="--checkpoint")
    clip_model = opt.deprecated(clip_model, old_model, old="--model", new="--clip-model", new_default="RN50")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold is a probability in [0, 1]; got {threshold}")
    if threshold is not None and thresholds_file is not None:
        raise UserError("give --threshold or --thresholds, not both")
    scorer, labels, logits, targets = _score(
        checkpoint, zero_shot, taxonomy, clip_model, pretrained, data, images, batch_size, workers, device
    )
    cut, cut_source = _decision_thresholds(scorer, threshold, thresholds_file)
    report = evaluate_scores(logits, targets, scorer.taxonomy, threshold=cut, top_k=top_k, variant=map_variant)
    note = _no_prediction_note(logits, cut, cut_source, checkpoint, images)
    if (
        note is None
        and threshold is None
        and thresholds_file is None
        and getattr(scorer, "thresholds", None) is None
        and not zero_shot
    ):
        from hspnet_cli.scoring.thresholds import uncalibrated_note

        note = f"thresholds {uncalibrated_note(checkpoint)}"
    report.extra = {
        **describe(scorer),
        "data": str(data),
        "taxonomy": scorer.taxonomy.name,
        "threshold_source": cut_source,
        **({"threshold_note": note} if note else {}),
    }
    result = report.to_dict()
    plots: list[Path] = []
    if plot is not None:
        from hspnet_cli.evaluation.plots import write_plots

        plots = write_plots(
            plot,
            report,
            logits,
            targets,
            scorer.label_features.float().cpu().numpy(),
            title=f"{scorer.description} on {data.name}",
        )
        result["plots"] = [str(p) for p in plots]
    if json_out is not None and str(json_out) == "-":
        print_json(result)
        return
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result, indent=2) + "\n")
    if is_quiet():
        return
    say(_class_table(report, 0 if all_classes else _SHOWN))
    if report.no_positive:
        say(
            f"[yellow]{len(report.no_positive)} class(es) have no positive in {data} and are left out of mAP:[/] "
            + ", ".join(report.no_positive)
        )
    say(_summary_table(result, top_k))
    say(f"{report.n_images} images, {len(report.label_names)} labels; {scorer.description}; F1 at {cut_source}")
    if note:
        say(f"[yellow]{note}[/]")
    for path in ([json_out] if json_out else []) + plots:
        say(f"wrote {path}")


def _decision_thresholds(scorer: Any, threshold: float | None, path: Path | None) -> tuple[Any, str]:
    """The thresholds F1/precision/recall use and a phrase saying where they came from:
    ``--thresholds`` file, else ``--threshold``, else the model's calibrated ones (an export made
    with ``--thresholds``), else 0.5."""
    if path is not None:
        from hspnet_cli.scoring.thresholds import load_thresholds

        return load_thresholds(path, scorer.taxonomy), f"the per-class thresholds of {path}"
    if threshold is not None:
        return float(threshold), f"probability >= {threshold}"
    stored = getattr(scorer, "thresholds", None)
    if stored is not None:
        return stored.float().cpu().numpy(), getattr(scorer, "thresholds_source", "") or "the model's thresholds"
    return 0.5, "probability >= 0.5"


def _no_prediction_note(logits: Any, cut: Any, source: str, checkpoint: Optional[Path], images: Path) -> str | None:
    """Why CF1/OF1 are 0 when no probability reaches its threshold (models trained with the AN
    loss score every label low), and how to get thresholds that fit the model."""
    import numpy as np

    from hspnet_cli.evaluation.evaluate import sigmoid

    probs = sigmoid(logits)
    if probs.size == 0 or (probs >= np.asarray(cut, dtype=np.float32)).any():
        return None
    model = f"--checkpoint {checkpoint}" if checkpoint is not None else "--zero-shot ..."
    return (
        f"no probability reaches {source.removeprefix('probability >= ')} (highest {float(probs.max()):.3f}), "
        "so nothing is predicted and CF1/OF1 are 0 (usual after training with the AN loss; mAP is unaffected). "
        f"Fit per-class thresholds on a validation split: hspnet calibrate {model} --data val.csv --images "
        f"{images} -o thresholds.json, then eval --thresholds thresholds.json"
    )


def calibrate_command(
    old_checkpoint: Optional[Path] = opt.old_checkpoint_argument(),
    checkpoint: Optional[Path] = opt.checkpoint(),
    data: Path = typer.Option(..., "--data", help="Labelled split CSV to fit thresholds on (val.csv)."),
    images: Path = typer.Option(..., "--images", help="Folder the CSV's image paths are relative to."),
    out: Path = typer.Option(..., "--out", "-o", help="Thresholds JSON to write (for hspnet tag --thresholds)."),
    taxonomy: Optional[str] = opt.taxonomy(),
    zero_shot: bool = opt.zero_shot(),
    clip_model: str = opt.clip_model(),
    pretrained: str = opt.pretrained(),
    min_positives: int = typer.Option(5, "--min-positives", help="Fewer positives: use the fallback threshold."),
    fallback: str = typer.Option(
        "global", "--fallback", help="global (micro-F1-optimal shared threshold) or default (--default)."
    ),
    default: float = typer.Option(0.5, "--default", help="Fixed fallback threshold (also used without positives)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers."),
    device: str = opt.device(),
    as_json: bool = opt.as_json("Also print the thresholds file to stdout."),
    old_model: Optional[str] = opt.old_option("--model"),
) -> None:
    """Fit per-class probability thresholds that maximise F1 on a labelled split."""
    from hspnet_cli.core.locks import output_lock
    from hspnet_cli.evaluation.calibration import calibrate
    from hspnet_cli.evaluation.evaluate import sigmoid
    from hspnet_cli.scoring.thresholds import write_thresholds

    checkpoint = opt.deprecated(checkpoint, old_checkpoint, old="a positional CHECKPOINT", new="--checkpoint")
    clip_model = opt.deprecated(clip_model, old_model, old="--model", new="--clip-model", new_default="RN50")
    if not 0.0 <= default <= 1.0:
        raise UserError(f"--default is a probability in [0, 1]; got {default}")
    with output_lock(out, "thresholds file"):  # before scoring: a second writer fails at once
        scorer, labels, logits, targets = _score(
            checkpoint, zero_shot, taxonomy, clip_model, pretrained, data, images, batch_size, workers, device
        )
        result = calibrate(
            sigmoid(logits),
            targets,
            scorer.taxonomy.label_names,
            min_positives=min_positives,
            default=default,
            fallback=fallback,
            source={
                "scorer": scorer.description,
                "data": str(data),
                "images": labels.n_images,
                "taxonomy": scorer.taxonomy.name,
            },
        )
        write_thresholds(out, result)
    if as_json:
        print_json(result)
        return
    table = Table(title="Thresholds")
    for column in ("class", "threshold", "F1", "#positives", "rule"):
        table.add_column(column, justify="left" if column in ("class", "rule") else "right")
    for name in result["labels"]:
        info = result["per_class"][name]
        table.add_row(name, f"{result['thresholds'][name]:.4f}", _fmt(info["f1"]), str(info["positives"]), info["rule"])
    say(table)
    fb = result["fallback"]
    say(
        f"{len(fb['labels'])} class(es) with fewer than {min_positives} positives use the {fb['rule']} threshold "
        f"{fb['threshold']:.4f}; wrote {out}"
    )
