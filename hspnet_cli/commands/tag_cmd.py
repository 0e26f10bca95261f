"""``hspnet tag``: tag a folder of images with an exported model, a checkpoint or zero-shot CLIP.

A thin command over :func:`hspnet_cli.tagging.run.tag_images`; file formats are documented in
:mod:`hspnet_cli.tagsfile.writer`. Exit status: 0 every image tagged, 1 some images could not be
read (listed in ``STEM.failed.csv``), 2 usage errors, 130 interrupted (rerun to continue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hspnet_cli.core.console import err_console, print_json, say
from hspnet_cli.core.errors import UserError


def build_scorer(model: Optional[Path], checkpoint: Optional[Path], zero_shot: bool, taxonomy: Optional[str],
                 clip_model: str, pretrained: str, device: str):  # type: ignore[no-untyped-def]
    """The scorer of exactly one of --model / --checkpoint / --zero-shot, on ``device``."""
    from hspnet_cli.scoring.scorer import open_scorer

    given = [name for name, on in (("--model", model is not None), ("--checkpoint", checkpoint is not None),
                                   ("--zero-shot", zero_shot)) if on]
    if len(given) != 1:
        raise UserError("give exactly one of --model EXPORTED, --checkpoint CKPT or --zero-shot --taxonomy T"
                        + (f" (got {' and '.join(given)})" if given else ""))
    if zero_shot and taxonomy is None:
        raise UserError("--zero-shot needs --taxonomy (the labels to tag with)")
    return open_scorer(model if model is not None else checkpoint,
                       zero_shot_taxonomy=taxonomy if zero_shot else None,
                       taxonomy=None if zero_shot else taxonomy, clip_model=clip_model, pretrained=pretrained,
                       device=device)


def _say_accounting(summary) -> None:  # type: ignore[no-untyped-def]
    """One line each: files that are not images (by extension), and what the decoders said."""
    # Names left out by the rule for names (core.names) are counted under '(name ...)' keys.
    names = {k: n for k, n in summary.skipped.items() if k.startswith("(name")}
    other = {k: n for k, n in summary.skipped.items() if k not in names}
    if other:
        top = sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{ext} {n:,}" for ext, n in top[:8]) + (", ..." if len(top) > 8 else "")
        say(f"skipped {sum(other.values()):,} file(s) that are not images Pillow opens: {shown}")
    for key, n in names.items():
        say(f"left out {n:,} file(s): {key.strip('()')} (rename them to include them)")
    if summary.decoder_messages:
        say(f"{summary.decoder_messages:,} decoder message(s) about {summary.decoder_images:,} image(s) in "
            f"{summary.outputs['decode_log']}")


def tag(
    images_dir: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Tags file to write (tags.csv or tags.jsonl); the embeddings, "
                             "failures, manifest and progress files are named from it."),
    model: Optional[Path] = typer.Option(None, "--model", help="An hspnet export (ckpt or TorchScript)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A training checkpoint or run folder."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Plain CLIP prompts (needs --taxonomy)."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", "-t", help="Labels for --zero-shot; with a model: "
                                           "same labels, its groups are used."),
    clip_model: str = typer.Option("RN50", "--clip-model", help="open_clip model for --zero-shot."),
    pretrained: str = typer.Option("openai", "--pretrained", help="Tag, file or none, for --zero-shot."),
    list_file: Optional[Path] = typer.Option(None, "--list", help="Tag only these paths (one a line, relative to "
                                             "IMAGES_DIR or absolute inside it), in this order."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One probability threshold for every "
                                              "label (default: the model's stored thresholds, else 0.5)."),
    thresholds: Optional[Path] = typer.Option(None, "--thresholds", help="Per-label thresholds JSON of hspnet "
                                              "calibrate."),
    top_k: int = typer.Option(0, "--top-k", help="At most this many tags per image (0: no cap)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv (path,tags,scores,groups) or jsonl (also every "
                            "label's probability)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(4, "--workers", help="DataLoader workers decoding images (0: in this process)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op CPU threads (default: "
                                          "OMP_NUM_THREADS if set, else usable cores minus --workers, at least 1)."),
    max_pixels: int = typer.Option(178_956_970, "--max-pixels", help="Refuse images whose header claims more "
                                   "pixels (decompression bombs)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/N: tag items with position % N == i; output "
                                        "names get .shard-i-of-N. Default: torchrun's RANK/WORLD_SIZE if set."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete earlier outputs and start over."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    decode: str = typer.Option("auto", "--decode", help="cpu: PIL decodes in the workers; gpu: JPEGs are decoded "
                               "on the model's device (nvJPEG on CUDA), other files by PIL; auto: gpu on CUDA."),
    decode_timeout: float = typer.Option(60.0, "--decode-timeout", help="Seconds one image may take to decode "
                                         "(PIL path) before it is skipped as failed; 0: no limit."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Tag every image under IMAGES_DIR; resumable (rerun the same command), with embeddings for search."""
    from hspnet_cli.core.locks import output_lock
    from hspnet_cli.tagging.run import tag_images, tags_out_path

    fmt = fmt.strip().lower()
    try:
        # Locked before the model loads, so a second writer fails at once (tag_images re-enters it).
        with output_lock(tags_out_path(out, shard), "tags file"):
            scorer = build_scorer(model, checkpoint, zero_shot, taxonomy, clip_model, pretrained, device)
            summary = tag_images(images_dir, out, scorer, list_file=list_file, threshold=threshold,
                                 thresholds=thresholds, top_k=top_k, fmt=fmt, batch_size=batch_size,
                                 workers=workers, max_pixels=max_pixels, shard=shard, overwrite=overwrite,
                                 decode=decode, decode_timeout=decode_timeout, threads=threads)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to continue where it stopped")
        raise typer.Exit(130) from None
    if as_json:
        print_json({**summary.to_dict(), "model": scorer.description})
    elif summary.already_complete:
        say(f"[green]already complete[/]: {summary.outputs['tags']} has {summary.rows} tagged images, "
            f"{summary.failed} failed; nothing to do (--overwrite to redo)")
    else:
        resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
        colour = "yellow" if summary.failed else "green"
        say(f"[{colour}]tagged[/] {summary.rows} of {summary.items} images{resumed}, [{colour}]{summary.failed} "
            f"failed[/]" + (f" (see {summary.outputs['failed']})" if summary.failed else "")
            + f"; {summary.images_per_second:,.1f} img/s; wrote {summary.outputs['tags']}")
    if not as_json:
        _say_accounting(summary)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
