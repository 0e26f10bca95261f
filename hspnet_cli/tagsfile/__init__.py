"""The tags format, in one room: what ``hspnet tag`` writes (``writer``; ``parquet`` for Parquet
folders), how every later command reads it back (``reader``), the text escaping of names and paths
in it (``escape``), and complete outputs made without a model (``factory``)."""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this room that defines it (imported on first use, so
# importing the room stays cheap: nothing heavy loads until a name is used).
_EXPORTS = {
    "CSV_HEADER": "writer",
    "escape": "escape",
    "join_list": "escape",
    "MANIFEST_FORMAT": "writer",
    "OutputPaths": "writer",
    "read_failures": "writer",
    "read_tags_output": "reader",
    "split_list": "escape",
    "TagsOutput": "reader",
    "TagWriter": "writer",
    "unescape": "escape",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
