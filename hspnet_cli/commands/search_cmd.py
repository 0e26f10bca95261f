"""``hspnet search``: the nearest indexed images to a text, an image or an indexed image."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import print_json, say


def search(
    index: Path = typer.Argument(..., help="Index of hspnet index build."),
    text: Optional[str] = typer.Option(
        None,
        "--text",
        help="Find images matching this text: a label name of the "
        "model uses its learned label feature, other text 'a photo of a {}.'.",
    ),
    image: Optional[Path] = typer.Option(None, "--image", help="Find images like this image file."),
    like: Optional[str] = typer.Option(None, "--like", help="Find images like this indexed image (its path)."),
    k: int = typer.Option(10, "--k", "-k", help="How many hits."),
    as_json: bool = opt.as_json("Print the hits as JSON."),
    copy_to: Optional[Path] = typer.Option(None, "--copy-to", help="Copy the hit images here, named <rank>_<name>."),
    checkpoint: Optional[Path] = opt.checkpoint(
        "Query model: run folder, training checkpoint or export (exports "
        "have no text tower: image queries only). Default: the index's."
    ),
    clip_model: Optional[str] = opt.clip_model(None, "Query with plain CLIP: open_clip model."),
    pretrained: Optional[str] = opt.pretrained(None, "With --clip-model: tag, file or none (default: openai)."),
    device: str = opt.device(help="auto, cpu or cuda[:N] (query encoding)."),
    label_match: bool = typer.Option(
        True,
        "--label-match/--no-label-match",
        help="A --text naming a label uses the label's feature (default), or not.",
    ),
    include_self: bool = typer.Option(
        False, "--include-self", help="With --like: keep the query image among the hits (left out by default)."
    ),
    overwrite: bool = opt.overwrite("With --copy-to: replace files already there (refused by default)."),
    old_model: Optional[Path] = opt.old_option("--model"),
) -> None:
    """Search an index by --text, --image or --like; print, --json, or --copy-to the top k."""
    from hspnet_cli.core.errors import UserError
    from hspnet_cli.index.search import copy_hits, run_search

    checkpoint = opt.deprecated(checkpoint, old_model, old="--model", new="--checkpoint")
    if pretrained is not None and clip_model is None:
        raise UserError("--pretrained goes with --clip-model")
    if clip_model is not None and pretrained is None:
        pretrained = "openai"
    dev = device
    if like is None:
        from hspnet_cli.core.device import resolve_device

        dev = str(resolve_device(device))
    idx, hits, described = run_search(
        index,
        text=text,
        image=image,
        like=like,
        k=k,
        model=checkpoint,
        clip_model=clip_model,
        pretrained=pretrained,
        device=dev,
        match_labels=label_match,
        include_self=include_self,
    )
    copied = copy_hits(hits, copy_to, overwrite=overwrite) if copy_to is not None else []
    if as_json:
        print_json(
            {
                "index": str(index),
                "query": described,
                "k": k,
                "hits": [h.to_dict() for h in hits],
                **({"copied": [str(p) for p in copied]} if copy_to is not None else {}),
            }
        )
        return
    # The query line is printed whole, not as the table's title (rich wraps a title to the table's width).
    say(f"{described} in {index} ({idx.index.ntotal:,} images)")
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("path")
    for h in hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", h.to_dict()["path"])
    say(table)
    if copy_to is not None:
        say(f"copied {len(copied)} file(s) to {copy_to}")
