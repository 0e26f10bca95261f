"""Using a trained model: the scorer (checkpoint, export or zero-shot CLIP -> logits), writing
exports, reading model files and thresholds files. Never imports training."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
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
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
