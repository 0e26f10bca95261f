"""Tabular annotations: ``image,labels`` CSV, wide 0/1 CSV, and JSON Lines.

- ``image,labels``: a header line, then one image a line with its positive label names
  separated by ``;`` (the demo world's ``annotations.csv``). An empty labels cell is an image
  with no positive. Everything not listed is negative (full annotations).
- wide: a header ``image,<label1>,<label2>,...`` and one cell per label. This is the one-hot
  layout pandas and scikit-learn write, so ``1`` is positive and ``0`` is *negative* (absent);
  ``-1`` is also negative (the +-1 layout); an *empty* cell is unknown. (Our own split CSVs,
  where 0 means unknown, start with a ``# hspnet-split`` line and are read by
  :func:`hspnet_cli.data.split_io.read_split_csv` instead, so the two never mix.) Taxonomy
  labels without a column are not annotated by the file: left unknown.
- JSON Lines: one object a line, ``{"image": "a.jpg", "labels": ["cat", "dog"]}``; blank lines
  are skipped and other keys ignored.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, UNKNOWN, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, read_text
from hspnet_cli.errors import UserError

_WIDE_VALUES = {"1": POSITIVE, "+1": POSITIVE, "1.0": POSITIVE, "0": NEGATIVE, "0.0": NEGATIVE,
                "-1": NEGATIVE, "-1.0": NEGATIVE, "": UNKNOWN}


def csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows with the line each starts on.

    Raises:
        UserError: A row the csv module cannot parse (e.g. an unclosed quote), with its line.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}:{start}: malformed CSV ({exc}); check the quotes on this line") from None


def read_label_csv(path: Path) -> RawAnnotations:
    """Read an ``image,labels`` CSV (labels ``;``-separated positive names).

    Raises:
        UserError: No header, a row without exactly two cells, or an empty image path (file:line).
    """
    rows = csv_rows(path, read_text(path))
    header = next(rows, None)
    if header is None:
        raise UserError(f"{path}: the file is empty; write a header 'image,labels' and one image a line")
    number, cells = header
    if [c.strip().lower() for c in cells] != ["image", "labels"]:
        raise UserError(f"{path}:{number}: expected the header 'image,labels', found '{','.join(cells)}'")
    records = []
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != 2:
            raise UserError(f"{where}: expected 2 cells (image,labels), found {len(cells)}; separate labels "
                            "with ';' and quote image paths that contain commas")
        names = [name.strip() for name in cells[1].split(";") if name.strip()]
        records.append(Record(normalize_image_path(cells[0], where), where, dict.fromkeys(names, POSITIVE)))
    return RawAnnotations(records, declared=None, files=[path])


def read_wide_csv(path: Path) -> RawAnnotations:
    """Read a wide CSV: header ``image,<label>,...``, cells 1 / 0 or -1 / empty (see module docstring).

    Raises:
        UserError: A bad header (empty or repeated column), a row of the wrong width, or a
            cell that is not 1, 0, -1 or empty (file:line and column).
    """
    rows = csv_rows(path, read_text(path))
    header = next(rows, None)
    if header is None:
        raise UserError(f"{path}: the file is empty; write a header 'image,<label>,...' and one image a line")
    number, cells = header
    columns = [c.strip() for c in cells[1:]]
    if cells[0].strip().lower() != "image" or not columns:
        raise UserError(f"{path}:{number}: expected a header 'image,<label1>,<label2>,...'")
    for i, name in enumerate(columns):
        if not name:
            raise UserError(f"{path}:{number}: column {i + 2} has no label name")
        if name in columns[:i]:
            raise UserError(f"{path}:{number}: label column '{name}' appears twice; keep one")
    records = []
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != len(columns) + 1:
            raise UserError(f"{where}: expected {len(columns) + 1} cells (image and one per label), found {len(cells)}")
        values = {}
        for name, cell in zip(columns, cells[1:]):
            value = _WIDE_VALUES.get(cell.strip())
            if value is None:
                raise UserError(f"{where}: column '{name}' holds '{cell}'; use 1 (positive), 0 or -1 "
                                "(negative) or leave it empty (unknown)")
            values[name] = value
        records.append(Record(normalize_image_path(cells[0], where), where, values))
    return RawAnnotations(records, declared=columns, files=[path])


def read_jsonl(path: Path) -> RawAnnotations:
    """Read JSON Lines: ``{"image": "path", "labels": ["name", ...]}`` one a line.

    Raises:
        UserError: A line that is not JSON (file:line:column), or lacks ``image`` / ``labels``.
    """
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}:{exc.colno}: not valid JSON ({exc.msg}); write one JSON object a line") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise UserError(f"{where}: expected an object with \"image\" (a path) and \"labels\" (a list of names)")
        labels = entry.get("labels")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            raise UserError(f"{where}: \"labels\" must be a list of label names, e.g. \"labels\": [\"cat\", \"dog\"]")
        names = [name.strip() for name in labels if name.strip()]
        records.append(Record(normalize_image_path(entry["image"], where), where, dict.fromkeys(names, POSITIVE)))
    return RawAnnotations(records, declared=None, files=[path])
