"""The ``hspnet`` command line: thin Typer commands over importable functions.

Each command parses options and calls a plain function from the package; nothing here holds
logic a user could not call from Python. torch, open_clip and faiss are imported inside the
commands that need them, so ``hspnet --help`` stays instant.

A :class:`~hspnet_cli.core.errors.UserError` anywhere below becomes one red line on stderr and
exit status 2; other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import logging
from typing import Optional

import typer

from hspnet_cli import __version__
from hspnet_cli.commands import (
    annotate_cmd,
    audit_cmd,
    dedup_cmd,
    demo_cmd,
    eval_cmd,
    export_cmd,
    index_cmd,
    labels_cmd,
    search_cmd,
    select_cmd,
    split_cmd,
    tag_cmd,
    taxonomy_cmd,
    train_cmd,
)
from hspnet_cli.commands.options import App, HelpGroup
from hspnet_cli.core.console import err_console, setup_logging
from hspnet_cli.core.errors import UserError


class _Root(HelpGroup):
    """Root command group that turns user errors into one-line messages."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except UserError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = App(
    cls=_Root,
    name="hspnet",
    help="Turn cheap labels into multi-label image taggers (HSPNet: hierarchical prompt learning on CLIP).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(taxonomy_cmd.app, name="taxonomy")
app.add_typer(demo_cmd.app, name="demo")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hspnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and requested output."),
) -> None:
    """hspnet: taxonomies, weak-label splits, HSPNet training, evaluation and batch tagging."""
    setup_logging(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING, quiet=quiet)


app.command("split")(split_cmd.split)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.eval_command)
app.command("calibrate")(eval_cmd.calibrate_command)
app.command("export")(export_cmd.export)
app.command("tag")(tag_cmd.tag)
app.command("search")(search_cmd.search)
app.add_typer(index_cmd.app, name="index")
app.command("export-labels")(labels_cmd.export_labels)
app.command("annotate")(annotate_cmd.annotate)
app.command("select")(select_cmd.select)
app.command("dedup")(dedup_cmd.dedup)
app.command("audit")(audit_cmd.audit)


if __name__ == "__main__":  # pragma: no cover
    app()
