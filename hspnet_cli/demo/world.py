"""The demo world: generated multi-label images with a known label -> group hierarchy.

The demo world is the project's built-in data set. It needs no download and is small enough for
the whole pipeline (split -> train -> eval -> tag -> search) to run on a 2-core CPU, yet it has
what HSPNet relies on: several objects per image, labels that belong to groups, and labels of
the same group that appear together more often than labels of different groups.

Sixteen labels in four groups, each label recognisable by its form alone (colour is a nuisance
variable of every object, never a label)::

    shape:   circle, triangle, square, star          filled geometric figures
    pattern: stripe, checkerboard, dot, grid         textured rectangular patches
    symbol:  arrow, heart, cross, crescent           filled signs
    line:    spiral, zigzag, wave, ring              thin stroked curves

Each image first picks a "scene" group, then draws most of its labels from that group. Objects
get a random position, size, rotation and colour; backgrounds are random gradients with
blotches; clutter (thin lines, faint stains) and pixel noise are not labels.

Output folder layout::

    images/000000.png ...     RGB PNGs, image_size x image_size
    annotations.csv           image,labels   (image relative to images/, labels ';'-separated)
    taxonomy.yaml             the hierarchy (see hspnet_cli.taxonomy.core)
    world.json                seed, n_images, image_size, generator version, statistics

Determinism: image ``i`` of seed ``s`` is drawn from generators seeded with ``(s, i)`` alone, so
the same seed gives byte-identical files however the images are ordered or split across
processes, and an image's labels and layout do not depend on ``image_size``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import output_errors, replace_dir, staging_dir
from hspnet_cli.core.locks import output_lock
from hspnet_cli.demo.canvas import SUPERSAMPLE, Placement, background, clutter, finish
from hspnet_cli.demo.draw import DRAWERS
from hspnet_cli.demo.summary import DemoWorldSummary, summarise
from hspnet_cli.taxonomy.core import LabelSpec, Taxonomy

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would produce different files."""

WORLD_KIND = "hspnet-demo-world"
"""Marker in ``world.json`` that says a folder holds a demo world."""

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 256

# Group -> labels, in taxonomy order. Label order within a group is also the order of label
# frequency (see _LABEL_WEIGHTS): real data sets are imbalanced, and a demo that hides that
# would hide the rare-label behaviour of the methods it demonstrates.
_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "triangle", "square", "star"),
    "pattern": ("stripe", "checkerboard", "dot", "grid"),
    "symbol": ("arrow", "heart", "cross", "crescent"),
    "line": ("spiral", "zigzag", "wave", "ring"),
}
# Prompts where the bare noun is ambiguous for a text encoder ("dot" alone, "line" of text...).
_PROMPTS: dict[str, str] = {
    "stripe": "stripes",
    "checkerboard": "checkerboard pattern",
    "dot": "polka dots",
    "grid": "grid pattern",
    "spiral": "spiral line",
    "zigzag": "zigzag line",
    "wave": "wavy line",
    "ring": "ring outline",
}
_LABEL_WEIGHTS = (1.0, 0.8, 0.65, 0.5)  # relative frequency of the 1st..4th label of each group

# How many labels an image has (1..4, mean 2.05), how often one comes from the scene group, and
# how often a label is drawn twice (two stars are still one "star" label).
_LABELS_PER_IMAGE_P = (0.3, 0.4, 0.25, 0.05)
_P_SCENE_GROUP = 0.8
_P_SECOND_INSTANCE = 0.15
_MAX_OBJECTS = 5

# Object radius as a fraction of the image side, shrunk when an image holds many objects so
# that they fit without hiding each other.
_RADIUS_RANGE = (0.16, 0.25)
_MIN_CENTRE_GAP = 0.8  # centres at least this times the sum of radii apart: little overlap

assert set(DRAWERS) == {label for labels in _GROUPS.values() for label in labels}


def demo_taxonomy() -> Taxonomy:
    """The demo world's hierarchy: 16 labels in 4 groups, in a fixed order.

    Returns:
        A new :class:`Taxonomy` (callers may modify it freely).
    """
    labels = [LabelSpec(name=label, prompt=_PROMPTS.get(label)) for members in _GROUPS.values() for label in members]
    return Taxonomy(
        name="demo",
        description=f"hspnet demo world (generator version {GENERATOR_VERSION}): generated "
        "images of shapes, patterns, symbols and lines",
        labels=labels,
        groups={group: list(members) for group, members in _GROUPS.items()},
    )


DEMO_TAXONOMY = demo_taxonomy()
"""The demo hierarchy (a shared instance: copy it with :func:`demo_taxonomy` before changing it)."""

_LABEL_NAMES = DEMO_TAXONOMY.label_names
_LABEL_INDEX = {name: i for i, name in enumerate(_LABEL_NAMES)}


@dataclass(frozen=True)
class DemoObject:
    """One object of a demo image, in coordinates relative to the image side (0..1)."""

    label: str
    x: float
    y: float
    radius: float
    angle: float


@dataclass(frozen=True)
class DemoLayout:
    """What one demo image shows: its labels (in taxonomy order) and objects (in drawing order)."""

    labels: tuple[str, ...]
    objects: tuple[DemoObject, ...]


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # One independent stream per (seed, image, purpose): layout (0) and pixels (1) are kept
    # apart so that an image's labels do not depend on the image size.
    return np.random.default_rng([seed, index, stream])


# Label -> (its group, its position in the group, which sets its frequency).
_GROUPS_OF: dict[str, tuple[str, int]] = {
    label: (group, pos) for group, labels in _GROUPS.items() for pos, label in enumerate(labels)
}


def _pick(rng: np.random.Generator, candidates: list[str]) -> str:
    weights = np.array([_LABEL_WEIGHTS[_GROUPS_OF[c][1]] for c in candidates])
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def demo_layout(index: int, seed: int = 0) -> DemoLayout:
    """The labels and object placements of image ``index`` of the world of ``seed``.

    Args:
        index: Image number (0-based).
        seed: World seed (>= 0).

    Returns:
        The layout; it does not depend on the image size.
    """
    rng = _rng(seed, index, 0)
    groups = list(_GROUPS)
    scene = groups[int(rng.integers(len(groups)))]
    n_labels = 1 + int(rng.choice(len(_LABELS_PER_IMAGE_P), p=_LABELS_PER_IMAGE_P))
    chosen: list[str] = []
    for _ in range(n_labels):
        in_scene = [label for label in _GROUPS[scene] if label not in chosen]
        elsewhere = [label for label in _LABEL_NAMES if label not in chosen and label not in _GROUPS[scene]]
        pool = in_scene if in_scene and (rng.random() < _P_SCENE_GROUP or not elsewhere) else elsewhere
        chosen.append(_pick(rng, pool))
    instances = list(chosen)
    for label in chosen:
        if len(instances) < _MAX_OBJECTS and rng.random() < _P_SECOND_INSTANCE:
            instances.append(label)
    instances = [instances[i] for i in rng.permutation(len(instances))]

    shrink = 1.0 if len(instances) <= 2 else (0.9 if len(instances) == 3 else 0.8)
    objects: list[DemoObject] = []
    for label in instances:
        radius = float(rng.uniform(*_RADIUS_RANGE)) * shrink
        for _ in range(40):
            # Centres may sit a little outside the safe area: objects cut by the border happen
            # in real photos too, but most of each object stays in view.
            lo, hi = 0.85 * radius, 1.0 - 0.85 * radius
            x, y = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
            if all(math.hypot(x - o.x, y - o.y) >= _MIN_CENTRE_GAP * (radius + o.radius) for o in objects):
                break
            radius *= 0.97  # crowded: try a little smaller
        objects.append(DemoObject(label, x, y, radius, float(rng.uniform(0.0, 2.0 * math.pi))))
    labels = tuple(sorted(set(chosen), key=_LABEL_INDEX.__getitem__))
    return DemoLayout(labels=labels, objects=tuple(objects))


def render_demo_image(index: int, seed: int = 0, image_size: int = 64) -> tuple[np.ndarray, tuple[str, ...]]:
    """Draw image ``index`` of the world of ``seed``.

    Args:
        index: Image number (0-based).
        seed: World seed (>= 0).
        image_size: Side of the square image in pixels.

    Returns:
        ``(pixels, labels)``: an (image_size, image_size, 3) uint8 array and the label names
        present, in taxonomy order.
    """
    layout = demo_layout(index, seed)
    rng = _rng(seed, index, 1)
    size = image_size * SUPERSAMPLE
    canvas = background(rng, size)
    clutter(canvas, rng, SUPERSAMPLE)
    for obj in layout.objects:
        placement = Placement(cx=obj.x * size, cy=obj.y * size, r=obj.radius * size, angle=obj.angle)
        DRAWERS[obj.label](canvas, placement, rng)
    return finish(canvas, rng, SUPERSAMPLE), layout.labels


def _png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # No metadata chunks (no time stamps), so equal pixels give equal bytes.
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _image_name(index: int, n_images: int) -> str:
    return f"{index:0{max(6, len(str(n_images - 1)))}d}.png"


def _write_images(
    images_dir: str, seed: int, image_size: int, n_images: int, start: int, stop: int
) -> list[tuple[str, ...]]:
    """Render and write images ``start..stop-1``; returns their labels (a worker's task)."""
    out: list[tuple[str, ...]] = []
    for index in range(start, stop):
        pixels, labels = render_demo_image(index, seed, image_size)
        with open(os.path.join(images_dir, _image_name(index, n_images)), "wb") as fh:
            fh.write(_png_bytes(pixels))
        out.append(labels)
    return out


def is_demo_world(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a (complete) demo world."""
    meta = Path(path) / "world.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("kind") == WORLD_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(out_dir: Path, overwrite: bool, shown: Path) -> None:
    """Refuse a target we must not write to; messages name it as the user gave it (``shown``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{shown} is a file, not a folder; choose a new folder for the demo world")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not is_demo_world(out_dir):
        # Never delete what we did not write, overwrite or not.
        raise UserError(f"{shown} already holds other files; choose a new or empty folder for the demo world")
    if not overwrite:
        raise UserError(
            f"{shown} already holds a demo world; replace it with --overwrite (overwrite=True) or choose another folder"
        )


def _whole(name: str, value: object, lo: int, hi: int | None = None, unit: str = "") -> int:
    """``value`` as an int in ``lo..hi``, or a one-line UserError naming the argument."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if ok and lo <= int(value) and (hi is None or int(value) <= hi):  # type: ignore[arg-type]
        return int(value)  # type: ignore[arg-type]
    wanted = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
    raise UserError(f"{name} must be a whole number{unit} {wanted}, got {value!r}")


def generate_demo_world(
    out_dir: str | Path,
    n_images: int = 1000,
    seed: int = 0,
    image_size: int = 64,
    overwrite: bool = False,
    workers: int = 1,
) -> DemoWorldSummary:
    """Generate the demo world into ``out_dir``.

    The world is written into a hidden temporary folder beside ``out_dir`` and renamed into
    place only when complete, so an interrupted run never leaves a partial world behind.

    Args:
        out_dir: Folder to create (or an empty folder, or an existing demo world with ``overwrite``).
        n_images: Number of images (>= 1).
        seed: World seed (>= 0); the same seed gives byte-identical files.
        image_size: Image side in pixels, 32..256.
        overwrite: Replace an existing demo world in ``out_dir``.
        workers: Processes to render with; the files do not depend on it.

    Returns:
        A summary of what was written.

    Raises:
        UserError: Invalid arguments, or ``out_dir`` holds a demo world (without ``overwrite``)
            or other files.
    """
    started = time.perf_counter()
    n_images = _whole("n_images", n_images, 1)
    seed = _whole("seed", seed, 0)
    image_size = _whole("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, " of pixels")
    workers = _whole("workers", workers, 1)
    out_dir = Path(out_dir)
    target = Path(os.path.abspath(out_dir))  # so that "." or "x/.." still have a name and a parent
    with output_lock(target, "demo world"), output_errors(target, "demo world"):
        _check_target(target, overwrite, shown=out_dir)
        target.parent.mkdir(parents=True, exist_ok=True)

        tmp = staging_dir(target)
        try:
            images_dir = tmp / "images"
            images_dir.mkdir()
            label_sets = _render_all(str(images_dir), seed, image_size, n_images, workers)
            _write_annotations(tmp / "annotations.csv", label_sets, n_images)
            DEMO_TAXONOMY.save(tmp / "taxonomy.yaml")
            summary = summarise(out_dir, n_images, image_size, seed, label_sets, DEMO_TAXONOMY)
            # world.json is the marker is_demo_world looks for: written last.
            (tmp / "world.json").write_text(_world_json(summary), encoding="utf-8")
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    summary.seconds = time.perf_counter() - started
    return summary


def _render_all(images_dir: str, seed: int, image_size: int, n_images: int, workers: int) -> list[tuple[str, ...]]:
    workers = min(workers, max(1, n_images // 200))  # a process start costs ~0.3 s: not for tiny worlds
    if workers == 1:
        return _write_images(images_dir, seed, image_size, n_images, 0, n_images)
    step = math.ceil(n_images / (workers * 4))
    bounds = [(s, min(s + step, n_images)) for s in range(0, n_images, step)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_images, images_dir, seed, image_size, n_images, a, b) for a, b in bounds]
        return [labels for fut in futures for labels in fut.result()]


def _write_annotations(path: Path, label_sets: list[tuple[str, ...]], n_images: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")  # "\n" on every OS: byte-identical files
        writer.writerow(["image", "labels"])
        for index, labels in enumerate(label_sets):
            writer.writerow([_image_name(index, n_images), ";".join(labels)])


def _world_json(summary: DemoWorldSummary) -> str:
    meta = {
        "kind": WORLD_KIND,
        "generator_version": GENERATOR_VERSION,
        "seed": summary.seed,
        "n_images": summary.n_images,
        "image_size": summary.image_size,
        "images": "images/",
        "annotations": "annotations.csv",
        "taxonomy": "taxonomy.yaml",
        "label_counts": summary.label_counts,
        "mean_labels_per_image": round(summary.mean_labels_per_image, 4),
        "within_group_cooccurrence": round(summary.within_group_cooccurrence, 4),
        "across_group_cooccurrence": round(summary.across_group_cooccurrence, 4),
    }
    return json.dumps(meta, indent=2) + "\n"


def read_demo_annotations(world_dir: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Read ``annotations.csv`` of a demo world.

    Args:
        world_dir: The world's folder.

    Returns:
        ``(image, labels)`` rows in file order; ``image`` is relative to ``world_dir/images``.
    """
    with open(Path(world_dir) / "annotations.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return [(row["image"], tuple(filter(None, row["labels"].split(";")))) for row in reader]
