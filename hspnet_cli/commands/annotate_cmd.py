"""``hspnet annotate``: a local web page to name one label per image, written to a durable log."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Optional

import typer

from hspnet_cli.commands import options as opt
from hspnet_cli.core.console import err_console, print_json, say


def _announce(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(info)  # one JSON document on stdout: scripts read the URL from it
    else:
        done = f"{info['labelled']} of {info['total']} images labelled" + (
            f", {info['skipped']} skipped" if info["skipped"] else ""
        )
        say(f"[bold]hspnet annotate[/] {done}; writing {info['labels_log']}")
        say(f"suggestions: {info['suggester'] or 'none (labels shown by group)'}")
        for reason, count in (info.get("left_out") or {}).items():
            say(f"left out {count} image(s): {reason.strip('()')} (rename them to include them)")
        say(f"open [bold cyan]{info['url']}[/] (Ctrl-C stops; answers are saved as they are given)", soft_wrap=True)
    if info["remote"]:
        err_console.print(
            f"[bold yellow]warning:[/] listening on {info['host']}, reachable from other machines: "
            "the token is the only protection; anyone with the URL can see every image and label",
            soft_wrap=True,
        )
    import sys

    sys.stdout.flush()


def annotate(
    images_dir: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    taxonomy: str = opt.taxonomy("Labels and groups to choose from (built-in name or YAML).", required=True),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Labels log (JSON Lines) to write; an existing log is continued."
    ),
    checkpoint: Optional[Path] = opt.checkpoint(
        "Trained model (run folder, training checkpoint or export) whose top labels are offered as buttons."
    ),
    zero_shot: bool = opt.zero_shot("Suggest with plain CLIP prompts."),
    clip_model: str = opt.clip_model(),
    pretrained: str = opt.pretrained(),
    order: Optional[Path] = typer.Option(
        None,
        "--order",
        help="List file (one relative path a line, e.g. from hspnet select): these images first, in this order.",
    ),
    only_listed: bool = typer.Option(False, "--only-listed", help="With --order: annotate only the listed images."),
    exclude: list[Path] = typer.Option(
        [],
        "--exclude",
        "-x",
        help="List file of images never to show (e.g. hspnet dedup's STEM.exclude.txt); wins over --order. Repeatable.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a --host other machines can reach (the token is then the only protection)."
    ),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
    token: Optional[str] = typer.Option(None, "--token", help="Session token (default: random, printed)."),
    annotator: Optional[str] = typer.Option(
        None, "--annotator", help="Name written with each answer (default: your login; the page can change it)."
    ),
    top_k: int = typer.Option(9, "--top-k", help="Suggestions shown as buttons (keys 1-9)."),
    max_side: int = typer.Option(1024, "--max-side", help="Longest side of the images sent to the browser."),
    lease_seconds: float = typer.Option(
        300.0, "--lease-seconds", help="Seconds an image stays reserved for a tab that stopped answering."
    ),
    device: str = opt.device(help="Device of the suggester: auto, cpu or cuda[:N]."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    as_json: bool = opt.as_json("Print the URL and counts as JSON on stdout."),
    old_suggest: Optional[Path] = opt.old_option("--suggest"),
) -> None:
    """Serve a page to label IMAGES_DIR one positive per image; answers go to --out as they are given."""
    from hspnet_cli.annotate.run import AnnotateOptions, serve
    from hspnet_cli.scoring.scorer import choose_scorer
    from hspnet_cli.taxonomy import load_taxonomy

    checkpoint = opt.deprecated(checkpoint, old_suggest, old="--suggest", new="--checkpoint")
    scorer = choose_scorer(
        checkpoint,
        zero_shot=zero_shot,
        taxonomy=taxonomy,
        clip_model=clip_model,
        pretrained=pretrained,
        device=device,
        required=False,
    )
    tax = scorer.taxonomy if scorer is not None else load_taxonomy(taxonomy)
    options = AnnotateOptions(
        order=order,
        only_listed=only_listed,
        exclude=tuple(exclude),
        host=host,
        port=port,
        token=token,
        allow_remote=allow_remote,
        annotator=annotator or _login(),
        top_k=top_k,
        max_side=max_side,
        lease_seconds=lease_seconds,
        open_browser=open_browser,
    )
    final = serve(images_dir, tax, out, scorer, options, on_ready=lambda info: _announce(info, as_json))
    if not as_json:
        say(
            f"stopped: {final['labelled']} of {final['total']} labelled, median "
            f"{final['median_seconds'] if final['median_seconds'] is not None else '-'} s per image; {out}"
        )


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"
