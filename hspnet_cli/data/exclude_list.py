"""Leaving listed images out of a LabelSet: ``hspnet split --exclude LIST`` (e.g. dedup's non-keepers).

A list file is one image path a line (``#`` comments and blank lines ignored), the format
``hspnet tag --list``, ``hspnet select`` and ``hspnet dedup`` write. Paths are the annotation
keys (relative to the images folder); an absolute path inside ``root`` is made relative to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet


def listed_keys(files: list[Path] | tuple[Path, ...], root: Path | None) -> set[str]:
    """Every key named by ``files``.

    Raises:
        UserError: A missing file or a line that leaves ``root`` (named by file and line).
    """
    from hspnet_cli.tagsfile.listfile import listed_paths

    keys: set[str] = set()
    for file in map(Path, files):
        if not file.is_file():
            raise UserError(
                f"{file}: --exclude list not found (one image path a line, e.g. hspnet dedup's STEM.exclude.txt)"
            )
        keys.update(listed_paths(file, root or Path("."), "--exclude", "the images folder"))
    return keys


def drop_listed(labels: LabelSet, keys: set[str]) -> tuple[LabelSet, int]:
    """``labels`` without the images in ``keys``, and how many were dropped."""
    if not keys:
        return labels, 0
    rows = np.array([i for i, image in enumerate(labels.images) if image not in keys], dtype=np.int64)
    return labels.take(rows), labels.n_images - len(rows)
