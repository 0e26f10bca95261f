"""Options every command spells the same way, defined once; deprecated spellings; help without ``<bool>``.

The vocabulary:

* ``--checkpoint PATH``: a trained hspnet model, whatever its file kind (a run folder, a training
  checkpoint or an ``hspnet export``; :func:`hspnet_cli.scoring.model_file.file_kind` tells them apart).
* ``--clip-model NAME`` / ``--pretrained TAG``: an open_clip architecture and its weights.
* ``--zero-shot`` + ``--taxonomy``: plain CLIP prompts for a taxonomy's labels.
* ``--device``, ``--json``.

Old spellings (``--model``, ``--suggest``, a positional checkpoint) stay for one release (0.1.x) as
hidden parameters: :func:`deprecated` folds one into its new option and prints one line on stderr.

Typer's rich help prints a type column for every option, ``<bool>`` included for flags (they take
no value); :class:`HelpCommand` and :class:`HelpGroup` leave the column empty for flags and keep
hidden positionals out of the usage line. :class:`App` is a Typer app whose commands use them.
"""

from __future__ import annotations

from typing import Any, Optional, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from hspnet_cli.core.console import err_console
from hspnet_cli.core.errors import UserError

T = TypeVar("T")

# One sentence per idea, reused in the help of every command that has the option.
CHECKPOINT_HELP = "Trained model: a run folder (its best.ckpt), a training checkpoint or an hspnet export."
DEVICE_HELP = "auto, cpu or cuda[:N]."


def checkpoint(help: str = CHECKPOINT_HELP) -> Any:
    """``--checkpoint PATH``: a trained model (run folder, training checkpoint or export)."""
    return typer.Option(None, "--checkpoint", help=help)


def clip_model(default: Optional[str] = "RN50", help: str = "open_clip model for --zero-shot.") -> Any:
    """``--clip-model NAME``: an open_clip architecture (``RN50``, ``ViT-B-32``, ``hspnet-tiny``...)."""
    return typer.Option(default, "--clip-model", help=help)


def pretrained(default: Optional[str] = "openai", help: str = "Tag, file or none, for --zero-shot.") -> Any:
    """``--pretrained TAG``: open_clip weights (a tag, a checkpoint file, or ``none`` for random)."""
    return typer.Option(default, "--pretrained", help=help)


def zero_shot(help: str = "Plain CLIP prompts instead of a trained model (needs --taxonomy).") -> Any:
    """``--zero-shot``: score with plain CLIP prompts for ``--taxonomy``'s labels."""
    return typer.Option(False, "--zero-shot", help=help)


def taxonomy(
    help: str = "Labels for --zero-shot; with --checkpoint: the model's labels, whose groups are used.",
    required: bool = False,
) -> Any:
    """``--taxonomy / -t NAME|FILE``: a built-in taxonomy name or a taxonomy YAML."""
    return typer.Option(... if required else None, "--taxonomy", "-t", help=help)


def device(default: str = "auto", help: str = DEVICE_HELP) -> Any:
    """``--device``: ``auto``, ``cpu`` or ``cuda[:N]``."""
    return typer.Option(default, "--device", help=help)


def as_json(help: str = "Print the result as JSON on stdout.") -> Any:
    """``--json``: machine-readable output on stdout (progress and warnings stay on stderr)."""
    return typer.Option(False, "--json", help=help)


def overwrite(help: str = "Replace earlier outputs.") -> Any:
    """``--overwrite``: replace what an earlier run wrote."""
    return typer.Option(False, "--overwrite", help=help)


# Deprecated spellings: hidden from --help, still parsed (one release).


def old_option(flag: str, default: Any = None) -> Any:
    """A deprecated option spelling, hidden from ``--help`` (fold it in with :func:`deprecated`)."""
    return typer.Option(default, flag, hidden=True)


def old_checkpoint_argument() -> Any:
    """The deprecated positional checkpoint of ``eval``, ``calibrate`` and ``export``."""
    return typer.Argument(None, hidden=True, metavar="CHECKPOINT")


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr saying that ``old`` is deprecated and what to write instead."""
    # Printed under --quiet too: it is addressed to whoever maintains the script that runs quietly.
    err_console.print(f"[yellow]warning:[/] {old} is deprecated; use {new}", highlight=False, soft_wrap=True)


def deprecated(
    new_value: Optional[T], old_value: Optional[T], *, old: str, new: str, new_default: Optional[T] = None
) -> Optional[T]:
    """The value of option ``new`` once its deprecated spelling ``old`` is folded in.

    Args:
        new_value: What ``new`` parsed to.
        old_value: What ``old`` parsed to (None: not given).
        old: The deprecated spelling, for messages (``--suggest``, ``a positional CHECKPOINT``).
        new: The spelling to use instead (``--checkpoint``).
        new_default: ``new``'s default, to tell "not given" from "given" when it is not None.

    Raises:
        UserError: Both spellings were given with different values.
    """
    if old_value is None:
        return new_value
    warn_deprecated(old, new)
    if new_value is not None and new_value != new_default and new_value != old_value:
        raise UserError(f"give {new} once ({old} is its old spelling): got {new_value} and {old_value}")
    return old_value


# Help output: no type shown for flags, no hidden positional in the usage line.


def _help_params(params: list[Any]) -> list[Any]:
    for param in params:
        # A flag takes no value; an empty metavar leaves the type column empty instead of "<bool>".
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class HelpCommand(TyperCommand):
    """A Typer command whose help shows no ``<bool>`` for flags and no hidden positional."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        return _help_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx):  # type: ignore[no-untyped-def]
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class HelpGroup(TyperGroup):
    """A Typer group whose own options show no ``<bool>`` for flags."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        return _help_params(super().get_params(ctx))


class App(typer.Typer):
    """``typer.Typer`` whose groups are :class:`HelpGroup` and commands :class:`HelpCommand` by default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("cls", HelpCommand)
        return super().command(*args, **kwargs)
