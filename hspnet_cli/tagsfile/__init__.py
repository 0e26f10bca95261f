"""The tags format, in one room: what ``hspnet tag`` writes (``writer``; ``parquet`` for Parquet
folders), how every later command reads it back (``reader``), the text escaping of names and paths
in it (``escape``), and complete outputs made without a model (``factory``)."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
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
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
