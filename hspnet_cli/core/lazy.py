"""Lazy public names for a room's ``__init__``: the room declares every public name and the
module that defines it, and a name's module is imported only when the name is first used, so
importing a room (and ``hspnet --help``) never loads torch, faiss or open_clip by the way."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` for ``package``.

    Args:
        package: The room's module name (its ``__name__``).
        exports: Public name -> the room's module (relative name) that defines it.

    Returns:
        ``(__all__, __getattr__)`` to assign at the room's top level.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(exports), __getattr__
