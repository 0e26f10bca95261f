"""Reading model files: what a file is, and exports loaded back as an image encoder.

Scoring needs to tell a training checkpoint from an export (``ckpt`` or TorchScript) or an ONNX
file without loading weights, and to load an export back; writing exports lives in
:mod:`hspnet_cli.scoring.export`, which this module never imports.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hspnet_cli.core.errors import UserError

FORMAT = "hspnet-export"
FORMAT_VERSION = 1


def _private_vision_builder() -> Any:
    """open_clip's private image-tower builder, or None where this open_clip lacks it."""
    import open_clip.model as oc_model

    return getattr(oc_model, "_build_vision_tower", None)


def build_visual(spec: dict[str, Any], state: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    """Rebuild an image tower from :func:`vision_spec` and its weights (no text tower, no network)."""
    from hspnet_cli.model.clip_models import open_clip_module

    open_clip_module()
    import open_clip.model as oc_model

    build = _private_vision_builder()
    if build is not None:
        visual = build(spec["embed_dim"], dict(spec["vision_cfg"]), bool(spec["quick_gelu"]))
    else:
        # open_clip's helper is private and may go; its public CLIP class builds the same tower,
        # here beside a one-layer, two-token text tower that costs nothing.
        text_cfg = {"context_length": 2, "vocab_size": 2, "width": 8, "heads": 1, "layers": 1}
        visual = oc_model.CLIP(
            spec["embed_dim"], dict(spec["vision_cfg"]), text_cfg, quick_gelu=bool(spec["quick_gelu"])
        ).visual
    visual.load_state_dict(state)
    return visual.to(device).eval()


def sidecar_path(path: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.json``: labels, groups, thresholds, preprocessing."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def file_kind(path: str | Path) -> str:
    """What a model file is: ``checkpoint``, ``export``, ``torchscript``, ``onnx`` or ``unknown``.

    A run folder counts as a checkpoint (its ``best.ckpt``). Torch files are opened with
    ``mmap`` so that telling the kind does not read the weights.
    """
    path = Path(path)
    if path.is_dir():
        return "checkpoint"
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.split("/", 2)[1:2] == ["code"] for n in names):
            return "torchscript"
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - torch raises several unpickling error types
            return "unknown"
        fmt = data.get("format") if isinstance(data, dict) else None
        return {"hspnet-checkpoint": "checkpoint", FORMAT: "export"}.get(fmt, "unknown")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "unknown"


def read_export(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any], torch.Tensor]:
    """Load an export (``ckpt`` or ``torchscript``) -> (image encoder, facts, label features).

    The encoder maps images to raw features; facts are the sidecar / stored metadata.

    Raises:
        UserError: Not an export, a newer format, or a missing TorchScript sidecar.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "export":
        data = torch.load(path, map_location="cpu", weights_only=True)
        _check_version(path, data)
        visual = build_visual(data["vision"], data["visual"], device)
        return visual, data, data["label_features"].float().to(device)
    if kind == "torchscript":
        side = sidecar_path(path)
        if not side.is_file():
            raise UserError(f"{side}: sidecar not found; keep it beside the TorchScript model it describes")
        try:
            facts = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{side}: not a readable sidecar ({exc}); export the model again") from None
        _check_version(side, facts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(path), map_location=device).eval()
        return _ScriptedEncoder(module), facts, module.label_features.float().to(device)
    raise UserError(f"{path}: not an hspnet export (kind: {kind}); make one with hspnet export")


def _check_version(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not an hspnet export; make one with hspnet export")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path}: written by a newer hspnet ({data.get('package_version')}); upgrade hspnet")


class _ScriptedEncoder(nn.Module):
    """The ``encode`` method of a TorchScript export as a module (Scorer's image encoder)."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.encode(images)
