"""``tag_source``: tag any SOURCE (folder, URL prefix, tar shards) into a Parquet folder, with
the local engine or Ray (see :mod:`hspnet_cli.tagging.blocks` for blocks, resume and sharding)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources import open_source
from hspnet_cli.tagging.blocks import finish_run, plan_run, run_local
from hspnet_cli.tagging.run import TagSummary
from hspnet_cli.tagsfile.parquet import FAILED_DIR, MANIFEST_NAME, read_failed

ENGINES = ("local", "ray")


@dataclass
class BlockTagSummary(TagSummary):
    """A :class:`TagSummary` plus what the block engines add.

    Attributes:
        failures_by_reason: Failed images counted by reason (``not an image``, ``file not found``...).
        blocks: ``{"total", "done_before", "done_now", "missing"}`` part files.
        engine_timings: The Ray engine's ``connect_s``, ``first_rows_s``, ``total_s`` (empty locally).
    """

    failures_by_reason: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    engine_timings: dict[str, Any] = field(default_factory=dict)


def tag_source(
    source: str | Path,
    out: str | Path,
    scorer: Any,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    list_file: str | Path | None = None,
    storage_options: dict[str, Any] | None = None,
    threshold: float | None = None,
    thresholds: Any = None,
    top_k: int = 0,
    batch_size: int = 64,
    workers: int = 0,
    block_size: int = 1024,
    shard: Any = None,
    overwrite: bool = False,
    dtype: str = "float32",
    max_pixels: int = 178_956_970,
    decode_timeout: float = 60.0,
    progress: bool = True,
    ray_actors: int | None = None,
    scorer_args: dict[str, Any] | None = None,
    threads: int | None = None,
) -> BlockTagSummary:
    """Tag SOURCE into the Parquet folder ``out``; resumable, exactly once per image.

    Args:
        engine: ``local`` (this process, DataLoader workers) or ``ray`` (a Ray Data pipeline on
            the cluster at ``ray_address``; see :mod:`hspnet_cli.cluster`).
        scorer_args: How Ray actors rebuild ``scorer`` (the CLI's model options).
        Other args: as :func:`hspnet_cli.tagging.run.tag_images`, plus ``block_size`` (images
            per part file for folders and URLs; tar shards are one block each) and ``dtype``
            (embedding column: float32 or float16).

    Raises:
        UserError: Bad options, storage errors (one line naming the URL), other settings in ``out``.
    """
    from hspnet_cli.tagging.run import parse_shard

    if engine not in ENGINES:
        raise UserError(f"--engine must be local or ray; got '{engine}'")
    if batch_size < 1 or workers < 0:
        raise UserError("--batch-size must be >= 1 and --workers >= 0")
    src = open_source(source, list_file, storage_options)
    run = plan_run(
        src,
        out,
        scorer,
        threshold=threshold,
        thresholds=thresholds,
        top_k=top_k,
        block_size=block_size,
        shard=shard,
        overwrite=overwrite,
        dtype=dtype,
        max_pixels=max_pixels,
        decode_timeout=decode_timeout,
        engine=engine,
    )
    mine = sum(1 for b in run.blocks if b.index % parse_shard(shard)[1] == parse_shard(shard)[0])
    already = mine - len(run.todo)
    start = time.perf_counter()
    processed = 0
    if run.todo:
        if engine == "ray":
            from hspnet_cli.cluster import run_ray

            processed = run_ray(
                run,
                scorer,
                scorer_args or {},
                address=ray_address,
                batch_size=batch_size,
                actors=ray_actors,
                progress=progress,
            )
        else:
            processed = run_local(
                run, scorer, batch_size=batch_size, workers=workers, progress=progress, threads=threads
            )
    seconds = time.perf_counter() - start
    timings: dict[str, Any] = {}
    if engine == "ray" and run.todo:
        from hspnet_cli.cluster.ray_engine import LAST_TIMINGS

        timings = dict(LAST_TIMINGS)
    counts = finish_run(run)
    out_dir = Path(out)
    blocks = {
        "total": len(run.blocks),
        "done_before": already,
        "done_now": len(run.todo),
        "missing": counts["missing_blocks"],
    }
    summary = BlockTagSummary(
        items=counts["items"],
        rows=counts["rows"],
        failed=counts["failed"],
        resumed_from=counts["items"] - processed if already else 0,
        processed=processed,
        seconds=seconds,
        images_per_second=processed / seconds if seconds > 0 and processed else 0.0,
        outputs={"tags": out_dir, "manifest": out_dir / MANIFEST_NAME, "failed": out_dir / FAILED_DIR},
        failures=read_failed(out_dir),
        already_complete=not run.todo,
        shard=parse_shard(shard),
        skipped=dict(getattr(src, "skipped", {}) or {}),
        failures_by_reason=counts["failures_by_reason"],
        blocks=blocks,
        engine_timings=timings,
    )
    return summary
