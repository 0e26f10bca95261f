"""``hspnet export-labels``: tags as pre-annotations for Label Studio, CVAT, Hugging Face or FiftyOne."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import err_console, is_quiet, print_json, say


def export_labels(
    tags: Path = typer.Argument(
        ..., help="tags.csv / tags.jsonl of hspnet tag or hspnet index merge (with its .manifest.json and .emb.f32)."
    ),
    to: str = typer.Option(..., "--to", help="label-studio | cvat | hf | fiftyone."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="label-studio: tasks JSON (the labeling config goes "
        "beside it); cvat: annotations XML; hf: metadata.jsonl at or above the images; "
        "fiftyone: a folder.",
    ),
    url_prefix: Optional[str] = typer.Option(
        None,
        "--url-prefix",
        help="Reference images as PREFIX + path: https://host/photos/, s3://bucket/photos/, gs://bucket/...",
    ),
    absolute: bool = typer.Option(False, "--absolute", help="Reference images by absolute local path."),
    local_files_root: Optional[Path] = typer.Option(
        None,
        "--local-files-root",
        help="label-studio: serve "
        "images through Label Studio's local files, paths relative to "
        "its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the images folder's "
        "parent).",
    ),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder (default: the tag run's)."),
    no_sizes: bool = typer.Option(
        False, "--no-image-sizes", help="cvat: do not read width/height from the image headers."
    ),
    overwrite: bool = opt.overwrite("Replace existing output files."),
    only: Optional[Path] = typer.Option(
        None, "--only", help="A list file (e.g. what hspnet select wrote): only these images."
    ),
    as_json: bool = opt.as_json("Print the summary as JSON."),
) -> None:
    """Write tags as pre-annotations a labeling tool imports (reviewers see them pre-ticked)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from hspnet_cli.labeltools import export_labels as run_export

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=is_quiet() or as_json,
    )

    def rows_bar(total: int) -> Callable[[int], None]:
        task = bar.add_task(f"export-labels --to {to}", total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        summary = run_export(
            tags,
            to,
            out,
            url_prefix=url_prefix,
            absolute=absolute,
            local_files_root=local_files_root,
            images_dir=images,
            image_sizes=not no_sizes,
            overwrite=overwrite,
            only=only,
            progress=rows_bar,
        )
    if summary["not_in_tags"]:
        err_console.print(
            f"[yellow]warning:[/] {summary['not_in_tags']} image(s) of {escape(str(only))} are not in "
            f"{escape(str(tags))}; was the list made from this tag output?"
        )
    if as_json:
        print_json(summary)
        return
    table = Table(title=escape(f"export-labels --to {to}"))
    table.add_column("fact")
    table.add_column("value")
    for key in ("rows", "tags", "untagged", "image_refs", "model_version", "seconds"):
        table.add_row(key, escape(str(summary[key])))
    for role, path in summary["files"].items():
        table.add_row(f"file: {role}", escape(path))
    say(table)
    say(escape(f"pre-annotations cut at: {summary['thresholds']}"))
    if summary.get("serve"):
        say(
            f"serve the images with: {escape(summary['serve'])}, and add a Local Storage with path "
            f"{escape(summary['local_storage'])} to the project",
            soft_wrap=True,
        )
