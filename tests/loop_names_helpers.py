"""Hostile label and file names, and a tag output written with hspnet's own writer holding them
(issue 18): labels starting with ``= + - @`` or holding ``\\``, file names starting with ``#``,
holding commas, quotes, ``<``, spaces at both ends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from hspnet_cli.tagsfile.escape import TEXT_ESCAPING
from hspnet_cli.tagsfile.writer import OutputPaths, TagSelector

HOSTILE_LABELS = ["=circle", "+square", "-dot", "@star", "back\\slash", 'q"uote, comma', "plain"]
HOSTILE_GROUPS = {
    "=shapes": ["=circle", "+square", "-dot"],
    "@other": ["@star", "back\\slash", 'q"uote, comma', "plain"],
}
HOSTILE_NAMES = [
    "=eq.png",
    "+plus.png",
    "-minus.png",
    "@at.png",
    "back\\slash.png",
    "#hash.png",
    "\\lead.png",
    'comma, "quote".png',
    "<lt>.png",
    " spaced .png",
    "ünï.png",
    "sub/#deep.png",
    "sub/x;y.png",
]


def hostile_probs(n: int, c: int) -> np.ndarray:
    """Two or three tags an image, every label used (a plain pattern: the truth is easy to state)."""
    probs = np.full((n, c), 0.1, np.float32)
    for i in range(n):
        for j in range(c):
            if (i + j) % 3 == 0:
                probs[i, j] = 0.9 - 0.01 * j
    return probs


def make_hostile_tags(
    root: Path,
    names: list[str] | None = None,
    labels: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
    fmt: str = "csv",
    probs: np.ndarray | None = None,
    images: Path | None = None,
) -> Path:
    """Images under ``images`` (default ``root/images``) and a complete tag output
    ``root/tags.<fmt>`` written by TagSelector (escaped cells, ``text_escaping`` in the
    manifest), plus ``root/taxonomy.yaml``."""
    names = HOSTILE_NAMES if names is None else names
    labels = labels or HOSTILE_LABELS
    groups = groups or HOSTILE_GROUPS
    probs = hostile_probs(len(names), len(labels)) if probs is None else probs
    images = images if images is not None else root / "images"
    for i, name in enumerate(names):
        path = os.path.join(os.fsencode(images), os.fsencode(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.new("RGB", (16 + i, 12), (i * 15 % 255, 90, 200)).save(path, format="PNG")
    out = OutputPaths.for_out(root / f"tags.{fmt}")
    selector = TagSelector(labels, groups, np.full(len(labels), 0.5, dtype=np.float32))
    row = selector.csv_row if fmt == "csv" else selector.jsonl_row
    head = "path,tags,scores,groups\n" if fmt == "csv" else ""
    out.tags.write_text(head + "".join(row(n, p) for n, p in zip(names, probs)), encoding="utf-8")
    out.emb.write_bytes(np.random.default_rng(0).standard_normal((len(names), 4)).astype("<f4").tobytes())
    out.failed.write_text("path,error\n", encoding="utf-8")
    out.manifest.write_text(
        json.dumps(
            {
                "format": "hspnet-tags",
                "version": 1,
                "complete": True,
                "text_escaping": TEXT_ESCAPING,
                "model": {"scorer": "test scorer", "fingerprint": "0123456789abcdef"},
                "labels": labels,
                "groups": groups,
                "thresholds": [0.5] * len(labels),
                "taxonomy": "hostile",
                "embedding": {"file": out.emb.name, "dim": 4},
                "files": {"tags": out.tags.name, "failed": out.failed.name, "embeddings": out.emb.name},
                "fingerprint": {"scorer": "x", "labels": labels, "format": fmt, "images_dir": str(images.absolute())},
                "counts": {"items": len(names), "rows": len(names), "failed": 0},
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (root / "taxonomy.yaml").write_text(
        json.dumps({"name": "hostile", "labels": labels, "groups": groups}, ensure_ascii=False), encoding="utf-8"
    )
    return out.tags


def truth(names: list[str], labels: list[str], probs: np.ndarray) -> dict[str, list[int]]:
    """image -> the full annotation row (1 / -1) the tags stand for."""
    return {n: [1 if p >= 0.5 else -1 for p in row] for n, row in zip(names, probs)}
