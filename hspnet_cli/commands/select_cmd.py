"""``hspnet select``: choose the next images to label from a tag output (see :mod:`hspnet_cli.selection`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import err_console, print_json, say


def select(
    tags: Path = typer.Argument(
        ..., help="tags.csv or tags.jsonl of hspnet tag / index merge (with its embeddings and manifest)."
    ),
    n: int = typer.Option(..., "-n", "--number", help="How many images to choose."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="List file to write (one image path a line, what hspnet tag "
        "--list reads); STEM.picks.csv and STEM.select.json are written beside it.",
    ),
    strategy: str = typer.Option(
        "mix", "--strategy", "-s", help="mix (default), uncertainty, diversity, coverage or random."
    ),
    mix: Optional[str] = typer.Option(
        None, "--mix", help="Shares of --strategy mix (default coverage=0.2,uncertainty=0.6,diversity=0.2)."
    ),
    exclude: list[Path] = typer.Option(
        [],
        "--exclude",
        "-x",
        help="Already labelled: a list file, a split CSV or any annotation file hspnet split reads (repeatable).",
    ),
    checkpoint: Optional[Path] = opt.checkpoint(
        "The model that tagged (run folder, training checkpoint or "
        "export): every label's probability from the embeddings of a "
        "tags.csv. Default: the one its manifest names, if still there."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (same seed, same picks)."),
    pool: int = typer.Option(
        100_000, "--pool", help="Diversity candidates: a seeded sample of this many when more images are eligible."
    ),
    pool_factor: int = typer.Option(
        10,
        "--pool-factor",
        help="mix: k-center among this many times the uncertainty quota of the most uncertain images.",
    ),
    dims: int = typer.Option(
        128, "--dims", help="PCA dimensions for k-center distances when the embeddings are wider (0: exact)."
    ),
    to: Optional[str] = typer.Option(
        None,
        "--to",
        help="Also write the picks as a labeling tool's tasks beside "
        "OUT: label-studio (STEM.tasks.json), cvat (STEM.cvat.xml) or fiftyone "
        "(STEM.fiftyone/). Other image references: hspnet export-labels --only OUT.",
    ),
    overwrite: bool = opt.overwrite("Replace an OUT that hspnet select did not write."),
    as_json: bool = opt.as_json("Print the report (STEM.select.json) on stdout."),
    old_model: Optional[Path] = opt.old_option("--model"),
) -> None:
    """Choose N images to label next: uncertain ones, diverse ones, rare labels; never what is labelled."""
    from hspnet_cli.core.progress import epoch_progress
    from hspnet_cli.selection import SelectOptions, parse_mix, select_images, write_selection
    from hspnet_cli.selection.outputs import check_out

    checkpoint = opt.deprecated(checkpoint, old_model, old="--model", new="--checkpoint")
    options = SelectOptions(
        n=n,
        strategy=strategy.strip().lower(),
        mix=parse_mix(mix),
        seed=seed,
        exclude=[str(p) for p in exclude],
        model=None if checkpoint is None else str(checkpoint),
        pool=pool,
        pool_factor=pool_factor,
        dims=dims,
    )
    options.check()
    task_out = _tasks_path(out, to)
    check_out(out, overwrite)
    sel = select_images(tags, options, progress=None if as_json else epoch_progress)
    facts = write_selection(sel, out, overwrite=overwrite)
    if task_out is not None:
        from hspnet_cli.labeltools import export_labels

        exported = export_labels(tags, str(to), task_out, only=facts["files"]["list"], overwrite=True)
        facts["files"]["tasks"] = exported["files"]
    if as_json:
        print_json(facts)
        return
    counts = facts["counts"]
    table = Table(
        title=f"selected {counts['picked']} of {counts['eligible']:,} unlabelled images "
        f"({counts['excluded']:,} labelled excluded)"
    )
    for column in ("reason", "images"):
        table.add_column(column)
    for reason, k in counts["by_reason"].items():
        table.add_row(reason, str(k))
    say(table)
    say(f"probabilities: {facts['probabilities']['detail']}")
    say(f"thresholds: {facts['thresholds']}")
    if facts.get("uncertainty"):
        u = facts["uncertainty"]
        say(f"mean uncertainty: picks {u['picks_mean']:.3f} vs unlabelled {u['eligible_mean']:.3f}")
    missing = facts["coverage"]["pool_labels_without_picks"]
    if missing:
        err_console.print(f"[yellow]predicted in the unlabelled images but in no pick:[/] {', '.join(missing)}")
    say(
        f"wrote {facts['files']['list']} (list), {facts['files']['picks']} (reasons and scores), "
        f"{facts['files']['report']}" + (f"; tasks: {', '.join(facts['files']['tasks'].values())}" if to else "")
    )


_TASK_NAMES = {"label-studio": "{stem}.tasks.json", "cvat": "{stem}.cvat.xml", "fiftyone": "{stem}.fiftyone"}


def _tasks_path(out: Path, to: Optional[str]) -> Optional[Path]:
    """Where ``--to`` writes the picks' tasks (checked before any work is done)."""
    from hspnet_cli.core.errors import UserError

    if to is None:
        return None
    if to not in _TASK_NAMES:
        hint = (
            " (an HF metadata.jsonl must sit at or above the images: hspnet export-labels TAGS --to hf --only "
            f"{out} -o IMAGES/metadata.jsonl)"
            if to == "hf"
            else ""
        )
        raise UserError(f"--to must be one of {', '.join(_TASK_NAMES)}, got '{to}'{hint}")
    return out.with_name(_TASK_NAMES[to].format(stem=out.stem))
