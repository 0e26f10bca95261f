"""``hspnet index build|add|merge``: FAISS indexes over the embeddings ``hspnet tag`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import print_json, say

app = opt.App(help="Build, grow and merge FAISS indexes of tagged images (for hspnet search).", no_args_is_help=True)

_FACTORY = typer.Option(
    None,
    "--factory",
    help="faiss factory string (e.g. 'IVF1024,Flat', 'IVF1024,PQ32'); "
    "default: Flat below 100k images, IVF{4 sqrt n},Flat below 2M, IVF{4 sqrt n},PQ{D/4}x8 above.",
)
_NPROBE = typer.Option(None, "--nprobe", help="Lists an IVF search visits (default: tuned to recall@10 >= 0.95).")
_SEED = typer.Option(0, "--seed", help="Seed of the training and recall samples.")
_JSON = opt.as_json("Print the index facts as JSON.")


def _report(facts: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(facts)
        return
    table = Table(title=f"{verb} {facts['index']}")
    table.add_column("fact")
    table.add_column("value")
    recall = "-" if facts["recall_at_10"] is None else f"{facts['recall_at_10']:.4f}"
    if facts.get("recall_queries"):
        recall += f" ({facts['recall_queries']} queries on {facts['recall_measured_on']:,} vectors)"
    elif facts.get("factory") == "Flat":
        recall += " (exact)"
    for key, value in (
        ("vectors", f"{facts['count']:,}"),
        ("dim", facts["embedding_dim"]),
        ("factory", f"{facts['factory']} ({facts.get('factory_rule', '')})"),
        ("search params", facts.get("search_params") or "-"),
        ("recall@10", recall),
        *((("layout", facts["layout"]),) if facts.get("layout") else ()),
        ("model", facts["model"]),
        ("images", facts["images_dir"]),
    ):
        table.add_row(key, str(value))
    say(table)


@app.command("build")
def build(
    tags: list[Path] = typer.Argument(
        ...,
        metavar="TAGS|SHARDS...",
        help="tags.csv or .jsonl of hspnet tag (with its .emb.f32 and "
        ".manifest.json); or a shard set: .npy files / folder / glob, a Parquet "
        "folder of hspnet tag --format parquet, or several tags files.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Index file to write (default: TAGS with .faiss)."),
    factory: Optional[str] = _FACTORY,
    nprobe: Optional[int] = _NPROBE,
    seed: int = _SEED,
    layout: Optional[str] = typer.Option(
        None,
        "--layout",
        help="Shard-set build: memory, ondisk (faiss on-disk "
        "inverted lists) or auto (disk when the codes pass 1/4 of RAM).",
    ),
    train_size: Optional[int] = typer.Option(
        None,
        "--train-size",
        help="Shard-set build: vectors in the training sample (default min(n, max(64 nlist, 20k), 1M)).",
    ),
    piece_rows: int = typer.Option(1_000_000, "--piece-rows", help="Shard-set build: vectors a resumable piece."),
    recall_queries: int = typer.Option(
        1000,
        "--recall-queries",
        help="Shard-set build: queries of the recall check (an exact scan of every shard; 0 skips it).",
    ),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted build of other shards/options."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep OUT.work (training and per-piece files)."),
    train_only: bool = typer.Option(
        False, "--train-only", help="Shard-set build: plan and train, then stop (before --pieces workers)."
    ),
    pieces: Optional[str] = typer.Option(
        None,
        "--pieces",
        help="Shard-set build: i/N, add only pieces p with "
        "p %% N == i, then stop; run N side by side, then the plain command.",
    ),
    as_json: bool = _JSON,
) -> None:
    """Build an inner-product index over image embeddings; reports recall@10. One tags file: the
    size rule's index in RAM. A shard set (or --layout): trained on a sample, added piece by piece,
    resumable, on disk when large."""
    from hspnet_cli.index.scale_build import is_shard_set

    if not is_shard_set(tags, layout or ("ondisk" if train_only or pieces else None)):
        from hspnet_cli.index.build import build_index

        _report(build_index(tags[0], out, factory=factory, nprobe=nprobe, seed=seed), as_json, "built")
        return
    from hspnet_cli.index.scale_build import build_sharded, default_out

    facts = build_sharded(
        tags,
        out or default_out(tags),
        factory=factory,
        nprobe=nprobe,
        seed=seed,
        recall_queries=recall_queries,
        layout=layout or "auto",
        train_size=train_size,
        piece_rows=piece_rows,
        restart=restart,
        keep_work=keep_work,
        train_only=train_only,
        pieces=pieces,
    )
    if facts.get("stage"):  # a step of a shared build: nothing to report as an index
        if as_json:
            print_json(facts)
        else:
            say(f"{facts['stage']} step done: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "stage"))
        return
    _report(facts, as_json, "built")


@app.command("add")
def add(
    index: Path = typer.Argument(..., help="Index of hspnet index build."),
    tags: Path = typer.Argument(..., help="tags.csv of the new images (hspnet tag output)."),
    force: bool = typer.Option(False, "--force", help="Add embeddings of a different model description."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Leave out (and count) images the index has already, instead of refusing."
    ),
    as_json: bool = _JSON,
) -> None:
    """Append newly tagged images to an index; existing ids and paths stay as they are."""
    from hspnet_cli.index.build import add_to_index

    facts = add_to_index(index, tags, force=force, skip_existing=skip_existing)
    _report(facts, as_json, "updated")
    if not as_json:
        say(
            f"added {facts['added']:,} image(s)"
            + (f", skipped {facts['skipped']:,} already indexed" if facts["skipped"] else "")
        )
        if facts.get("root_moved_from"):
            say(
                f"[yellow]the index's root moved[/] from {facts['root_moved_from']} to {facts['images_dir']} (the "
                "common folder of both batches): listed paths now start below it; --like also takes a path "
                "relative to the folder a batch was tagged in"
            )
        if facts.get("factory") != "Flat":
            say(f"[dim]recall@10 was measured at build time on {facts['recall_measured_on']:,} vectors[/]")


@app.command("merge")
def merge(
    out: Path = typer.Argument(..., help="Merged tags file to write (with .emb.f32, .failed.csv and .manifest.json)."),
    shards: list[Path] = typer.Argument(..., help="Shard tags files of hspnet tag (one command, --shard i/N)."),
    index: Optional[Path] = typer.Option(None, "--index", help="Index to write (default: OUT with .faiss)."),
    factory: Optional[str] = _FACTORY,
    nprobe: Optional[int] = _NPROBE,
    seed: int = _SEED,
    as_json: bool = _JSON,
) -> None:
    """Join shard outputs into one tags.csv (rows sorted by path) and build one index over it."""
    from hspnet_cli.index.merge import merge_shards

    facts = merge_shards(out, shards, index_out=index, factory=factory, nprobe=nprobe, seed=seed)
    _report(facts, as_json, "merged")
    if not as_json:
        say(f"merged {facts['shards']} shard(s) into {out}")
