"""``hspnet audit``: likely label errors from out-of-sample probabilities (see :mod:`hspnet_cli.audit`).

With ``--checkpoint`` the probabilities come from a model that never trained on LABELS (its
recorded training keys are checked); with ``--folds K`` this command trains K models on the
other folds (:mod:`hspnet_cli.train.folds`) and scores each fold with the model that left it
out. The audit room itself only uses models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from hspnet_cli.core.console import print_json, say
from hspnet_cli.core.errors import UserError


def audit(
    labels_path: Path = typer.Argument(
        ...,
        metavar="LABELS",
        help="Labels to audit: any annotation hspnet split "
        "reads (split CSV, CSV, COCO, a Label Studio/CVAT/HF/FiftyOne export...).",
    ),
    taxonomy: str = typer.Option(..., "--taxonomy", "-t", help="Built-in name or taxonomy YAML (the model's labels)."),
    images: Path = typer.Option(..., "--images", help="Folder the LABELS image paths are relative to."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="issues.csv to write (key,label,given,probability,quality,kind); STEM.audit.json goes beside it.",
    ),
    checkpoint: Optional[Path] = typer.Option(
        None,
        "--checkpoint",
        help="A trained hspnet model (run folder or .ckpt) that never trained on LABELS (checked).",
    ),
    folds: Optional[int] = typer.Option(
        None,
        "--folds",
        help="Instead of --checkpoint: train K models, each on "
        "the other folds of LABELS, and score each fold out of sample.",
    ),
    folds_dir: Optional[Path] = typer.Option(
        None,
        "--folds-dir",
        help="Where --folds runs go (default: STEM.folds/ beside --out); finished folds are reused.",
    ),
    preset: str = typer.Option("official", "--preset", help="--folds: training recipe."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="--folds: YAML config instead of --preset."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="--folds: epochs per fold."),
    overrides: list[str] = typer.Option([], "--set", help="--folds: any config field (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="--folds: seed of the fold assignment and training."),
    allow_unknown: bool = typer.Option(
        False,
        "--allow-unknown-training-set",
        help="Audit with a checkpoint that "
        "records no training images. UNSAFE: on images it trained on, a model is "
        "confident in their labels, wrong ones included.",
    ),
    input_format: Optional[str] = typer.Option(None, "--format", help="Force the LABELS format (as hspnet split)."),
    absent: str = typer.Option(
        "auto",
        "--absent",
        help="What a label an image is not given means: negative | unknown | auto (as hspnet split).",
    ),
    to: Optional[str] = typer.Option(
        None,
        "--to",
        help="label-studio: also write STEM.tasks.json, the flagged images with the suggested fix pre-ticked.",
    ),
    with_suggestions: bool = typer.Option(
        False,
        "--tasks-with-suggestions",
        help="--to: also images whose only findings are likely missing positives of unknown entries.",
    ),
    adjust: bool = typer.Option(
        False,
        "--adjust-probabilities",
        help="Rank by cleanlab's threshold-adjusted "
        "self-confidence (adjust_pred_probs); ranked better only with a weak model on the "
        "demo benchmark (docs/quality.md).",
    ),
    url_prefix: Optional[str] = typer.Option(None, "--url-prefix", help="--to: reference images as PREFIX + path."),
    absolute: bool = typer.Option(False, "--absolute", help="--to: reference images by absolute local path."),
    local_files_root: Optional[Path] = typer.Option(
        None, "--local-files-root", help="--to: Label Studio's local files document root (default: /)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass when scoring."),
    workers: int = typer.Option(0, "--workers", help="Image-loading processes when scoring."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (STEM.audit.json) on stdout."),
) -> None:
    """Rank likely label errors (wrong and missing positives) of LABELS, out of sample, with cleanlab."""
    from hspnet_cli.audit import AuditOptions, audit_labels, read_labels
    from hspnet_cli.audit.run import audit_with_checkpoint, fold_probabilities

    if (checkpoint is None) == (folds is None):
        raise UserError("give exactly one of --checkpoint CK (a model that never trained on LABELS) and --folds K")
    options = AuditOptions(
        fmt=input_format,
        absent=absent,
        allow_unknown_training_set=allow_unknown,
        to=to,
        url_prefix=url_prefix,
        absolute=absolute,
        local_files_root=None if local_files_root is None else str(local_files_root),
        suggestions_in_tasks=with_suggestions,
        adjust=adjust,
        device=device,
        batch_size=batch_size,
        workers=workers,
    )
    options.check(out)
    labels, tax = read_labels(labels_path, taxonomy, options)
    if checkpoint is not None:
        facts = audit_with_checkpoint(labels, checkpoint, images, tax, out, options, source=str(labels_path))
    else:
        from hspnet_cli.commands.train_cmd import _parse_set
        from hspnet_cli.config import apply_overrides, load_config, load_preset
        from hspnet_cli.core.progress import epoch_progress
        from hspnet_cli.train.folds import train_folds

        config = load_config(config_file) if config_file else load_preset(preset)
        changes = {"train.seed": seed, **({"train.epochs": epochs} if epochs is not None else {})}
        config = apply_overrides(config, {**changes, **_parse_set(overrides)})
        where = folds_dir or out.with_name(f"{out.stem}.folds")
        runs = train_folds(
            labels,
            images,
            taxonomy,
            where,
            int(folds),
            config,
            seed=seed,
            device=device,
            progress=None if as_json else epoch_progress,
            on_fold=None
            if as_json
            else lambda i, k, reused: say(f"fold {i}/{k}: " + ("finished earlier, reused" if reused else "training")),
        )
        probs = fold_probabilities(labels, runs, images, options)
        origin = {
            "kind": "folds",
            "folds": int(folds),
            "folds_dir": str(where),
            "epochs": config.train.epochs,
            "model": f"{config.model.method} on {config.model.clip_model}",
        }
        facts = audit_labels(labels, probs, images, tax, out, options, origin, source=str(labels_path))
    if as_json:
        print_json(facts)
        return
    table = Table(title=escape(f"hspnet audit {labels_path}"))
    table.add_column("fact")
    table.add_column("value")
    for key in ("images", "issues", "flagged_images", "images_with_suggestions"):
        table.add_row(key, str(facts[key]))
    for kind, count in facts["by_kind"].items():
        table.add_row(f"kind: {kind}", str(count))
    table.add_row("probabilities", escape(str(facts["probabilities"].get("model", facts["probabilities"]["kind"]))))
    for role, path in facts["files"].items():
        table.add_row(f"file: {role}", escape(path))
    say(table)
