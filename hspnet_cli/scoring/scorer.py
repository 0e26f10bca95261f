"""Scoring images with a trained checkpoint or plain zero-shot CLIP: one interface for eval and tag.

After training, the label features T* do not depend on the image (paper section 3.3), so a
scorer is an image encoder plus one matrix product: ``scores = scale * norm(f(x)) @ norm(T*).T``.
Every scorer exposes the same pieces, so ``hspnet eval`` and ``hspnet tag`` need not know
where the model came from:

* ``from_checkpoint``: a ``best.ckpt`` / ``last.ckpt`` of ``hspnet train`` (label features stored
  in the checkpoint; the text tower is not needed);
* ``zero_shot``: CLIP with the prompts "a photo of a <label>." and no training, the baseline
  every trained model is compared to and what a user has before any labels exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from hspnet_cli.taxonomy import Taxonomy


@dataclass
class Scorer:
    """Image -> multi-label scores.

    Attributes:
        image_encoder: Module mapping (B, 3, S, S) preprocessed images to (B, D) features.
        label_features: (C, D) unit-norm label features, rows in ``taxonomy`` label order.
        logit_scale: Scores are ``logit_scale * cos``; sigmoid of them are probabilities.
        taxonomy: Labels (column order) and groups.
        image_size: Input side the encoder expects.
        transform: PIL image -> (3, S, S) tensor (the evaluation preprocessing).
        description: What this scorer is (for reports and manifests).
        text_encoder: Callable texts -> (n, D) unit features, when the text tower is available
            (zero-shot and text search need it); None otherwise.
        thresholds: (C,) per-label decision thresholds on the logits' sigmoid, in label order,
            when the model stores them (fitted by ``hspnet train`` on a fully labelled
            validation split, or carried into an export); None otherwise.
        thresholds_source: What the stored thresholds are, in words ("" without them).
    """

    image_encoder: torch.nn.Module
    label_features: torch.Tensor
    logit_scale: float
    taxonomy: Taxonomy
    image_size: int
    transform: Callable
    description: str
    text_encoder: Callable[[list[str]], torch.Tensor] | None = None
    thresholds: torch.Tensor | None = None
    thresholds_source: str = ""

    @property
    def device(self) -> torch.device:
        return self.label_features.device

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, D) unit-norm image embeddings (float32, normalised outside autocast)."""
        feats = self.image_encoder(images.to(self.device))
        with torch.autocast(device_type=self.device.type, enabled=False):
            return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def scores_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) unit embeddings -> (B, C) logits, in float32 even when called under autocast
        (a bf16 product would collapse near-equal scores; see ``model.hspnet.cosine_logits``)."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.logit_scale * embeddings.float() @ self.label_features.float().T

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C) logits."""
        return self.scores_from_embeddings(self.embed(images))


def from_checkpoint(path: str | Path, device: str = "cpu") -> Scorer:
    """A scorer from a training checkpoint: its image tower and stored label features T*."""
    from hspnet_cli.model.checkpoint import (
        checkpoint_config,
        checkpoint_taxonomy,
        load_checkpoint,
        model_from_checkpoint,
    )
    from hspnet_cli.model.image_size import model_image_size
    from hspnet_cli.model.preprocess import Preprocessing
    from hspnet_cli.scoring.thresholds import stored_thresholds

    data = load_checkpoint(path)
    config = checkpoint_config(data)
    model = model_from_checkpoint(data, device=device)
    size = model_image_size(model, config)
    feats = F.normalize(data["label_features"].float(), dim=-1).to(device)
    taxonomy = checkpoint_taxonomy(data)
    stored = stored_thresholds(data.get("thresholds"), taxonomy)  # fitted by hspnet train, when it could
    return Scorer(
        image_encoder=model.visual.eval(),
        label_features=feats,
        logit_scale=float(data["logit_scale"]),
        taxonomy=taxonomy,
        image_size=size,
        thresholds=torch.from_numpy(stored[0]).to(device) if stored else None,
        thresholds_source=stored[1] if stored else "",
        transform=Preprocessing.for_model(model.visual, size).transform(),
        description=f"checkpoint {path} ({config.model.method} on {config.model.clip_model})",
        text_encoder=model.encode_texts if model.text.token_embedding is not None else None,
    )


def zero_shot(
    taxonomy: Taxonomy,
    model_name: str = "RN50",
    pretrained: str | None = "openai",
    device: str = "cpu",
    template: str = "a photo of a {}.",
) -> Scorer:
    """Plain CLIP: label features from ``template`` prompts, CLIP's own temperature, no training."""
    from hspnet_cli.model.clip_models import encode_texts, load_clip, visual_image_size
    from hspnet_cli.model.preprocess import Preprocessing

    clip = load_clip(model_name, pretrained, device=device)

    def text_encoder(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(encode_texts(clip, texts)).to(device)

    feats = text_encoder([template.format(spec.text) for spec in taxonomy.labels])
    size = visual_image_size(clip.model.visual)
    return Scorer(
        image_encoder=clip.model.visual.eval(),
        label_features=feats,
        logit_scale=float(clip.model.logit_scale.detach().exp()),
        taxonomy=taxonomy,
        image_size=size,
        transform=Preprocessing.for_model(clip.model.visual, size).transform(),
        description=f"zero-shot {clip.description}",
        text_encoder=text_encoder,
    )


def describe(scorer: Scorer) -> dict[str, Any]:
    """Facts about a scorer for reports and manifests."""
    return {
        "scorer": scorer.description,
        "labels": scorer.taxonomy.num_labels,
        "embed_dim": int(scorer.label_features.shape[1]),
        "image_size": scorer.image_size,
        "logit_scale": scorer.logit_scale,
    }


@dataclass
class ExportedScorer(Scorer):
    """A scorer loaded from ``hspnet export`` output: no text tower, maybe per-label thresholds.

    Attributes:
        facts: The export's stored metadata (format, labels, preprocessing, source config, ...).
    """

    facts: dict[str, Any] | None = None


def from_exported(path: str | Path, device: str = "cpu") -> ExportedScorer:
    """A scorer from ``hspnet export`` output (``ckpt`` kind, or TorchScript with its sidecar).

    Its logits equal those of :func:`from_checkpoint` on the source checkpoint; the text tower is
    neither stored nor built, so ``text_encoder`` is None.
    """
    from hspnet_cli.model.preprocess import Preprocessing
    from hspnet_cli.scoring.model_file import read_export
    from hspnet_cli.taxonomy import taxonomy_from_dict

    encoder, facts, feats = read_export(path, device=device)
    taxonomy = taxonomy_from_dict(facts["taxonomy"], source=str(path))
    from hspnet_cli.scoring.thresholds import stored_thresholds

    stored = stored_thresholds(facts.get("thresholds"), taxonomy)
    thresholds = torch.from_numpy(stored[0]).to(device) if stored else None
    kind = facts.get("kind", "ckpt")
    return ExportedScorer(
        image_encoder=encoder.eval(),
        label_features=feats,
        logit_scale=float(facts["logit_scale"]),
        taxonomy=taxonomy,
        image_size=int(facts["image_size"]),
        transform=Preprocessing.from_dict(facts["preprocessing"]).transform(),
        description=f"export {path} ({kind} of {facts.get('model_name')})",
        thresholds=thresholds,
        thresholds_source=_export_thresholds_source(facts, stored),
        facts={k: v for k, v in facts.items() if k not in ("visual", "label_features")},
    )


def _export_thresholds_source(facts: dict[str, Any], stored: Any) -> str:
    """Words for an export's thresholds: what ``hspnet export`` recorded about them."""
    if not stored:
        return ""
    return str(facts.get("thresholds_source") or "per-label thresholds stored in the exported model")


def choose_scorer(
    checkpoint: str | Path | None = None,
    *,
    zero_shot: bool = False,
    taxonomy: str | Path | Taxonomy | None = None,
    clip_model: str = "RN50",
    pretrained: str | None = "openai",
    device: str = "auto",
    required: bool = True,
) -> Scorer | None:
    """The scorer a command's ``--checkpoint`` / ``--zero-shot`` options ask for: every command
    that scores images chooses it here, so the rules and their messages are the same everywhere.

    Args:
        checkpoint: A trained model: run folder, training checkpoint or hspnet export.
        zero_shot: Plain CLIP prompts for ``taxonomy``'s labels instead (``--clip-model``,
            ``--pretrained``).
        taxonomy: With ``zero_shot``: the labels (required). With a checkpoint: optional; its
            labels must be the model's and its groups are used.
        clip_model, pretrained: The open_clip model of ``zero_shot``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        required: False where scoring is optional (annotate's suggestions): None when neither
            source is given.

    Raises:
        UserError: Both or (when ``required``) neither source given, ``zero_shot`` without a
            taxonomy, and see :func:`open_scorer`.
    """
    from hspnet_cli.core.errors import UserError

    if checkpoint is not None and zero_shot:
        raise UserError("give --checkpoint or --zero-shot, not both")
    if checkpoint is None and not zero_shot:
        if not required:
            return None
        raise UserError(
            "give --checkpoint (a run folder, training checkpoint or hspnet export) or --zero-shot --taxonomy T"
        )
    if zero_shot and taxonomy is None:
        raise UserError("--zero-shot needs --taxonomy (the labels to score)")
    return open_scorer(
        checkpoint,
        zero_shot_taxonomy=taxonomy if zero_shot else None,
        taxonomy=None if zero_shot else taxonomy,
        clip_model=clip_model,
        pretrained=pretrained,
        device=device,
    )


def open_scorer(
    path: str | Path | None = None,
    *,
    zero_shot_taxonomy: str | Path | Taxonomy | None = None,
    taxonomy: str | Path | None = None,
    clip_model: str = "RN50",
    pretrained: str | None = "openai",
    device: str = "auto",
) -> Scorer:
    """The scorer a command asked for: a model file (checkpoint, run folder or export) or, with
    ``zero_shot_taxonomy``, plain CLIP prompts for that taxonomy's labels.

    With a model file, ``taxonomy`` is optional; when given, its labels must be the model's (in
    order) and its groups are used. The caller checks that exactly one source was chosen
    (commands do it through :func:`choose_scorer`).

    Raises:
        UserError: A missing model file, or a taxonomy with other labels than the model's.
    """
    from hspnet_cli.core.device import resolve_device
    from hspnet_cli.core.errors import UserError
    from hspnet_cli.taxonomy import load_taxonomy

    dev = str(resolve_device(device))
    if zero_shot_taxonomy is not None:
        tag = None if pretrained is None or str(pretrained).lower() == "none" else pretrained
        tax = zero_shot_taxonomy if isinstance(zero_shot_taxonomy, Taxonomy) else load_taxonomy(zero_shot_taxonomy)
        return zero_shot(tax, clip_model, tag, device=dev)
    assert path is not None, "open_scorer needs a model path or a zero-shot taxonomy"
    if not Path(path).exists():
        raise UserError(f"{path}: checkpoint not found (give a training checkpoint, a run folder or an hspnet export)")
    scorer = load_scorer(path, device=dev)
    if taxonomy is not None:
        tax = load_taxonomy(taxonomy)
        if tax.label_names != scorer.taxonomy.label_names:
            raise UserError(
                f"--taxonomy '{tax.name}' has other labels than {path} ({tax.num_labels} vs "
                f"{scorer.taxonomy.num_labels}, or another order); leave out --taxonomy to use the "
                "model's own labels and groups"
            )
        scorer.taxonomy = tax
    return scorer


def load_scorer(path: str | Path, device: str = "cpu") -> Scorer:
    """A scorer from any model file hspnet makes: a training checkpoint (or run folder), an
    ``hspnet export`` ckpt, or a TorchScript export.

    Raises:
        UserError: An ONNX export (run it with onnxruntime) or a file hspnet did not make.
    """
    from hspnet_cli.core.errors import UserError
    from hspnet_cli.scoring.model_file import file_kind

    kind = file_kind(path)
    if kind == "checkpoint":
        return from_checkpoint(path, device=device)
    if kind in ("export", "torchscript"):
        return from_exported(path, device=device)
    if kind == "onnx":
        raise UserError(
            f"{path}: ONNX exports run in onnxruntime (their .json sidecar has the labels); "
            "give hspnet a checkpoint or a ckpt / TorchScript export"
        )
    raise UserError(f"{path}: not a model hspnet made (expected a training checkpoint or an hspnet export)")
