"""Helpers for the label-tool tests: a small tag output with known tags, and running hspnet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hspnet_cli.tagsfile.writer import OutputPaths, TagSelector

LABELS = ["cat", "dog", "sofa", "table", "tree"]
GROUPS = {"animals": ["cat", "dog"], "furniture": ["sofa", "table"], "plants": ["tree"]}
TAXONOMY = ("name: pets\nlabels: [cat, dog, sofa, table, tree]\n"
            "groups:\n  animals: [cat, dog]\n  furniture: [sofa, table]\n  plants: [tree]\n")
# Image names a label tool must survive: sub-folders, spaces, a comma, a quote, non-ASCII.
NAMES = ["a/cat 1.png", "a/dog,2.png", "b/ünï.png", "b/q'uote.png", "c.png", "d/e/f.png"]


def make_tags(root: Path, fmt: str = "csv", probs: np.ndarray | None = None, names: list[str] | None = None,
              threshold: float = 0.5) -> Path:
    """Images under root/images, and a tag output root/tags.<fmt> written with hspnet's own row
    writer (TagSelector) from ``probs`` (default: a seeded random matrix), manifest included."""
    names = names or NAMES
    rng = np.random.default_rng(0)
    probs = probs if probs is not None else rng.random((len(names), len(LABELS))).round(4)
    for i, name in enumerate(names):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 10 + i), (i * 30, 90, 200)).save(path)
    out = OutputPaths.for_out(root / f"tags.{fmt}")
    selector = TagSelector(LABELS, GROUPS, np.full(len(LABELS), threshold, dtype=np.float32))
    row = selector.csv_row if fmt == "csv" else selector.jsonl_row
    head = "path,tags,scores,groups\n" if fmt == "csv" else ""
    out.tags.write_text(head + "".join(row(n, p) for n, p in zip(names, probs)), encoding="utf-8")
    out.emb.write_bytes(np.zeros((len(names), 4), dtype="<f4").tobytes())
    out.failed.write_text("path,error\n", encoding="utf-8")
    images = str((root / "images").absolute())
    out.manifest.write_text(json.dumps({
        "format": "hspnet-tags", "version": 1, "complete": True,
        "model": {"scorer": "test scorer", "fingerprint": "0123456789abcdef"},
        "labels": LABELS, "groups": GROUPS, "thresholds": [threshold] * len(LABELS),
        "embedding": {"file": out.emb.name, "dim": 4},
        "files": {"tags": out.tags.name, "failed": out.failed.name, "embeddings": out.emb.name},
        "fingerprint": {"scorer": "x", "labels": LABELS, "format": fmt, "images_dir": images},
        "counts": {"items": len(names), "rows": len(names), "failed": 0}}), encoding="utf-8")
    (root / "taxonomy.yaml").write_text(TAXONOMY, encoding="utf-8")
    return out.tags


def expected_matrix(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The full-annotation matrix (1 / -1) a tag output with these probabilities stands for."""
    return np.where(probs >= threshold, 1, -1).astype(np.int8)
