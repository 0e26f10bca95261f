"""``hspnet export``: a trained checkpoint -> a small inference model without the text tower.

After training, the label features T* are fixed (paper section 3.3): scoring an image needs
only the image tower and one matrix product, ``logits = scale * norm(f(x)) @ T*.T``. An export
keeps exactly that, plus what a user of the scores needs (labels, groups, thresholds, the
preprocessing), in one of three formats:

* ``ckpt``: a ``torch.save`` file of plain containers and tensors, read with
  ``torch.load(weights_only=True)``. The image tower is stored as its open_clip vision config
  plus its state dict and is rebuilt alone (open_clip's ``_build_vision_tower``, or its public
  ``CLIP`` class with a negligible text tower should that private helper go), so loading
  allocates no real text tower and reads nothing from the network.
* ``torchscript``: a traced module ``images (B, 3, S, S) -> logits (B, C)`` with T* baked in
  (method ``encode`` gives the raw image features), plus a sidecar ``<out>.json``.
* ``onnx``: the same logits graph for other runtimes (needs the ``onnx`` package), plus the
  sidecar.

Every export is checked before it is kept: the rebuilt or traced model must give the scores of
the source model on a random batch, else nothing is written.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from hspnet_cli import __version__
from hspnet_cli.errors import UserError
from hspnet_cli.io_utils import atomic_write, output_errors, write_text_atomic

FORMAT = "hspnet-export"
FORMAT_VERSION = 1
FORMATS = ("ckpt", "torchscript", "onnx")
# Scores of an export may differ from the source model's by float rounding only.
CHECK_ATOL = 1e-4


class LogitsHead(nn.Module):
    """Image tower + fixed label features: ``(B, 3, S, S)`` images -> ``(B, C)`` logits.

    The operations mirror :class:`hspnet_cli.inference.Scorer` exactly (normalise the float
    features, multiply by the scale, then by T*.T) so that scores match to the last bits.
    """

    def __init__(self, visual: nn.Module, label_features: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("label_features", F.normalize(label_features.float(), dim=-1))
        self.logit_scale = float(logit_scale)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) image features, (B, D)."""
        return self.visual(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(self.visual(images).float(), dim=-1)
        return self.logit_scale * emb @ self.label_features.T


def preprocessing_facts(image_size: int) -> dict[str, Any]:
    """The evaluation preprocessing of :func:`hspnet_cli.train.data.build_transform`, as data."""
    from hspnet_cli.train.data import CLIP_MEAN, CLIP_STD

    return {"resize": int(image_size), "resize_side": "shorter", "interpolation": "bicubic",
            "center_crop": int(image_size), "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "input": "RGB, scaled to [0, 1], then (x - mean) / std, channels first"}


def transform_from_preprocessing(pre: dict[str, Any]) -> Callable:
    """PIL image -> (3, S, S) tensor, from :func:`preprocessing_facts` (as stored in an export)."""
    from torchvision import transforms as T

    modes = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
             "nearest": T.InterpolationMode.NEAREST}
    return T.Compose([T.Resize(int(pre["resize"]), interpolation=modes[pre.get("interpolation", "bicubic")]),
                      T.CenterCrop(int(pre["center_crop"])), T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])


def vision_spec(model_name: str, visual: nn.Module) -> dict[str, Any]:
    """What rebuilds ``visual`` without the rest of CLIP: its open_clip vision config."""
    from hspnet_cli.clip_models import _open_clip, visual_image_size
    from open_clip.transformer import QuickGELU

    cfg = _open_clip().get_model_config(model_name)
    if not cfg or "vision_cfg" not in cfg or "embed_dim" not in cfg:
        raise UserError(f"model {model_name}: open_clip has no plain vision config for it, so it cannot be "
                        "exported; use the training checkpoint directly")
    vision_cfg = dict(cfg["vision_cfg"])
    # A tower trained at another --image-size has its positional embedding resampled: build for that side.
    vision_cfg["image_size"] = visual_image_size(visual)
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = False  # weights come from the export, never a download
    # OpenAI archives are loaded with QuickGELU whatever the config says: read it off the module.
    quick = bool(cfg.get("quick_gelu", False)) or any(isinstance(m, QuickGELU) for m in visual.modules())
    return {"model_name": model_name, "embed_dim": int(cfg["embed_dim"]), "vision_cfg": vision_cfg,
            "quick_gelu": quick}


def _private_vision_builder() -> Any:
    """open_clip's private image-tower builder, or None where this open_clip lacks it."""
    import open_clip.model as oc_model

    return getattr(oc_model, "_build_vision_tower", None)


def build_visual(spec: dict[str, Any], state: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    """Rebuild an image tower from :func:`vision_spec` and its weights (no text tower, no network)."""
    from hspnet_cli.clip_models import _open_clip

    _open_clip()
    import open_clip.model as oc_model

    build = _private_vision_builder()
    if build is not None:
        visual = build(spec["embed_dim"], dict(spec["vision_cfg"]), bool(spec["quick_gelu"]))
    else:
        # open_clip's helper is private and may go; its public CLIP class builds the same tower,
        # here beside a one-layer, two-token text tower that costs nothing.
        text_cfg = {"context_length": 2, "vocab_size": 2, "width": 8, "heads": 1, "layers": 1}
        visual = oc_model.CLIP(spec["embed_dim"], dict(spec["vision_cfg"]), text_cfg,
                               quick_gelu=bool(spec["quick_gelu"])).visual
    visual.load_state_dict(state)
    return visual.to(device).eval()


def _source(checkpoint: str | Path) -> dict[str, Any]:
    """Load a training checkpoint, naming what else the file is when it is not one."""
    from hspnet_cli.train.checkpoint import load_checkpoint

    try:
        return load_checkpoint(checkpoint)
    except UserError:
        kind = file_kind(checkpoint) if Path(checkpoint).is_file() else "unknown"
        if kind in ("export", "torchscript", "onnx"):
            raise UserError(f"{checkpoint}: is an exported model already; export takes a training checkpoint "
                            "(best.ckpt of hspnet train)") from None
        raise


def export_model(checkpoint: str | Path, out: str | Path, fmt: str = "ckpt", thresholds: str | Path | None = None,
                 device: str = "cpu") -> Path:
    """Export a training checkpoint holding the output's lock (:mod:`hspnet_cli.locks`); arguments:
    see :func:`_export_model`."""
    from hspnet_cli.locks import output_lock

    with output_lock(out, "export"):
        return _export_model(checkpoint, out, fmt, thresholds, device)


def _export_model(checkpoint: str | Path, out: str | Path, fmt: str = "ckpt", thresholds: str | Path | None = None,
                  device: str = "cpu") -> Path:
    """Export a training checkpoint as a small inference model (see module docstring).

    Args:
        checkpoint: ``best.ckpt`` / ``last.ckpt`` of ``hspnet train``, or its run folder.
        out: File to write (``torchscript`` and ``onnx`` also write ``<out>.json``).
        fmt: ``ckpt``, ``torchscript`` or ``onnx``.
        thresholds: Optional per-label thresholds JSON, carried into the export.
        device: Where the source model is rebuilt; exports are always written as CPU models.

    Returns:
        The written model file.

    Raises:
        UserError: Unknown format, unreadable checkpoint, bad thresholds, output over the input,
            or a missing optional dependency (onnx).
    """
    from hspnet_cli.train.batches import model_image_size
    from hspnet_cli.train.checkpoint import checkpoint_config, checkpoint_taxonomy, model_from_checkpoint

    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    out = Path(out)
    src = Path(checkpoint)
    if out.resolve() == src.resolve() or (src.is_dir() and out.resolve() == (src / "best.ckpt").resolve()):
        raise UserError(f"{out}: is the checkpoint being exported; choose another output file")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; --out takes the file to write (e.g. model.pt)")
    if fmt == "onnx":
        _require_onnx()
    data = _source(checkpoint)
    config = checkpoint_config(data)
    taxonomy = checkpoint_taxonomy(data)
    table = None
    if thresholds is not None:  # the file hspnet calibrate writes, checked against these labels
        from hspnet_cli.calibration import load_thresholds

        values = load_thresholds(thresholds, taxonomy)
        table = {name: float(v) for name, v in zip(taxonomy.label_names, values)}
    model = model_from_checkpoint(data, device=device)
    size = model_image_size(model, config)
    visual = model.visual.float().cpu().eval()
    head = LogitsHead(visual, data["label_features"].detach().cpu(), float(data["logit_scale"])).eval()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
            "source": str(checkpoint), "model_name": config.model.clip_model, "labels": taxonomy.label_names,
            "groups": {g: list(m) for g, m in taxonomy.groups.items()}, "taxonomy": taxonomy.to_dict(),
            "thresholds": table, "image_size": size, "preprocessing": preprocessing_facts(size),
            "logit_scale": head.logit_scale, "embed_dim": int(head.label_features.shape[1])}
    probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = head(probe)
    if fmt == "ckpt":
        spec = vision_spec(config.model.clip_model, visual)
        state = {k: v.detach().cpu().clone() for k, v in visual.state_dict().items()}
        with torch.no_grad():
            rebuilt = LogitsHead(build_visual(spec, state), head.label_features, head.logit_scale)(probe)
        _check(rebuilt, expected, "the rebuilt image tower")
        payload = {**meta, "kind": "ckpt", "vision": spec, "visual": state,
                   "label_features": head.label_features.clone(), "config": data["config"]}
        with atomic_write(out, "wb") as fh:
            torch.save(payload, fh)
        return out
    if fmt == "torchscript":
        traced = _trace(head, probe)
        with torch.no_grad():
            _check(traced(probe[:1]), expected[:1], "the TorchScript module")
        with atomic_write(out, "wb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            torch.jit.save(traced, fh)
    else:
        with output_errors(out, "export"):
            meta["onnx_checked_with"] = _write_onnx(head, probe, expected, out)
    meta["inputs"] = {"images": f"float32 (batch, 3, {size}, {size}), preprocessed as 'preprocessing' says"}
    meta["outputs"] = {"logits": "float32 (batch, labels) in 'labels' order; sigmoid gives probabilities"}
    write_text_atomic(sidecar_path(out), json.dumps({**meta, "kind": fmt}, indent=2) + "\n")
    return out


def sidecar_path(path: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.json``: labels, groups, thresholds, preprocessing."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _check(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    diff = float((got.float() - expected.float()).abs().max())
    if not diff <= CHECK_ATOL:
        raise RuntimeError(f"{what} scores differ from the source model's by {diff:.3g}; nothing was written")


def _trace(head: LogitsHead, probe: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace ``forward`` and ``encode``. The tracer's own re-trace check compares mangled class
    names and fails on open_clip towers; :func:`_check` compares outputs instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and shape-to-bool tracer warnings, checked below
        return torch.jit.trace_module(head, {"forward": probe, "encode": probe}, check_trace=False)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install onnx (and onnxruntime to run it); "
                        "or use --format torchscript") from None


def _write_onnx(head: LogitsHead, probe: torch.Tensor, expected: torch.Tensor, out: Path) -> str | None:
    """Export with torch's TorchScript-based ONNX exporter, validate, and check the scores with
    onnxruntime when it is installed. Returns what checked the scores (None: graph checked only)."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(head, (probe,), str(tmp), dynamo=False, input_names=["images"],
                              output_names=["logits"], opset_version=17,
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        onnx.checker.check_model(str(tmp))
        checked = None
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
        if ort is not None:
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            _check(torch.from_numpy(session.run(None, {"images": probe.numpy()})[0]), expected, "the ONNX model")
            checked = f"onnxruntime {ort.__version__}"
        os.replace(tmp, out)
        return checked
    except (RuntimeError, onnx.checker.ValidationError) as exc:
        if "nothing was written" in str(exc):
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{out}: this model's image tower cannot be exported to ONNX ({first}); "
                        "use --format torchscript or ckpt") from None
    finally:
        tmp.unlink(missing_ok=True)


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
