"""The ``hspnet tag --format parquet`` branch of the tag command (kept apart so tag_cmd stays thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hspnet_cli.core.console import err_console, print_json, say


def tag_parquet(source: str, out: Path, model_args: dict[str, Any], options: dict[str, Any], as_json: bool) -> None:
    """Build the scorer, tag SOURCE into the Parquet folder ``out``, print the summary."""
    from hspnet_cli.cluster.source_run import tag_source
    from hspnet_cli.commands.tag_report import say_accounting
    from hspnet_cli.core.locks import output_lock
    from hspnet_cli.scoring.scorer import choose_scorer
    from hspnet_cli.sources import parse_storage_options
    from hspnet_cli.tagging.run import tags_out_path

    options = dict(options)
    options["storage_options"] = parse_storage_options(options.get("storage_options"))
    if options["engine"] == "ray" and str(model_args.get("device")) == "auto":
        model_args = {**model_args, "device": "cpu"}  # the driver only fingerprints; actors pick their device
    try:
        with output_lock(tags_out_path(out, options.get("shard")), "tags folder"):
            scorer = choose_scorer(**model_args)
            summary = tag_source(source, out, scorer, scorer_args=model_args, **options)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to continue where it stopped")
        raise typer.Exit(130) from None
    extra = {
        "failures_by_reason": summary.failures_by_reason,
        "blocks": summary.blocks,
        "engine_timings": summary.engine_timings,
    }
    if as_json:
        print_json({**summary.to_dict(), **extra, "model": scorer.description, "engine": options["engine"]})
    elif summary.already_complete:
        say(
            f"[green]already complete[/]: {out} has {summary.rows} tagged images, {summary.failed} failed; nothing "
            "to do (--overwrite to redo)"
        )
    else:
        colour = "yellow" if summary.failed else "green"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1]))
        say(
            f"[{colour}]tagged[/] {summary.rows} of {summary.items} images, {summary.failed} failed"
            + (f" ({reasons}; see {summary.outputs['failed']})" if summary.failed else "")
            + f"; {summary.blocks['done_now']} of {summary.blocks['total']} parts written now; "
            f"{summary.images_per_second:,.1f} img/s; wrote {out}"
        )
    if not as_json:
        say_accounting(summary)
    if summary.blocks["missing"] and summary.shard[1] == 1:
        raise typer.Exit(1)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
