"""The one definition of image preprocessing: train, eval, tag and export all read it from here.

As open_clip does, the preprocessing is data that belongs to the model: the image side, the
resize rule and the normalisation constants come from the model's own preprocess config (set on
``visual.preprocess_cfg`` by ``open_clip.create_model``), never from a second copy. The same
:class:`Preprocessing` is written into exports as a plain dict (:meth:`Preprocessing.to_dict`)
and read back from it (:meth:`Preprocessing.from_dict`), so an export preprocesses exactly as
the checkpoint it came from.

Evaluation preprocessing is the published one: bicubic resize of the shorter side, centre crop,
CLIP normalisation. Training may add the paper's random resized crop + horizontal flip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# OpenAI CLIP's normalisation, open_clip's default for every config that does not name its own.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUGMENTS = ("none", "flip_crop")
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """PIL image -> ``(3, size, size)`` float tensor, as the model was trained to see it.

    Attributes:
        size: Side of the square input (the crop), in pixels.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        interpolation: Resize filter: ``bicubic`` (CLIP), ``bilinear`` or ``nearest``.
    """

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"

    @classmethod
    def for_model(cls, visual: Any, size: int) -> Preprocessing:
        """The preprocessing of an open_clip image tower at input side ``size``.

        Reads the tower's ``preprocess_cfg`` (mean, std, interpolation) when open_clip set one;
        a tower without it (an old open_clip, a rebuilt export) gets CLIP's constants, which is
        what every config hspnet builds uses.
        """
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        mean = tuple(float(v) for v in cfg.get("mean", CLIP_MEAN))
        std = tuple(float(v) for v in cfg.get("std", CLIP_STD))
        interpolation = str(cfg.get("interpolation", "bicubic"))
        if interpolation not in _INTERPOLATIONS:
            interpolation = "bicubic"
        return cls(int(size), mean, std, interpolation)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, facts: dict[str, Any]) -> Preprocessing:
        """Read :meth:`to_dict`'s form (as stored in an export's metadata)."""
        return cls(
            int(facts["center_crop"]),
            tuple(facts["mean"]),
            tuple(facts["std"]),  # type: ignore[arg-type]
            str(facts.get("interpolation", "bicubic")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The preprocessing as plain data, for export metadata and sidecars."""
        return {
            "resize": self.size,
            "resize_side": "shorter",
            "interpolation": self.interpolation,
            "center_crop": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "input": "RGB, scaled to [0, 1], then (x - mean) / std, channels first",
        }

    def transform(self, augment: str = "none") -> Callable:
        """The torchvision transform: evaluation (``none``: resize + centre crop, as published) or
        training augmentation (``flip_crop``: random resized crop + horizontal flip, as the paper
        says), then normalisation."""
        from torchvision import transforms as T

        mode = {
            "bicubic": T.InterpolationMode.BICUBIC,
            "bilinear": T.InterpolationMode.BILINEAR,
            "nearest": T.InterpolationMode.NEAREST,
        }[self.interpolation]
        normalize = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        if augment == "flip_crop":
            return T.Compose([T.RandomResizedCrop(self.size, interpolation=mode), T.RandomHorizontalFlip(), *normalize])
        return T.Compose([T.Resize(self.size, interpolation=mode), T.CenterCrop(self.size), *normalize])


def build_transform(image_size: int, augment: str = "none") -> Callable:
    """CLIP preprocessing at ``image_size`` with CLIP's constants (see :class:`Preprocessing`)."""
    return Preprocessing(int(image_size)).transform(augment)
