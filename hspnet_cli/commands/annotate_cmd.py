"""``hspnet annotate``: a local web page to name one label per image, written to a durable log."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Optional

import typer

from hspnet_cli.console import err_console, print_json, say
from hspnet_cli.errors import UserError


def _announce(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(info)  # one JSON document on stdout: scripts read the URL from it
    else:
        done = f"{info['labelled']} of {info['total']} images labelled" + (
            f", {info['skipped']} skipped" if info["skipped"] else "")
        say(f"[bold]hspnet annotate[/] {done}; writing {info['labels_log']}")
        say(f"suggestions: {info['suggester'] or 'none (labels shown by group)'}")
        say(f"open [bold cyan]{info['url']}[/] (Ctrl-C stops; answers are saved as they are given)",
            soft_wrap=True)
    if info["remote"]:
        err_console.print(f"[bold yellow]warning:[/] listening on {info['host']}, reachable from other machines: "
                          "the token is the only protection; anyone with the URL can see every image and label",
                          soft_wrap=True)
    import sys

    sys.stdout.flush()


def annotate(
    images_dir: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    taxonomy: str = typer.Option(..., "--taxonomy", "-t", help="Labels and groups to choose from (built-in name "
                                 "or YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Labels log (JSON Lines) to write; an existing log is "
                             "continued."),
    suggest: Optional[Path] = typer.Option(None, "--suggest", help="Checkpoint, run folder or export whose top "
                                           "labels are offered as buttons."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Suggest with plain CLIP prompts."),
    clip_model: str = typer.Option("RN50", "--clip-model", help="open_clip model for --zero-shot."),
    pretrained: str = typer.Option("openai", "--pretrained", help="Tag, file or none, for --zero-shot."),
    order: Optional[Path] = typer.Option(None, "--order", help="List file (one relative path a line, e.g. from "
                                         "hspnet select): these images first, in this order."),
    only_listed: bool = typer.Option(False, "--only-listed", help="With --order: annotate only the listed images."),
    exclude: list[Path] = typer.Option([], "--exclude", "-x", help="List file of images never to show (e.g. "
                                       "hspnet dedup's STEM.exclude.txt); wins over --order. Repeatable."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a --host other machines can reach "
                                      "(the token is then the only protection)."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
    token: Optional[str] = typer.Option(None, "--token", help="Session token (default: random, printed)."),
    annotator: Optional[str] = typer.Option(None, "--annotator", help="Name written with each answer (default: "
                                            "your login; the page can change it)."),
    top_k: int = typer.Option(9, "--top-k", help="Suggestions shown as buttons (keys 1-9)."),
    max_side: int = typer.Option(1024, "--max-side", help="Longest side of the images sent to the browser."),
    lease_seconds: float = typer.Option(300.0, "--lease-seconds", help="Seconds an image stays reserved for a tab "
                                        "that stopped answering."),
    device: str = typer.Option("auto", "--device", help="Device of the suggester: auto, cpu or cuda[:N]."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
    as_json: bool = typer.Option(False, "--json", help="Print the URL and counts as JSON on stdout."),
) -> None:
    """Serve a page to label IMAGES_DIR one positive per image; answers go to --out as they are given."""
    from hspnet_cli.annotate.run import AnnotateOptions, serve
    from hspnet_cli.taxonomy import load_taxonomy

    if suggest is not None and zero_shot:
        raise UserError("give at most one of --suggest CKPT and --zero-shot")
    tax = load_taxonomy(taxonomy)
    scorer = None
    if suggest is not None or zero_shot:
        from hspnet_cli.inference import open_scorer

        scorer = open_scorer(suggest, zero_shot_taxonomy=taxonomy if zero_shot else None,
                             taxonomy=None if zero_shot else taxonomy, clip_model=clip_model,
                             pretrained=pretrained, device=device)
        tax = scorer.taxonomy
    options = AnnotateOptions(order=order, only_listed=only_listed, exclude=tuple(exclude), host=host, port=port,
                              token=token,
                              allow_remote=allow_remote, annotator=annotator or _login(), top_k=top_k,
                              max_side=max_side, lease_seconds=lease_seconds, open_browser=open_browser)
    final = serve(images_dir, tax, out, scorer, options, on_ready=lambda info: _announce(info, as_json))
    if not as_json:
        say(f"stopped: {final['labelled']} of {final['total']} labelled, median "
            f"{final['median_seconds'] if final['median_seconds'] is not None else '-'} s per image; {out}")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"
