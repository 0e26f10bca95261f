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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write, output_errors, write_text_atomic
from hspnet_cli.model.preprocess import Preprocessing
from hspnet_cli.scoring.model_file import FORMAT, FORMAT_VERSION, build_visual, file_kind, sidecar_path

FORMATS = ("ckpt", "torchscript", "onnx")
# Scores of an export may differ from the source model's by float rounding only.
CHECK_ATOL = 1e-4


class LogitsHead(nn.Module):
    """Image tower + fixed label features: ``(B, 3, S, S)`` images -> ``(B, C)`` logits.

    The operations mirror :class:`hspnet_cli.scoring.scorer.Scorer` exactly (normalise the float
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


def vision_spec(model_name: str, visual: nn.Module) -> dict[str, Any]:
    """What rebuilds ``visual`` without the rest of CLIP: its open_clip vision config."""
    from open_clip.transformer import QuickGELU

    from hspnet_cli.model.clip_models import open_clip_module, visual_image_size

    cfg = open_clip_module().get_model_config(model_name)
    if not cfg or "vision_cfg" not in cfg or "embed_dim" not in cfg:
        raise UserError(
            f"model {model_name}: open_clip has no plain vision config for it, so it cannot be "
            "exported; use the training checkpoint directly"
        )
    vision_cfg = dict(cfg["vision_cfg"])
    # A tower trained at another --image-size has its positional embedding resampled: build for that side.
    vision_cfg["image_size"] = visual_image_size(visual)
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = False  # weights come from the export, never a download
    # OpenAI archives are loaded with QuickGELU whatever the config says: read it off the module.
    quick = bool(cfg.get("quick_gelu", False)) or any(isinstance(m, QuickGELU) for m in visual.modules())
    return {"model_name": model_name, "embed_dim": int(cfg["embed_dim"]), "vision_cfg": vision_cfg, "quick_gelu": quick}


def _source(checkpoint: str | Path) -> dict[str, Any]:
    """Load a training checkpoint, naming what else the file is when it is not one."""
    from hspnet_cli.model.checkpoint import load_checkpoint

    try:
        return load_checkpoint(checkpoint)
    except UserError:
        kind = file_kind(checkpoint) if Path(checkpoint).is_file() else "unknown"
        if kind in ("export", "torchscript", "onnx"):
            raise UserError(
                f"{checkpoint}: is an exported model already; export takes a training checkpoint "
                "(best.ckpt of hspnet train)"
            ) from None
        raise


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "ckpt",
    thresholds: str | Path | None = None,
    device: str = "cpu",
    report: dict[str, Any] | None = None,
) -> Path:
    """Export a training checkpoint holding the output's lock (:mod:`hspnet_cli.core.locks`); arguments:
    see :func:`_export_model`."""
    from hspnet_cli.core.locks import output_lock

    with output_lock(out, "export"):
        return _export_model(checkpoint, out, fmt, thresholds, device, report)


def _export_model(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "ckpt",
    thresholds: str | Path | None = None,
    device: str = "cpu",
    report: dict[str, Any] | None = None,
) -> Path:
    """Export a training checkpoint as a small inference model (see module docstring).

    Args:
        checkpoint: ``best.ckpt`` / ``last.ckpt`` of ``hspnet train``, or its run folder.
        out: File to write (``torchscript`` and ``onnx`` also write ``<out>.json``).
        fmt: ``ckpt``, ``torchscript`` or ``onnx``.
        thresholds: Optional per-label thresholds JSON, carried into the export (default: the
            checkpoint's own, fitted by ``hspnet train`` on a fully labelled validation split).
        device: Where the source model is rebuilt; exports are always written as CPU models.
        report: When given, receives ``thresholds_source``: which thresholds the export carries.

    Returns:
        The written model file.

    Raises:
        UserError: Unknown format, unreadable checkpoint, bad thresholds, output over the input,
            or a missing optional dependency (onnx).
    """
    from hspnet_cli.model.checkpoint import checkpoint_config, checkpoint_taxonomy, model_from_checkpoint
    from hspnet_cli.model.image_size import model_image_size

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
    from hspnet_cli.scoring.thresholds import load_thresholds, stored_thresholds, uncalibrated_note

    table, source = None, uncalibrated_note(checkpoint)
    if thresholds is not None:  # the file hspnet calibrate writes, checked against these labels
        values = load_thresholds(thresholds, taxonomy)
        table = {name: float(v) for name, v in zip(taxonomy.label_names, values)}
        source = f"per-label thresholds of {thresholds}"
    elif (stored := stored_thresholds(data.get("thresholds"), taxonomy)) is not None:
        table, source = {name: float(v) for name, v in zip(taxonomy.label_names, stored[0])}, stored[1]
    if report is not None:
        report["thresholds_source"] = source
    model = model_from_checkpoint(data, device=device)
    size = model_image_size(model, config)
    visual = model.visual.float().cpu().eval()
    head = LogitsHead(visual, data["label_features"].detach().cpu(), float(data["logit_scale"])).eval()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "source": str(checkpoint),
        "model_name": config.model.clip_model,
        "labels": taxonomy.label_names,
        "groups": {g: list(m) for g, m in taxonomy.groups.items()},
        "taxonomy": taxonomy.to_dict(),
        "thresholds": table,
        "thresholds_source": source if table else None,
        "image_size": size,
        "preprocessing": Preprocessing.for_model(visual, size).to_dict(),
        "logit_scale": head.logit_scale,
        "embed_dim": int(head.label_features.shape[1]),
    }
    probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = head(probe)
    if fmt == "ckpt":
        spec = vision_spec(config.model.clip_model, visual)
        state = {k: v.detach().cpu().clone() for k, v in visual.state_dict().items()}
        with torch.no_grad():
            rebuilt = LogitsHead(build_visual(spec, state), head.label_features, head.logit_scale)(probe)
        _check(rebuilt, expected, "the rebuilt image tower")
        payload = {
            **meta,
            "kind": "ckpt",
            "vision": spec,
            "visual": state,
            "label_features": head.label_features.clone(),
            "config": data["config"],
        }
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
        raise UserError(
            "--format onnx needs the onnx package: pip install onnx (and onnxruntime to run it); "
            "or use --format torchscript"
        ) from None


def _write_onnx(head: LogitsHead, probe: torch.Tensor, expected: torch.Tensor, out: Path) -> str | None:
    """Export with torch's TorchScript-based ONNX exporter, validate, and check the scores with
    onnxruntime when it is installed. Returns what checked the scores (None: graph checked only)."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                head,
                (probe,),
                str(tmp),
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                opset_version=17,
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
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
        raise UserError(
            f"{out}: this model's image tower cannot be exported to ONNX ({first}); use --format torchscript or ckpt"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
