"""``hspnet tag``: tag a folder of images with a trained model (``--checkpoint``) or zero-shot CLIP.

A thin command over :func:`hspnet_cli.tagging.run.tag_images`; file formats are documented in
:mod:`hspnet_cli.tagsfile.writer`. Exit status: 0 every image tagged, 1 some images could not be
read (listed in ``STEM.failed.csv``), 2 usage errors, 130 interrupted (rerun to continue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hspnet_cli.commands import options as opt
from hspnet_cli.commands.tag_report import say_accounting
from hspnet_cli.core.console import err_console, print_json, say
from hspnet_cli.core.errors import UserError


def tag(
    images_dir: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="Folder of images (searched recursively), an "
        "fsspec URL prefix (s3://bucket/prefix, gs://..., file://...) or webdataset tar "
        "shards (shards/{000000..000099}.tar, local or by URL).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Tags file to write (tags.csv or tags.jsonl; a folder with "
        "--format parquet); the embeddings, failures, manifest and progress files are named "
        "from it.",
    ),
    checkpoint: Optional[Path] = opt.checkpoint(),
    zero_shot: bool = opt.zero_shot(),
    taxonomy: Optional[str] = opt.taxonomy(),
    clip_model: str = opt.clip_model(),
    pretrained: str = opt.pretrained(),
    list_file: Optional[Path] = typer.Option(
        None,
        "--list",
        help="Tag only these paths (one a line, relative to IMAGES_DIR or absolute inside it), in this order.",
    ),
    threshold: Optional[float] = typer.Option(
        None,
        "--threshold",
        help="One probability threshold for every "
        "label (default: the model's stored thresholds, fitted in training on "
        "a labelled validation split, else 0.5).",
    ),
    thresholds: Optional[Path] = typer.Option(
        None, "--thresholds", help="Per-label thresholds JSON of hspnet calibrate."
    ),
    top_k: int = typer.Option(0, "--top-k", help="At most this many tags per image (0: no cap)."),
    fmt: str = typer.Option(
        "csv",
        "--format",
        "-f",
        help="csv (path,tags,scores,groups), jsonl (also every "
        "label's probability) or parquet (a folder of part files; needed for URL/shard sources "
        "and --engine ray).",
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local (this machine) or ray (a Ray Data pipeline; "
        "pip install 'hspnet-cli[ray]'); ray writes --format parquet.",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Ray cluster to join (host:port or auto; default: RAY_ADDRESS, else a local Ray)."
    ),
    ray_actors: Optional[int] = typer.Option(None, "--ray-actors", help="Model actors (default: one per GPU, else 1)."),
    storage_options: Optional[str] = typer.Option(
        None,
        "--storage-options",
        help="JSON object passed to the fsspec file system (e.g. '{\"anon\": true}'); never printed.",
    ),
    block_size: int = typer.Option(
        1024, "--block-size", help="Images per Parquet part file (folders and URL prefixes; a tar shard is one part)."
    ),
    embedding_dtype: str = typer.Option(
        "float32", "--embedding-dtype", help="Parquet embedding column: float32 or float16."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(4, "--workers", help="DataLoader workers decoding images (0: in this process)."),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        help="Intra-op CPU threads (default: OMP_NUM_THREADS if set, else usable cores minus --workers, at least 1).",
    ),
    max_pixels: int = typer.Option(
        178_956_970, "--max-pixels", help="Refuse images whose header claims more pixels (decompression bombs)."
    ),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="i/N: tag items with position % N == i; output "
        "names get .shard-i-of-N. Default: torchrun's RANK/WORLD_SIZE if set.",
    ),
    overwrite: bool = opt.overwrite("Delete earlier outputs and start over."),
    device: str = opt.device(),
    decode: str = typer.Option(
        "auto",
        "--decode",
        help="cpu: PIL decodes in the workers; gpu: JPEGs are decoded "
        "on the model's device (nvJPEG on CUDA), other files by PIL; auto: gpu on CUDA.",
    ),
    decode_timeout: float = typer.Option(
        60.0,
        "--decode-timeout",
        help="Seconds one image may take to decode (PIL path) before it is skipped as failed; 0: no limit.",
    ),
    as_json: bool = opt.as_json("Print the summary as JSON on stdout."),
    old_model: Optional[Path] = opt.old_option("--model"),
) -> None:
    """Tag every image of SOURCE (a folder, a URL prefix or tar shards); resumable (rerun the same command), with
    embeddings for search."""
    from hspnet_cli.core.locks import output_lock
    from hspnet_cli.scoring.scorer import choose_scorer
    from hspnet_cli.tagging.run import tag_images, tags_out_path

    checkpoint = opt.deprecated(checkpoint, old_model, old="--model", new="--checkpoint")
    fmt = fmt.strip().lower()
    from hspnet_cli.sources import is_plain_folder

    if fmt == "parquet" or engine != "local" or not is_plain_folder(images_dir):
        if fmt != "parquet":
            raise UserError(
                "URL prefixes, tar shards and --engine ray write a Parquet folder: add --format parquet "
                "and give --out a folder"
            )
        from hspnet_cli.commands.tag_parquet import tag_parquet

        tag_parquet(
            images_dir,
            out,
            dict(
                checkpoint=checkpoint,
                zero_shot=zero_shot,
                taxonomy=taxonomy,
                clip_model=clip_model,
                pretrained=pretrained,
                device=device,
            ),
            dict(
                engine=engine,
                ray_address=ray_address,
                ray_actors=ray_actors,
                list_file=list_file,
                storage_options=storage_options,
                threshold=threshold,
                thresholds=thresholds,
                top_k=top_k,
                batch_size=batch_size,
                workers=workers,
                block_size=block_size,
                shard=shard,
                overwrite=overwrite,
                dtype=embedding_dtype,
                max_pixels=max_pixels,
                decode_timeout=decode_timeout,
                threads=threads,
            ),
            as_json,
        )
        return
    try:
        # Locked before the model loads, so a second writer fails at once (tag_images re-enters it).
        with output_lock(tags_out_path(out, shard), "tags file"):
            scorer = choose_scorer(
                checkpoint,
                zero_shot=zero_shot,
                taxonomy=taxonomy,
                clip_model=clip_model,
                pretrained=pretrained,
                device=device,
            )
            summary = tag_images(
                images_dir,
                out,
                scorer,
                list_file=list_file,
                threshold=threshold,
                thresholds=thresholds,
                top_k=top_k,
                fmt=fmt,
                batch_size=batch_size,
                workers=workers,
                max_pixels=max_pixels,
                shard=shard,
                overwrite=overwrite,
                decode=decode,
                decode_timeout=decode_timeout,
                threads=threads,
            )
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to continue where it stopped")
        raise typer.Exit(130) from None
    if as_json:
        print_json({**summary.to_dict(), "model": scorer.description})
    elif summary.already_complete:
        say(
            f"[green]already complete[/]: {summary.outputs['tags']} has {summary.rows} tagged images, "
            f"{summary.failed} failed; nothing to do (--overwrite to redo)"
        )
    else:
        resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
        colour = "yellow" if summary.failed else "green"
        say(
            f"[{colour}]tagged[/] {summary.rows} of {summary.items} images{resumed}, [{colour}]{summary.failed} "
            f"failed[/]"
            + (f" (see {summary.outputs['failed']})" if summary.failed else "")
            + f"; {summary.images_per_second:,.1f} img/s; wrote {summary.outputs['tags']}"
        )
    if not as_json:
        source = summary.threshold_source
        if source.startswith("uncalibrated"):  # the whole advice is in the manifest; one line here
            source = "uncalibrated: 0.5 for every label; fit per-label ones with hspnet calibrate (docs/thresholds.md)"
        say(f"thresholds: {source}", soft_wrap=True)
        say_accounting(summary)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
