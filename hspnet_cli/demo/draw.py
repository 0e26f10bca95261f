"""One drawer per label of the demo world (shapes, symbols, lines, patterns).

Each drawer paints one instance of its label on the canvas of :mod:`hspnet_cli.demo.canvas`,
taking all randomness from the generator it is handed, in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hspnet_cli.demo.canvas import (
    Drawer,
    Placement,
    contrasting_colour,
    crop_mask,
    luminance,
    new_mask,
    paint,
    place_points,
    polygon_mask,
    polyline_mask,
    region_luminance,
    rotated_coords,
)

# Each drawer paints one instance of its label at a placement. Shapes fill most of the
# placement circle; all colours contrast with the local background so every annotated object
# is visible.

_MIN_DIFF_SOLID = 0.3
_MIN_DIFF_STROKE = 0.38  # thin strokes need more contrast to stay visible after downsampling


def _solid(canvas: np.ndarray, p: Placement, rng: np.random.Generator, unit_points: np.ndarray) -> None:
    colour = contrasting_colour(rng, region_luminance(canvas, p), _MIN_DIFF_SOLID)
    paint(canvas, polygon_mask(canvas.shape[1], place_points(unit_points, p)), colour)


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + np.arange(n) * (2.0 * math.pi / n)
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def draw_circle(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled disc (slightly elliptical at most)."""
    aspect = rng.uniform(0.9, 1.0)
    a = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    _solid(canvas, p, rng, 0.85 * np.stack([np.cos(a), aspect * np.sin(a)], axis=1))


def draw_triangle(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled triangle, roughly equilateral."""
    pts = _regular(3) * rng.uniform(0.88, 1.0, size=(3, 1))
    _solid(canvas, p, rng, pts + rng.normal(0.0, 0.05, size=pts.shape))


def draw_square(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled square."""
    _solid(canvas, p, rng, _regular(4, 0.9, math.pi / 4))


def draw_star(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled five-pointed star."""
    outer, inner = _regular(5), _regular(5, rng.uniform(0.4, 0.5), -math.pi / 2 + math.pi / 5)
    _solid(canvas, p, rng, np.stack([outer, inner], axis=1).reshape(-1, 2))


def draw_arrow(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled arrow: a shaft and a triangular head."""
    w, h, neck = rng.uniform(0.18, 0.26), rng.uniform(0.5, 0.65), rng.uniform(0.0, 0.25)
    pts = np.array([(-1.0, -w), (neck, -w), (neck, -h), (1.0, 0.0), (neck, h), (neck, w), (-1.0, w)])
    _solid(canvas, p, rng, pts * 0.95)


def draw_heart(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled heart, tipped at most a little (hearts are seldom drawn upside down)."""
    t = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1) / 18.0  # the farthest point (the tip) is 17 from the origin
    upright = Placement(p.cx, p.cy, p.r, float(rng.normal(0.0, 0.35)))
    _solid(canvas, upright, rng, pts)


def draw_cross(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled plus-shaped cross."""
    a, b = rng.uniform(0.2, 0.3), 0.9
    pts = np.array(
        [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    )
    _solid(canvas, p, rng, pts)


def draw_crescent(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A filled crescent: a disc with an offset disc cut out of it."""
    size = canvas.shape[1]
    img, draw = new_mask(size)
    r = 0.9 * p.r
    draw.ellipse((p.cx - r, p.cy - r, p.cx + r, p.cy + r), fill=255)
    off, r2 = rng.uniform(0.45, 0.6) * r, rng.uniform(0.75, 0.85) * r  # thick enough to survive 64 px
    ox, oy = p.cx + off * math.cos(p.angle), p.cy + off * math.sin(p.angle)
    draw.ellipse((ox - r2, oy - r2, ox + r2, oy + r2), fill=0)
    colour = contrasting_colour(rng, region_luminance(canvas, p), _MIN_DIFF_SOLID)
    paint(canvas, crop_mask(img), colour)


def _stroke(canvas: np.ndarray, p: Placement, rng: np.random.Generator, unit_points: np.ndarray) -> None:
    # Stroke width tracks the image size (about 2-3 output pixels at 64 px) so that the world
    # looks the same at every resolution.
    width = rng.uniform(0.035, 0.05) * canvas.shape[1]
    colour = contrasting_colour(rng, region_luminance(canvas, p), _MIN_DIFF_STROKE)
    paint(canvas, polyline_mask(canvas.shape[1], place_points(unit_points, p), width), colour)


def draw_spiral(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A stroked Archimedean spiral of about two turns."""
    turns = rng.uniform(1.7, 2.3)
    theta = np.linspace(0.0, 2.0 * math.pi * turns, int(40 * turns))
    rad = 0.1 + 0.75 * theta / theta[-1]
    _stroke(canvas, p, rng, np.stack([rad * np.cos(theta), rad * np.sin(theta)], axis=1))


def draw_zigzag(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A stroked zigzag line with sharp corners."""
    n = int(rng.integers(3, 6))
    x = np.linspace(-0.75, 0.75, n + 1)
    y = rng.uniform(0.35, 0.5) * np.where(np.arange(n + 1) % 2 == 0, -1.0, 1.0)
    _stroke(canvas, p, rng, np.stack([x, y], axis=1))


def draw_wave(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A stroked smooth sine wave."""
    x = np.linspace(-0.8, 0.8, 48)
    periods, phase = rng.uniform(1.0, 1.6), rng.uniform(0.0, 2.0 * math.pi)
    y = rng.uniform(0.25, 0.4) * np.sin(math.pi * periods * (x + 0.8) / 0.8 + phase)
    _stroke(canvas, p, rng, np.stack([x, y], axis=1))


def draw_ring(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A stroked circle outline (an empty disc, unlike ``circle``)."""
    a = np.linspace(0.0, 2.0 * math.pi, 49)
    rad = rng.uniform(0.65, 0.85)
    _stroke(canvas, p, rng, rad * np.stack([np.cos(a), rng.uniform(0.88, 1.0) * np.sin(a)], axis=1))


def _patterned(
    canvas: np.ndarray,
    p: Placement,
    rng: np.random.Generator,
    texture: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
) -> None:
    """A rectangular patch in one colour with a two-colour texture inside it."""
    size = canvas.shape[1]
    half_w, half_h = 0.72, 0.72 * rng.uniform(0.75, 1.0)  # corners stay inside the placement circle
    patch = polygon_mask(
        size, place_points(np.array([(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]), p)
    )
    base = contrasting_colour(rng, region_luminance(canvas, p), 0.12)
    ink = contrasting_colour(rng, luminance(base), 0.35)
    if patch is None:
        return
    m, x0, y0 = patch
    u, v = rotated_coords(p, x0, y0, m.shape[1], m.shape[0])
    # The texture's period follows the image size (about 4.5-6.5 output pixels at 64 px) so it
    # survives downsampling and looks the same at every resolution.
    period = float(rng.uniform(0.07, 0.1) * size)
    paint(canvas, patch, base)
    paint(canvas, (m * texture(u, v, period), x0, y0), ink)


def _stripes(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    return (np.mod(u, period) < 0.5 * period).astype(np.float32)


def _checks(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    cell = 0.6 * period
    return (np.mod(np.floor(u / cell) + np.floor(v / cell), 2.0) == 0).astype(np.float32)


# Grid and dots are lattices like the checkerboard: a wider spacing keeps their open cells and
# separate dots visible at 64 px, where at the stripe period all three blur into one texture.


def _grid(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    spacing = 1.35 * period
    line = 0.3 * spacing
    return ((np.mod(u, spacing) < line) | (np.mod(v, spacing) < line)).astype(np.float32)


def _dots(u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    spacing = 1.35 * period
    du, dv = np.mod(u, spacing) - 0.5 * spacing, np.mod(v, spacing) - 0.5 * spacing
    return (du * du + dv * dv < (0.27 * spacing) ** 2).astype(np.float32)


def draw_stripe(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A patch of parallel stripes."""
    _patterned(canvas, p, rng, _stripes)


def draw_checkerboard(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A patch of alternating squares."""
    _patterned(canvas, p, rng, _checks)


def draw_grid(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A patch crossed by a lattice of thin lines."""
    _patterned(canvas, p, rng, _grid)


def draw_dot(canvas: np.ndarray, p: Placement, rng: np.random.Generator) -> None:
    """A patch of evenly spaced dots (polka dots)."""
    _patterned(canvas, p, rng, _dots)


DRAWERS: dict[str, Drawer] = {
    "circle": draw_circle,
    "triangle": draw_triangle,
    "square": draw_square,
    "star": draw_star,
    "stripe": draw_stripe,
    "checkerboard": draw_checkerboard,
    "dot": draw_dot,
    "grid": draw_grid,
    "arrow": draw_arrow,
    "heart": draw_heart,
    "cross": draw_cross,
    "crescent": draw_crescent,
    "spiral": draw_spiral,
    "zigzag": draw_zigzag,
    "wave": draw_wave,
    "ring": draw_ring,
}
"""Label name -> the function that paints one instance of it."""
