"""Our split files: the split CSV (what training reads) and ``split.yaml`` (how it was made).

Split CSV, one format for train, val and test, with the encoding named in its first line::

    # hspnet-split v1 encoding: 1=positive 0=unknown -1=negative
    image,aeroplane,bicycle,bird
    JPEGImages/2008_000008.jpg,0,1,0

The second line is ``image`` and the taxonomy's labels in label-index order; every cell is
``1``, ``0`` or ``-1``. pandas: ``pd.read_csv(path, skiprows=1)``. Files are written with
``\\n`` line ends and the csv module's minimal quoting, so a read -> write round trip is
byte-identical.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.core.safe_yaml import load_yaml_file
from hspnet_cli.data.labelset import LabelSet, clean_image_path
from hspnet_cli.data.readers.common import read_text
from hspnet_cli.data.readers.tabular import csv_rows
from hspnet_cli.taxonomy.core import Taxonomy

SPLIT_MAGIC = "# hspnet-split"
SPLIT_VERSION = 1
SPLIT_HEADER = f"{SPLIT_MAGIC} v{SPLIT_VERSION} encoding: 1=positive 0=unknown -1=negative"
SPLIT_YAML = "split.yaml"
_CELL = {"1": 1, "0": 0, "-1": -1}


def format_split_csv(labels: LabelSet) -> str:
    """The split CSV text of ``labels`` (see the module docstring)."""
    buffer = io.StringIO()
    buffer.write(SPLIT_HEADER + "\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *labels.label_names])
    for image, row in zip(labels.images, labels.matrix.tolist()):
        writer.writerow([image, *row])
    return buffer.getvalue()


def write_split_csv(path: str | Path, labels: LabelSet) -> None:
    """Write ``labels`` as a split CSV, atomically."""
    write_text_atomic(path, format_split_csv(labels))


def read_split_csv(path: str | Path, taxonomy: Taxonomy) -> LabelSet:
    """Read a split CSV written by ``hspnet split``.

    Args:
        path: ``train.csv``, ``val.csv`` or ``test.csv`` of a split folder.
        taxonomy: A :class:`~hspnet_cli.taxonomy.Taxonomy`; its label order must be the file's columns.

    Returns:
        The label set (origins are ``file:line``).

    Raises:
        UserError: Not a split CSV (first line), a newer version, columns that do not match
            the taxonomy, a cell that is not 1/0/-1, a row of the wrong width or a repeated
            image (file:line).
    """
    path = Path(path)
    text = read_text(path)
    first, _, rest = text.partition("\n")
    first = first.rstrip("\r")
    if not first.startswith(SPLIT_MAGIC):
        raise UserError(f"{path}:1: not an hspnet split CSV (the first line must be '{SPLIT_HEADER}')")
    version = first[len(SPLIT_MAGIC) :].split()[0:1]
    if version != [f"v{SPLIT_VERSION}"]:
        raise UserError(
            f"{path}:1: split format '{' '.join(version)}' is not v{SPLIT_VERSION}; "
            "it was written by another hspnet version (upgrade hspnet or remake the split)"
        )
    rows = csv_rows(path, "\n" + rest)  # the leading newline keeps csv line numbers equal to file lines
    header = next(rows, None)
    names = list(taxonomy.label_names)
    if header is None or header[1][0] != "image" or header[1][1:] != names:
        found = header[1][1:] if header else []
        where = f"{path}:{header[0] if header else 2}"
        diff = next((i for i, (a, b) in enumerate(zip(found, names)) if a != b), min(len(found), len(names)))
        got = f"'{found[diff]}'" if diff < len(found) else "nothing"
        want = f"'{names[diff]}'" if diff < len(names) else "nothing"
        raise UserError(
            f"{where}: columns do not match taxonomy '{taxonomy.name}': label column {diff + 1} is "
            f"{got}, the taxonomy has {want}; use the taxonomy the split was made with (see split.yaml)"
        )
    images: list[str] = []
    origins: list[str] = []
    values: list[list[int]] = []
    seen: dict[str, str] = {}
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != len(names) + 1:
            raise UserError(f"{where}: expected {len(names) + 1} cells (image and one per label), found {len(cells)}")
        try:
            values.append([_CELL[c] for c in cells[1:]])
        except KeyError:
            bad = next(i for i, c in enumerate(cells[1:]) if c not in _CELL)
            raise UserError(
                f"{where}: column '{names[bad]}' holds '{cells[bad + 1]}'; split CSV cells are "
                "1 (positive), 0 (unknown) or -1 (negative)"
            ) from None
        try:  # training opens these under its images folder: a path climbing out of it is refused here
            clean_image_path(cells[0], keep_backslash=True)  # checked only: the spelling is kept byte for byte
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
        if cells[0] in seen:
            raise UserError(f"{where}: image '{cells[0]}' is listed twice (first at {seen[cells[0]]}); keep one line")
        seen[cells[0]] = where
        images.append(cells[0])
        origins.append(where)
    matrix = np.array(values, dtype=np.int8).reshape(len(images), len(names))
    return LabelSet(names, images, matrix, origins)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(files: list[Path], root: Path) -> str:
    """Digest of an input: the file's SHA-256, or for a folder (VOC) the SHA-256 of the sorted
    ``<sha256>  <path relative to root>`` lines of every file read (like ``sha256sum`` output)."""
    if len(files) == 1 and files[0] == root:
        return sha256_file(root)
    lines = sorted(f"{sha256_file(f)}  {f.relative_to(root).as_posix()}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def labels_sha256(label_names: list[str]) -> str:
    """SHA-256 of the label order (names joined by newlines): equal digests, equal columns."""
    return hashlib.sha256(("\n".join(label_names) + "\n").encode("utf-8")).hexdigest()


def format_split_yaml(meta: dict[str, Any]) -> str:
    """``split.yaml`` text: a comment line, then ``meta`` in the given key order."""
    return "# written by hspnet split; the split files' encoding: 1=positive 0=unknown -1=negative\n" + yaml.safe_dump(
        meta, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )


def read_split_yaml(folder: str | Path) -> dict[str, Any]:
    """Read a split folder's ``split.yaml``.

    Raises:
        UserError: It is missing or not a mapping.
    """
    path = Path(folder) / SPLIT_YAML
    data = load_yaml_file(path, "split.yaml")
    if not isinstance(data, dict) or "hspnet_split" not in data:
        raise UserError(f"{path}: not an hspnet split description; remake the split with hspnet split")
    return data
