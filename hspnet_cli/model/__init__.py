"""The model: CLIP loading (``clip_models``), HSPNet itself, its text side and graphs, the one
preprocessing definition, image sizes, and the checkpoint format that carries it all."""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this room that defines it (imported on first use, so
# importing the room stays cheap: nothing heavy loads until a name is used).
_EXPORTS = {
    "build_model": "hspnet",
    "build_transform": "preprocess",
    "checkpoint_config": "checkpoint",
    "checkpoint_payload": "checkpoint",
    "checkpoint_taxonomy": "checkpoint",
    "ClipModel": "clip_models",
    "cosine_logits": "hspnet",
    "encode_texts": "clip_models",
    "fit_image_size": "image_size",
    "HSPNet": "hspnet",
    "load_checkpoint": "checkpoint",
    "load_clip": "clip_models",
    "model_from_checkpoint": "checkpoint",
    "model_image_size": "image_size",
    "Preprocessing": "preprocess",
    "save_checkpoint": "checkpoint",
    "visual_image_size": "clip_models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
