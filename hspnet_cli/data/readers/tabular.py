"""Tabular annotations: ``image,labels`` CSV, wide 0/1 CSV, and JSON Lines.

- ``image,labels``: a header line, then one image a line with its positive label names
  separated by ``;`` (the demo world's ``annotations.csv``; ``--label-sep`` for another). An
  empty labels cell is an image with no positive. Everything not listed is negative (full
  annotations). A name that is several taxonomy labels joined by another common separator
  (``"zigzag,ring"``) is an error naming that separator, never a silently dropped label.
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
from collections.abc import Iterator
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, UNKNOWN, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, describe, json_objects, read_text

_WIDE_VALUES = {
    "1": POSITIVE,
    "+1": POSITIVE,
    "1.0": POSITIVE,
    "0": NEGATIVE,
    "0.0": NEGATIVE,
    "-1": NEGATIVE,
    "-1.0": NEGATIVE,
    "": UNKNOWN,
}


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


# Separators people put between labels, tried on a name that is not a label (see _label_names).
OTHER_SEPARATORS = (";", ",", "|", "/", "\t", " ")


def _label_names(names: list[str], known: frozenset[str] | None, sep: str | None, where: str) -> list[str]:
    """``names`` unchanged, after making sure none is several known labels joined by another separator.

    ``"zigzag,ring"`` in a ``;`` file is no label; dropped as unknown it would silently leave the
    image without its positives, so it stops the run naming the separator to pass instead.
    """
    if known is None:
        return names
    for name in names:
        if name in known:
            continue
        for other in OTHER_SEPARATORS:
            if other == sep or other not in name:
                continue
            parts = [part.strip() for part in name.split(other) if part.strip()]
            if len(parts) > 1 and all(part in known for part in parts):
                how = f"this file's labels are read as separated by '{sep}'" if sep else "each list item is one label"
                joined = ", ".join(repr(part) for part in parts[:8])
                raise UserError(
                    f"{where}: '{name[:120]}' is the labels {joined} separated by '{other}', but {how}; "
                    f"pass --label-sep '{other}' if the whole file uses '{other}', or fix this line"
                )
    return names


def read_label_csv(path: Path, label_sep: str = ";", known: frozenset[str] | None = None) -> RawAnnotations:
    """Read an ``image,labels`` CSV (positive names separated by ``label_sep``, ``;`` by default).

    Args:
        path: The CSV file.
        label_sep: What separates the names in a labels cell.
        known: The taxonomy's label names; with them, a name that is known labels joined by
            another common separator (``"zigzag,ring"``) is an error naming that separator.

    Raises:
        UserError: No header, a row without exactly two cells, a bad image path, or labels
            joined by another separator (file:line).
    """
    rows = csv_rows(path, read_text(path))
    header = next(rows, None)
    if header is None:
        raise UserError(f"{path}: the file is empty; write a header 'image,labels' and one image a line")
    number, cells = header
    if [c.strip().lower() for c in cells] != ["image", "labels"]:
        raise UserError(f"{path}:{number}: expected the header 'image,labels', found '{','.join(cells)[:120]}'")
    records = []
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != 2:
            raise UserError(
                f"{where}: expected 2 cells (image,labels), found {len(cells)}; separate labels "
                f"with '{label_sep}' and quote image paths that contain commas"
            )
        names = [name.strip() for name in cells[1].split(label_sep) if name.strip()]
        names = _label_names(names, known, label_sep, where)
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
                raise UserError(
                    f"{where}: column '{name}' holds '{cell}'; use 1 (positive), 0 or -1 "
                    "(negative) or leave it empty (unknown)"
                )
            values[name] = value
        records.append(Record(normalize_image_path(cells[0], where), where, values))
    return RawAnnotations(records, declared=columns, files=[path])


def read_jsonl(path: Path, known: frozenset[str] | None = None) -> RawAnnotations:
    """Read JSON Lines: ``{"image": "path", "labels": ["name", ...]}`` one a line.

    Args:
        path: The file.
        known: The taxonomy's label names: a list item that is several of them joined by a
            separator (``"cat,dog"``) is an error.

    Raises:
        UserError: A line that is not JSON (file:line:column), lacks ``image`` / ``labels`` or
            has them of the wrong type, a bad image path, or labels joined in one item.
    """
    records = []
    for where, entry in json_objects(path, 'with "image" (a path) and "labels" (a list of names)'):
        if not isinstance(entry.get("image"), str):
            found = "is missing" if "image" not in entry else f"is {describe(entry['image'])}"
            raise UserError(f'{where}: "image" {found}; it must be the image path as text')
        labels = entry.get("labels")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            found = (
                "it is missing"
                if "labels" not in entry
                else f"found {describe(labels)}"
                if not isinstance(labels, list)
                else f"it holds {describe(next(n for n in labels if not isinstance(n, str)))}"
            )
            raise UserError(f'{where}: "labels" must be a list of label names, e.g. "labels": ["cat", "dog"] ({found})')
        names = _label_names([name.strip() for name in labels if name.strip()], known, None, where)
        records.append(Record(normalize_image_path(entry["image"], where), where, dict.fromkeys(names, POSITIVE)))
    return RawAnnotations(records, declared=None, files=[path])
