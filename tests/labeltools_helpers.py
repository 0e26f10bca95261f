"""Helpers for the label-tool tests: a small tag output with known tags, and running hspnet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hspnet_cli.tagsfile.factory import write_tag_output

LABELS = ["cat", "dog", "sofa", "table", "tree"]
GROUPS = {"animals": ["cat", "dog"], "furniture": ["sofa", "table"], "plants": ["tree"]}
TAXONOMY = (
    "name: pets\nlabels: [cat, dog, sofa, table, tree]\n"
    "groups:\n  animals: [cat, dog]\n  furniture: [sofa, table]\n  plants: [tree]\n"
)
# Image names a label tool must survive: sub-folders, spaces, a comma, a quote, non-ASCII.
NAMES = ["a/cat 1.png", "a/dog,2.png", "b/ünï.png", "b/q'uote.png", "c.png", "d/e/f.png"]


def make_tags(
    root: Path,
    fmt: str = "csv",
    probs: np.ndarray | None = None,
    names: list[str] | None = None,
    threshold: float = 0.5,
) -> Path:
    """Images under root/images, and a tag output root/tags.<fmt> written with hspnet's own row
    writer (TagSelector) from ``probs`` (default: a seeded random matrix), manifest included."""
    names = names or NAMES
    rng = np.random.default_rng(0)
    probs = probs if probs is not None else rng.random((len(names), len(LABELS))).round(4)
    for i, name in enumerate(names):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 10 + i), (i * 30, 90, 200)).save(path)
    paths = write_tag_output(
        root / f"tags.{fmt}",
        names,
        probs,
        np.zeros((len(names), 4), np.float32),
        labels=LABELS,
        groups=GROUPS,
        thresholds=threshold,
        fmt=fmt,
        images_dir=root / "images",
        scorer="test scorer",
        model_fingerprint="0123456789abcdef",
    )
    (root / "taxonomy.yaml").write_text(TAXONOMY, encoding="utf-8")
    return paths.tags


def expected_matrix(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The full-annotation matrix (1 / -1) a tag output with these probabilities stands for."""
    return np.where(probs >= threshold, 1, -1).astype(np.int8)
