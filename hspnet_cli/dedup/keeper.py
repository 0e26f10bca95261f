"""One keeper per near-duplicate group: the most pixels, then the earliest path.

The rule a reviewer would apply: the largest version of an image is the one to label (the
others are resized, cropped or re-encoded copies of it), and among equals the first in sorted
path order, so the choice is the same on every run. Pixel counts come from the image headers
(``PIL.Image.open`` reads the header; no pixel is decoded). When the images folder is not
there (embeddings copied without their images) or ``rule="path"`` is asked for, the keeper is
the earliest path alone, and the report says so; an image whose header cannot be read counts
0 pixels (it never wins over a readable copy).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RULES = ("pixels", "path")


def pixel_count(path: Path) -> int:
    """Width x height from the image header, 0 when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
        return int(width) * int(height)
    except Exception:  # noqa: BLE001 - any unreadable file just never wins the keeper choice
        return 0


def keeper_rule(images_dir: Path, rule: str) -> str:
    """The rule actually applied: ``pixels`` needs the images folder, else ``path`` (fallback)."""
    if rule == "pixels" and not images_dir.is_dir():
        log.warning(
            "%s: images folder not found; keepers are the earliest path in each group (pixel counts need the images)",
            images_dir,
        )
        return "path"
    return rule


def choose_keeper(keys: list[str], pixels: np.ndarray | None) -> int:
    """Index into ``keys`` of the keeper: most ``pixels`` (when given), then earliest key."""
    if pixels is None:
        return min(range(len(keys)), key=lambda i: keys[i])
    return min(range(len(keys)), key=lambda i: (-int(pixels[i]), keys[i]))
