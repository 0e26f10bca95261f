"""The model: CLIP loading (``clip_models``), HSPNet itself, its text side and graphs, the one
preprocessing definition, image sizes, and the checkpoint format that carries it all."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
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
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
