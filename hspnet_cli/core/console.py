"""Shared rich consoles and logging set-up for user-facing output.

Results a script may consume go to stdout (``console``); progress, warnings and errors go to
stderr (``err_console``), so ``hspnet ... --json`` output can be piped cleanly.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

console = Console(soft_wrap=False)
err_console = Console(stderr=True)
_state = {"quiet": False}


def setup_logging(level: int = logging.WARNING, quiet: bool = False) -> None:
    """Route log records (ours and libraries') to stderr through rich, at ``level``."""
    _state["quiet"] = quiet
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, RichHandler):
            root.removeHandler(handler)
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    root.addHandler(handler)
    root.setLevel(level)


def is_quiet() -> bool:
    """True when the user asked for only errors and requested output (``--quiet``)."""
    return _state["quiet"]


def say(*objects: Any, **kwargs: Any) -> None:
    """Print human-readable output to stdout unless ``--quiet``."""
    if not _state["quiet"]:
        console.print(*objects, **kwargs)


def print_json(data: Any) -> None:
    """Print machine-readable JSON to stdout (always, even with ``--quiet``)."""
    console.out(json.dumps(data, indent=2, sort_keys=False, default=str), highlight=False)
