"""``hspnet dedup``: near-duplicate groups from hspnet's image embeddings (see :mod:`hspnet_cli.dedup`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from hspnet_cli.core.console import err_console, print_json, say


def dedup(
    source: Path = typer.Argument(
        ...,
        metavar="TAGS_OR_INDEX",
        help="tags.csv / tags.jsonl of hspnet tag or "
        "index merge (with its embeddings), or an index of hspnet index build.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="dups.csv to write (group,key,keep,similarity,pixels); "
        "STEM.exclude.txt (the non-keepers) and STEM.dedup.json go beside it.",
    ),
    threshold: float = typer.Option(
        0.90,
        "--threshold",
        help="Cosine similarity at or above which two images "
        "are near-duplicates (default measured on the demo world; see docs/quality.md "
        "for choosing one for your model).",
    ),
    neighbors: int = typer.Option(10, "--neighbors", help="Nearest images searched per image."),
    nprobe: Optional[int] = typer.Option(
        None, "--nprobe", help="IVF lists scanned per image (default: the index's own, or 8)."
    ),
    keeper: str = typer.Option(
        "pixels", "--keeper", help="pixels: most pixels (image header), then earliest path; path: earliest path."
    ),
    whiten: bool = typer.Option(
        True,
        "--whiten/--no-whiten",
        help="Compare PCA-whitened embeddings (fitted on this collection; default) or the raw ones.",
    ),
    to: Optional[str] = typer.Option(
        None,
        "--to",
        help="label-studio: also write STEM.tasks.json, each non-keeper beside its keeper with 'duplicate' pre-ticked.",
    ),
    url_prefix: Optional[str] = typer.Option(None, "--url-prefix", help="--to: reference images as PREFIX + path."),
    absolute: bool = typer.Option(False, "--absolute", help="--to: reference images by absolute local path."),
    local_files_root: Optional[Path] = typer.Option(
        None, "--local-files-root", help="--to: Label Studio's local files document root (default: /)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the IVF training sample (large inputs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (STEM.dedup.json) on stdout."),
) -> None:
    """Group near-duplicate images and keep one of each group; the rest go to a list to --exclude."""
    from hspnet_cli.core.progress import epoch_progress
    from hspnet_cli.dedup import DedupOptions, run_dedup

    options = DedupOptions(
        threshold=threshold,
        neighbors=neighbors,
        nprobe=nprobe,
        keeper=keeper.strip().lower(),
        whiten=whiten,
        to=to,
        url_prefix=url_prefix,
        absolute=absolute,
        local_files_root=None if local_files_root is None else str(local_files_root),
        seed=seed,
    )
    facts = run_dedup(source, out, options, progress=None if as_json else epoch_progress).facts
    if as_json:
        print_json(facts)
        return
    table = Table(title=escape(f"hspnet dedup {source} (threshold {threshold})"))
    table.add_column("fact")
    table.add_column("value")
    for key in ("images", "groups", "in_groups", "non_keepers", "largest_group", "keeper_rule", "seconds"):
        table.add_row(key, escape(str(facts[key])))
    table.add_row("index", escape(f"{facts['index']['factory']} (nprobe {facts['index']['nprobe']})"))
    for role, path in facts["files"].items():
        table.add_row(f"file: {role}", escape(path))
    say(table)
    if facts.get("warning"):
        err_console.print(f"[yellow]warning:[/] {escape(facts['warning'])}", highlight=False, soft_wrap=True)
