"""Using a trained model: the scorer (checkpoint, export or zero-shot CLIP -> logits), writing
exports, reading model files and thresholds files. Never imports training."""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this room that defines it (imported on first use, so
# importing the room stays cheap: nothing heavy loads until a name is used).
_EXPORTS = {
    "choose_scorer": "scorer",
    "describe": "scorer",
    "export_model": "export",
    "ExportedScorer": "scorer",
    "file_kind": "model_file",
    "FORMATS": "export",
    "from_checkpoint": "scorer",
    "from_exported": "scorer",
    "load_scorer": "scorer",
    "load_thresholds": "thresholds",
    "open_scorer": "scorer",
    "read_export": "model_file",
    "Scorer": "scorer",
    "sidecar_path": "model_file",
    "write_thresholds": "thresholds",
    "zero_shot": "scorer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
