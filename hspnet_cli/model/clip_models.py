"""Loading CLIP models through open_clip, and encoding text with them.

The default for users is a real pretrained model (``RN50`` with ``pretrained="openai"``, as
in the paper). ``pretrained`` may also be any open_clip pretrained tag, a local checkpoint file
(an open_clip state dict, a ``.safetensors`` file, or OpenAI's own TorchScript ``RN50.pt``),
or ``none`` for a randomly initialised model. Random models exist for tests and the demo only,
and every load of one says so: their features mean nothing until trained.

Two tiny configurations ship with the package (``hspnet-tiny``: a 64 px ViT; ``hspnet-tiny-rn``:
a 64 px ResNet) so the whole pipeline runs on a CPU in seconds.

This module sits below the taxonomy layer (k-means taxonomies encode label prompts) and is
imported lazily: ``import open_clip`` alone costs seconds.
"""

from __future__ import annotations

import difflib
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "RN50"
DEFAULT_PRETRAINED = "openai"
TINY_MODELS = ("hspnet-tiny", "hspnet-tiny-rn")
RANDOM_TAGS = {"none", "random", ""}
_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_registered = False


def open_clip_module() -> Any:
    """Import open_clip once, with the package's tiny configs registered."""
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True
    return open_clip


@dataclass
class ClipModel:
    """An open_clip model with what is needed to use it.

    Attributes:
        model: The open_clip ``CLIP`` module (eval mode after loading).
        preprocess: The evaluation image transform (PIL image -> tensor).
        tokenizer: Text -> (n, context_length) token ids.
        model_name: open_clip architecture name.
        pretrained: What the weights came from (tag or file path); None for random weights.
        quick_gelu: True when the transformer towers were built with QuickGELU (what OpenAI's
            weights were trained with), False for GELU.
    """

    model: Any
    preprocess: Callable
    tokenizer: Callable
    model_name: str
    pretrained: str | None
    quick_gelu: bool = False

    @property
    def is_random(self) -> bool:
        """True when the weights are a random initialisation."""
        return self.pretrained is None

    @property
    def description(self) -> str:
        """``model/pretrained`` (``model/random`` for random weights)."""
        return f"{self.model_name}/{self.pretrained or 'random'}"

    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text embedding."""
        return int(self.model.text_projection.shape[1])


def _is_torchscript_archive(path: Path) -> bool:
    """OpenAI's released CLIP files are TorchScript zip archives (they hold a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist()[:200])


def _check_model_name(open_clip: Any, model_name: str) -> None:
    known = open_clip.list_models()
    if model_name not in known:
        close = difflib.get_close_matches(model_name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model '{model_name}'.{hint} See open_clip.list_models() for all names.")


def tag_quick_gelu(model_name: str, tag: str) -> bool | None:
    """The activation a published tag was trained with (its pretrained config's ``quick_gelu``).

    open_clip 3.x builds plain ``RN50`` / ``ViT-B-32`` with GELU even for ``pretrained="openai"``
    and only warns: every text and image feature is then off. None when the tag is unknown.
    """
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, tag)
    return bool(cfg.get("quick_gelu", False)) if cfg else None


def uses_quick_gelu(module: Any) -> bool:
    """True when any activation inside ``module`` is open_clip's QuickGELU."""
    from open_clip.model import QuickGELU

    return any(isinstance(m, QuickGELU) for m in module.modules())


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str = "cpu",
    weights_follow: bool = False,
    quick_gelu: bool | None = None,
) -> ClipModel:
    """Create an open_clip model with its transform and tokenizer.

    The activation follows the weights: a published tag gets the one its pretrained config names
    (QuickGELU for every ``openai`` tag), an OpenAI TorchScript archive gets QuickGELU, anything
    else the architecture config's own. ``quick_gelu=True`` forces QuickGELU (a checkpoint
    rebuilding the model it was trained with).

    Args:
        model_name: open_clip architecture (``RN50``, ``ViT-B-32``, ``hspnet-tiny``, ...).
        pretrained: A pretrained tag (``openai``), a local checkpoint file, or ``none`` for
            random weights (tests and demos only).
        device: Torch device to place the model on.
        weights_follow: The caller loads trained weights into the model next (a checkpoint):
            do not warn that a ``none`` backbone is random.
        quick_gelu: None: as the weights need (above); True: QuickGELU; False: the config's own.

    Returns:
        The loaded model, in eval mode.

    Raises:
        UserError: Unknown model or tag, unreadable file, or weights that cannot be fetched
            (no network): the message says how to get them.
    """
    open_clip = open_clip_module()
    _check_model_name(open_clip, model_name)
    tag = None if pretrained is None or str(pretrained).strip().lower() in RANDOM_TAGS else str(pretrained)
    tokenizer = open_clip.get_tokenizer(model_name)
    force = bool(quick_gelu)
    if tag is None:
        logging.disable(logging.WARNING)  # open_clip's own "initialized randomly" line; ours follows
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=None, device=device, force_quick_gelu=force
            )
        finally:
            logging.disable(logging.NOTSET)
        if not weights_follow:
            log.warning(
                "model %s is randomly initialised (pretrained=none): its features are meaningless "
                "until trained; use it for tests and demos only",
                model_name,
            )
    elif Path(tag).expanduser().exists():
        model, preprocess = _load_local(open_clip, model_name, Path(tag).expanduser(), device, force)
    else:
        if quick_gelu is None:
            force = bool(tag_quick_gelu(model_name, tag))
        model, preprocess = _load_tag(open_clip, model_name, tag, device, force)
    model.eval()
    return ClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        model_name=model_name,
        pretrained=tag,
        quick_gelu=uses_quick_gelu(model),
    )


def _load_local(open_clip: Any, model_name: str, path: Path, device: str, quick_gelu: bool) -> tuple[Any, Callable]:
    if not path.is_file():
        raise UserError(f"{path}: is not a file; --pretrained takes a checkpoint file or a tag like 'openai'")
    if _is_torchscript_archive(path):
        # OpenAI's own files cannot be read with weights_only=True; open_clip rebuilds a plain
        # model from the archive's state dict. Those models use QuickGELU: loading them into a
        # plain GELU config would silently change every activation.
        if not model_name.endswith("quickgelu"):
            log.warning(
                "%s is an OpenAI TorchScript archive: loading it with QuickGELU activations (as model %s-quickgelu)",
                path,
                model_name,
            )
        try:
            # fp32 also on a GPU: open_clip's default there is pure fp16, which training cannot use.
            model = open_clip.load_openai_model(str(path), precision="fp32", device=device)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{path}: could not read this OpenAI CLIP archive ({exc})") from None
        image_size = model.visual.image_size
        preprocess = open_clip.image_transform(image_size, is_train=False)
        return model, preprocess
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(path), device=device, weights_only=True, force_quick_gelu=quick_gelu
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise UserError(
            f"{path}: weights do not fit model {model_name} ({first}); check --clip-model matches the checkpoint"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many unpickling error types
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CLIP checkpoint ({first})") from None
    return model, preprocess


def _load_tag(open_clip: Any, model_name: str, tag: str, device: str, quick_gelu: bool) -> tuple[Any, Callable]:
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        known = ", ".join(tags) if tags else "none published"
        raise UserError(
            f"no pretrained weights '{tag}' for model {model_name} (known tags: {known}); "
            "or pass a local checkpoint file"
        )
    try:
        # open_clip logs its own download failure at ERROR on the root logger; the UserError
        # below says the same with what to do, so that record is muted for this call.
        logging.disable(logging.ERROR)
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=tag, device=device, force_quick_gelu=quick_gelu
        )
    except Exception as exc:  # noqa: BLE001 - network failures surface as many exception types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not fetch pretrained weights '{tag}' for {model_name} ({type(exc).__name__}: {first}). "
            "Without network access, download the checkpoint on another machine and pass its path "
            "with --pretrained FILE (set HF_HUB_OFFLINE=1 to fail fast)"
        ) from None
    finally:
        logging.disable(logging.NOTSET)
    return model, preprocess


def visual_image_size(visual: Any) -> int:
    """Input side of an open_clip image tower (its ``image_size`` may be an int or a pair)."""
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def encode_texts(clip: ClipModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Encode texts with the CLIP text tower.

    Args:
        clip: The loaded model.
        texts: Strings to encode (e.g. ``"a photo of a dog."``).
        batch_size: Texts per forward pass.

    Returns:
        (len(texts), embed_dim) float32 array of L2-normalised features.
    """
    import torch

    device = next(clip.model.parameters()).device
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = clip.tokenizer(list(texts[start : start + batch_size])).to(device)
            feats = clip.model.encode_text(tokens).float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out.append(feats.cpu().numpy())
    return np.concatenate(out, axis=0).astype(np.float32)


def label_encoder(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    template: str = "a photo of a {}.",
    device: str = "cpu",
    seed: int = 0,
):  # type: ignore[no-untyped-def]
    """A label encoder for ``taxonomy build --kmeans``: label specs -> (features, encoder description).

    Each label's prompt (``template`` with the label's text) goes through the CLIP text tower.
    A random model (``pretrained`` none) is initialised from ``seed``, so the build stays
    reproducible. The taxonomy layer calls the returned function and never imports CLIP itself.

    Returns:
        A function ``specs -> ((num_labels, embed_dim) float32 unit rows, description)``.
    """
    if "{}" not in template:
        raise UserError(f"--template must contain {{}} where the label goes, got '{template}'")

    def encode(specs: list) -> tuple[np.ndarray, str]:  # list[LabelSpec]
        import torch

        torch.manual_seed(seed)
        clip = load_clip(model_name, pretrained, device=device)
        return encode_texts(clip, [template.format(spec.text) for spec in specs]), clip.description

    return encode
