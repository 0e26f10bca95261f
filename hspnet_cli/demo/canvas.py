"""The demo world's canvas: colours, masks, backgrounds, clutter and the final downsampling.

Everything is painted on a float32 canvas in [0, 1], channels first (3, S, S) because numpy
is several times faster on long rows than on a trailing axis of 3. The canvas is
``SUPERSAMPLE`` times larger than the output image and box-filtered down at the end, which
gives anti-aliased edges (PIL draws masks without anti-aliasing). Geometry is given in canvas
pixels.

Determinism: every function here takes its randomness from the ``numpy.random.Generator`` it is
handed and draws from it in a fixed order, and nothing reads global state, so one image's
pixels depend only on that generator's seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2
"""Canvas pixels per output pixel along each side."""

Point = tuple[float, float]


@dataclass(frozen=True)
class Placement:
    """Where one object goes on the canvas.

    Attributes:
        cx: Centre x in canvas pixels.
        cy: Centre y in canvas pixels.
        r: Radius of the object's bounding circle in canvas pixels.
        angle: Rotation in radians.
    """

    cx: float
    cy: float
    r: float
    angle: float


Drawer = Callable[[np.ndarray, Placement, np.random.Generator], None]


# --- colours ---------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> float:
    """Perceived brightness in [0, 1] of a (3,) RGB colour."""
    return float(np.asarray(rgb, dtype=np.float32) @ _LUMA)


def contrasting_colour(rng: np.random.Generator, against: float, min_diff: float) -> np.ndarray:
    """A random colour whose brightness differs from ``against`` by at least ``min_diff``.

    Colour is a nuisance variable in this world (no label is a colour), so hue and saturation
    are free; only brightness is constrained so the object stays visible on its background.

    Args:
        rng: Source of randomness.
        against: Brightness of what the colour will sit on.
        min_diff: Required brightness difference.

    Returns:
        (3,) float32 RGB in [0, 1].
    """
    for _ in range(12):
        colour = rng.random(3, dtype=np.float32)
        if abs(luminance(colour) - against) >= min_diff:
            return colour
    # Rare: fall back to a tinted dark or light colour on the far side of the background.
    tint = rng.random(3, dtype=np.float32) * np.float32(0.25)
    return tint if against > 0.5 else np.float32(1.0) - tint


def region_luminance(canvas: np.ndarray, p: Placement) -> float:
    """Mean brightness of the canvas inside the bounding box of ``p`` (clipped to the canvas)."""
    size = canvas.shape[1]
    x0, x1 = max(0, int(p.cx - p.r)), min(size, int(p.cx + p.r) + 1)
    y0, y1 = max(0, int(p.cy - p.r)), min(size, int(p.cy + p.r) + 1)
    if x1 <= x0 or y1 <= y0:
        return luminance(canvas.mean(axis=(1, 2)))
    return luminance(canvas[:, y0:y1, x0:x1].mean(axis=(1, 2)))


# --- masks and painting ----------------------------------------------------------------------


Mask = tuple[np.ndarray, int, int]
"""A float coverage mask in [0, 1] cropped to its bounding box, and the box's left and top."""


def new_mask(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (size, size), 0)
    return img, ImageDraw.Draw(img)


def crop_mask(img: Image.Image) -> Mask | None:
    # Objects cover a small part of the canvas: blending only their bounding box is several
    # times faster than blending whole-canvas masks.
    box = img.getbbox()
    if box is None:
        return None
    return np.asarray(img.crop(box), dtype=np.float32) * np.float32(1.0 / 255.0), box[0], box[1]


def place_points(points: np.ndarray, p: Placement) -> list[Point]:
    """Unit-circle points -> canvas points: rotate by ``p.angle``, scale by ``p.r``, move."""
    c, s = math.cos(p.angle), math.sin(p.angle)
    x, y = points[:, 0], points[:, 1]
    xs = p.cx + p.r * (c * x - s * y)
    ys = p.cy + p.r * (s * x + c * y)
    return list(zip(xs.tolist(), ys.tolist()))


def polygon_mask(size: int, points: list[Point]) -> Mask | None:
    """Coverage of a filled polygon on a ``size`` canvas (None if it is off the canvas)."""
    img, draw = new_mask(size)
    draw.polygon(points, fill=255)
    return crop_mask(img)


def polyline_mask(size: int, points: list[Point], width: float) -> Mask | None:
    """Coverage of a stroked polyline with round joints and caps (None if off the canvas)."""
    img, draw = new_mask(size)
    w = max(1, int(round(width)))
    draw.line(points, fill=255, width=w, joint="curve")
    # PIL's wide lines have square ends; round caps keep short strokes from looking like bars.
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    return crop_mask(img)


def paint(canvas: np.ndarray, mask: Mask | None, colour: np.ndarray, alpha: float = 1.0) -> None:
    """Blend ``colour`` into ``canvas`` in place where ``mask`` covers it."""
    if mask is None:
        return
    m, x0, y0 = mask
    region = canvas[:, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
    a = m * np.float32(alpha)
    region *= np.float32(1.0) - a
    region += a * np.asarray(colour, dtype=np.float32)[:, None, None]


def rotated_coords(p: Placement, x0: int, y0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A canvas pixel box in the object's rotated frame, in canvas pixels from its centre."""
    dx = np.arange(x0, x0 + width, dtype=np.float32)[None, :] + np.float32(0.5 - p.cx)
    dy = np.arange(y0, y0 + height, dtype=np.float32)[:, None] + np.float32(0.5 - p.cy)
    c, s = np.float32(math.cos(p.angle)), np.float32(math.sin(p.angle))
    return c * dx + s * dy, -s * dx + c * dy


# --- backgrounds, clutter, finishing ---------------------------------------------------------


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A varied background: a two-colour linear gradient plus smooth low-frequency blotches.

    Args:
        rng: Source of randomness.
        size: Canvas side in canvas pixels.

    Returns:
        (3, size, size) float32 canvas in [0, 1].
    """
    c1, c2 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = np.float32(math.cos(theta)) * t[None, :] + np.float32(math.sin(theta)) * t[:, None]
    ramp -= ramp.min()
    ramp /= max(float(ramp.max()), 1e-6)
    canvas = c1[:, None, None] + ramp[None] * (c2 - c1)[:, None, None]
    # Blotches: a coarse random grid upsampled bilinearly. The interpolation is written as
    # explicit multiply-adds rather than a matrix product, whose BLAS summation order may depend
    # on the thread count; this keeps the pixels bit-for-bit reproducible.
    k = int(rng.integers(3, 6))
    grid = rng.normal(0.0, 0.09, size=(3, k, k)).astype(np.float32)
    pos = np.linspace(0.0, k - 1.0, size, dtype=np.float32)
    lo = np.minimum(pos.astype(np.int64), k - 2)
    weights = np.zeros((size, k), dtype=np.float32)  # row i: interpolation weights of grid nodes
    weights[np.arange(size), lo] = np.float32(1.0) - (pos - lo)
    weights[np.arange(size), lo + 1] = pos - lo
    rows = np.zeros((3, size, k), dtype=np.float32)
    for m in range(k):
        rows += weights[None, :, m, None] * grid[:, None, m, :]
    for m in range(k):
        canvas += rows[:, :, m, None] * weights[None, None, :, m]
    np.clip(canvas, 0.0, 1.0, out=canvas)
    return canvas


def clutter(canvas: np.ndarray, rng: np.random.Generator, scale: int) -> None:
    """Paint distractors that are not labels: thin straight lines and soft irregular blobs.

    They are drawn before the objects, thinner or fainter than any label, so they make the task
    harder without hiding a label or looking like one.

    Args:
        canvas: Canvas to paint on, in place.
        rng: Source of randomness.
        scale: Canvas pixels per output pixel (lines are one output pixel wide).
    """
    size = canvas.shape[1]
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.random()
        colour = rng.random(3, dtype=np.float32)
        if kind < 0.55:
            (x0, y0), (x1, y1) = rng.uniform(0, size, size=(2, 2)).tolist()
            img, draw = new_mask(size)
            draw.line([(x0, y0), (x1, y1)], fill=255, width=scale)
            paint(canvas, crop_mask(img), colour, alpha=float(rng.uniform(0.35, 0.8)))
        else:
            # A blob: two overlapping random ellipses, faint, so it reads as a stain, not a disc.
            img, draw = new_mask(size)
            cx, cy = rng.uniform(0, size, size=2).tolist()
            for _ in range(2):
                rx, ry = (rng.uniform(0.03, 0.12, size=2) * size).tolist()
                ox, oy = (rng.normal(0.0, 0.04, size=2) * size).tolist()
                draw.ellipse((cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry), fill=255)
            paint(canvas, crop_mask(img), colour, alpha=float(rng.uniform(0.2, 0.45)))


def finish(canvas: np.ndarray, rng: np.random.Generator, scale: int) -> np.ndarray:
    """Downsample the canvas, add sensor-like pixel noise and quantise.

    Args:
        canvas: (3, S, S) float canvas, S a multiple of ``scale``.
        rng: Source of randomness.
        scale: Canvas pixels per output pixel.

    Returns:
        (S / scale, S / scale, 3) uint8 image.
    """
    # Box filter as a sum of strided views: much faster than a reshape-and-mean.
    small = canvas[:, 0::scale, 0::scale].copy()
    for i in range(scale):
        for j in range(scale):
            if i or j:
                small += canvas[:, i::scale, j::scale]
    small *= np.float32(1.0 / (scale * scale))
    sigma = float(rng.uniform(0.005, 0.04))
    small += rng.normal(0.0, sigma, size=small.shape).astype(np.float32)
    np.clip(small, 0.0, 1.0, out=small)
    pixels = (small * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


# --- label drawers ---------------------------------------------------------------------------
