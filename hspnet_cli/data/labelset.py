"""The internal label representation: images x labels in the SPML encoding, and how readers build it.

Every reader turns its format into :class:`Record` objects (one image, the label names it
states, where it came from); :func:`build_labelset` maps them onto a taxonomy's label order in
one place, so unknown labels, labels the data never mentions and duplicate images are handled
the same way for every format.

Encoding (Cole et al. 2021, "Multi-label learning from single positive labels")::

    1 = observed positive    0 = unknown (unobserved)    -1 = observed negative

Full annotations are positives 1 and everything else -1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.names import contained_path

POSITIVE, UNKNOWN, NEGATIVE = 1, 0, -1
_SHOWN = 8


@dataclass
class LabelSet:
    """Images and their labels in one taxonomy's label order.

    Attributes:
        label_names: Column names, in the taxonomy's label-index order.
        images: Image paths relative to an images root, POSIX style, one per row.
        matrix: (n_images, n_labels) int8: 1 positive, 0 unknown, -1 negative.
        origins: Per image, where it came from (``file:line`` or ``file: image id N``), for messages.
    """

    label_names: list[str]
    images: list[str]
    matrix: np.ndarray
    origins: list[str]

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.int8)
        expected = (len(self.images), len(self.label_names))
        if self.matrix.shape != expected or len(self.origins) != len(self.images):
            raise ValueError(
                f"LabelSet: matrix {self.matrix.shape} and {len(self.origins)} origins "
                f"do not fit {expected[0]} images x {expected[1]} labels"
            )
        if self.matrix.size and not np.isin(self.matrix, (NEGATIVE, UNKNOWN, POSITIVE)).all():
            raise ValueError("LabelSet: matrix values must be -1, 0 or 1")

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def take(self, rows: np.ndarray | list[int]) -> LabelSet:
        """The rows ``rows`` (in the order given) as a new LabelSet."""
        rows = np.asarray(rows, dtype=np.int64)
        return LabelSet(
            list(self.label_names),
            [self.images[i] for i in rows],
            self.matrix[rows].copy(),
            [self.origins[i] for i in rows],
        )

    def with_matrix(self, matrix: np.ndarray) -> LabelSet:
        """The same images with another label matrix (e.g. a weakened copy)."""
        return LabelSet(list(self.label_names), list(self.images), matrix, list(self.origins))

    def positives_per_image(self) -> np.ndarray:
        """(n_images,) int64: positive entries in each row."""
        return (self.matrix == POSITIVE).sum(axis=1).astype(np.int64)

    def positive_counts(self) -> np.ndarray:
        """(n_labels,) int64: images in which each label is positive."""
        return (self.matrix == POSITIVE).sum(axis=0).astype(np.int64)


@dataclass
class Record:
    """One image as a reader found it, before mapping onto a taxonomy.

    Attributes:
        image: Image path as written in the source (normalised by :func:`normalize_image_path`).
        origin: ``file:line`` (or ``file: image id N``) for messages.
        values: Label name -> 1 / 0 / -1 for what the source states explicitly.
        default: Value of every label the source annotates but this record does not mention
            (-1 for full annotations: what is not listed is absent).
    """

    image: str
    origin: str
    values: dict[str, int]
    default: int = NEGATIVE


@dataclass
class ReadReport:
    """What a reader noticed: dropped labels, missing labels, merged duplicates, counts."""

    source: str
    format: str
    files: list[Path] = field(default_factory=list)
    unknown_labels: dict[str, int] = field(default_factory=dict)
    unknown_first: dict[str, str] = field(default_factory=dict)
    missing_labels: list[str] = field(default_factory=list)
    duplicates_merged: int = 0
    images_without_positives: int = 0
    notes: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """Human-readable warnings, one per line, without markup."""
        out: list[str] = []
        if self.unknown_labels:
            shown = ", ".join(
                f"'{n}' in {c} image(s) (first at {self.unknown_first[n]})"
                for n, c in list(self.unknown_labels.items())[:_SHOWN]
            )
            more = len(self.unknown_labels) - _SHOWN
            out.append(
                f"{self.source}: dropped {len(self.unknown_labels)} label(s) not in the taxonomy: "
                f"{shown}{f' and {more} more' if more > 0 else ''}"
            )
        if self.missing_labels:
            out.append(
                f"{self.source}: {len(self.missing_labels)} taxonomy label(s) not in the data: "
                f"{_names(self.missing_labels)}"
            )
        if self.duplicates_merged:
            out.append(
                f"{self.source}: merged {self.duplicates_merged} identical duplicate image entr"
                f"{'y' if self.duplicates_merged == 1 else 'ies'}"
            )
        out.extend(f"{self.source}: {note}" for note in self.notes)
        return out

    def to_dict(self) -> dict:
        """A plain mapping for split.yaml and ``--json``."""
        return {
            "source": self.source,
            "format": self.format,
            "unknown_labels": dict(self.unknown_labels),
            "missing_labels": list(self.missing_labels),
            "duplicates_merged": self.duplicates_merged,
            "images_without_positives": self.images_without_positives,
            "notes": list(self.notes),
        }


def _names(names: list[str]) -> str:
    more = len(names) - _SHOWN
    return ", ".join(names[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_DRIVE = re.compile(r"[A-Za-z]:")  # C:\x and C:x (relative to drive C's current folder)


def normalize_image_path(raw: str, origin: str, keep_backslash: bool = False) -> str:
    """An image path as a clean relative POSIX path, refused when it leaves the images folder.

    Backslashes become ``/`` (files written on Windows) and ``./`` or doubled slashes vanish,
    so the same image is never counted twice under two spellings. Nothing else changes: spaces
    at either end are part of the file name and stay (byte-exact paths).

    Args:
        raw: The path as the annotation file writes it.
        origin: Where it is written (``file:line``), the start of every message.
        keep_backslash: The path is an image key our own tools wrote (tags, the annotate log,
            the files ``export-labels`` writes and the tools give back): always ``/``-separated,
            so a backslash is a character of the file name and stays.

    Raises:
        UserError: The path is blank, holds a control character (line break, tab, NUL), is not
            UTF-8, is absolute (``/x``, ``C:\\x``, ``C:x``, ``\\\\server\\share``) or climbs out
            of the images folder (``../x``).
    """
    try:
        return clean_image_path(raw, keep_backslash)
    except ValueError as exc:
        raise UserError(f"{origin}: {exc}") from None


def clean_image_path(raw: str, keep_backslash: bool = False) -> str:
    """:func:`normalize_image_path` for callers that place the message themselves.

    Raises:
        ValueError: The reason the path is refused and what to do, without a location.
    """
    text = raw if keep_backslash else raw.replace("\\", "/")
    if not text.strip():
        raise ValueError("empty image path; give each image's path relative to the images folder")
    if _CONTROL.search(text):
        raise ValueError(
            f"image path {_short(repr(raw))} holds a control character (line break, tab "
            "or NUL); rename the file or fix the entry"
        )
    if _NOT_UTF8.search(text):  # a surrogateescape'd name (from a tag output): split files are UTF-8 text
        raise ValueError(
            f"image path {_short(ascii(raw))} is not valid UTF-8; split files are UTF-8 text: "
            "rename the file (then tag or label it again)"
        )
    if keep_backslash:
        # A backslash is a character of the name here, but a file that reads it as a separator
        # (Windows) must still not climb out or name a share: '..\\x' and '\\\\server' are refused.
        both = text.replace("\\", "/")
        if both.startswith("//"):
            raise ValueError(f"image path '{_short(raw)}' is absolute; write it relative to the images folder")
        if ".." in both.split("/"):
            raise ValueError(
                f"image path '{_short(raw)}' points outside the images folder; write paths "
                "relative to the images folder, without '..' climbing above it"
            )
    if text.startswith("/") or _DRIVE.match(text):
        raise ValueError(
            f"image path '{_short(raw)}' is absolute; write it relative to the images folder "
            "(the folder you pass to --check-images)"
        )
    # normpath only where it can change something: this runs once per image of COCO
    if "//" in text or "/." in "/" + text or text.endswith("/"):
        normal = contained_path(text)
        if normal is None:
            raise ValueError(
                f"image path '{_short(raw)}' points outside the images folder; write paths "
                "relative to the images folder, without '..' climbing above it"
            )
        return normal
    return text


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def build_labelset(
    records: list[Record],
    label_names: list[str],
    taxonomy_name: str,
    report: ReadReport,
    declared: list[str] | None = None,
    strict: bool = False,
) -> LabelSet:
    """Map reader records onto a taxonomy's label order.

    Args:
        records: Images in source order.
        label_names: The taxonomy's labels, in label-index order.
        taxonomy_name: For messages.
        report: Filled in: unknown labels, missing labels, merged duplicates, images without positives.
        declared: Labels the source says it annotates (COCO categories, wide-CSV columns), or
            None when the source only lists positives (then "in the data" means "ever named").
            A taxonomy label the source does not annotate at all is left unknown (0), not
            negative: nobody looked for it.
        strict: Make unknown and missing labels errors instead of warnings.

    Returns:
        The label set, one row per distinct image, in first-seen order.

    Raises:
        UserError: No images; with ``strict``, unknown or missing labels; an image listed twice
            with different labels.
    """
    if not records:
        raise UserError(
            f"{report.source}: no images found; the file holds no annotation entries "
            "(check that it is the right file and format, or pass --format)"
        )
    column = {name: i for i, name in enumerate(label_names)}
    seen_labels: set[str] = set(declared) if declared is not None else set()
    for record in records:
        for name in record.values:
            seen_labels.add(name)
            if name not in column:
                if strict:
                    raise UserError(
                        f"{record.origin}: label '{name}' is not in taxonomy '{taxonomy_name}'; "
                        "fix the spelling or add it to the taxonomy (without --strict, unknown "
                        "labels are dropped with a warning)"
                    )
                report.unknown_labels[name] = report.unknown_labels.get(name, 0) + 1
                report.unknown_first.setdefault(name, record.origin)
    if declared is not None:
        for name in declared:
            if name not in column and name not in report.unknown_labels:
                if strict:
                    raise UserError(
                        f"{report.source}: label '{name}' is not in taxonomy '{taxonomy_name}'; "
                        "use a taxonomy that covers the data or leave out --strict"
                    )
                report.unknown_labels[name] = 0
                report.unknown_first[name] = report.source
    if seen_labels and not seen_labels & column.keys():
        # Not a few strays but a mismatch: nothing useful could be written.
        raise UserError(
            f"{report.source}: none of the data's {len(seen_labels)} label(s) is in taxonomy "
            f"'{taxonomy_name}' (the data has: {_names(sorted(seen_labels))}); "
            "pass the taxonomy the data was annotated with"
        )
    report.missing_labels = [name for name in label_names if name not in seen_labels]
    unannotated = np.zeros(len(label_names), dtype=bool)
    if declared is not None:
        unannotated[[column[n] for n in label_names if n not in set(declared)]] = True

    rows: dict[str, int] = {}
    images: list[str] = []
    origins: list[str] = []
    matrix = np.empty((len(records), len(label_names)), dtype=np.int8)
    for record in records:
        row = np.full(len(label_names), record.default, dtype=np.int8)
        for name, value in record.values.items():
            if name in column:
                row[column[name]] = value
        row[unannotated] = UNKNOWN
        first = rows.get(record.image)
        if first is not None:
            if not np.array_equal(matrix[first], row):
                raise UserError(
                    f"{record.origin}: image '{record.image}' is listed again with different labels "
                    f"(first at {origins[first]}); merge the two entries into one"
                )
            report.duplicates_merged += 1
            continue
        rows[record.image] = len(images)
        matrix[len(images)] = row
        images.append(record.image)
        origins.append(record.origin)
    # Checked after every line-level problem, which is what the user has to fix first.
    if report.missing_labels and strict:
        raise UserError(
            f"{report.source}: {len(report.missing_labels)} label(s) of taxonomy '{taxonomy_name}' "
            f"are not in the data: {_names(report.missing_labels)}; use a taxonomy that matches "
            "the data or leave out --strict"
        )
    labels = LabelSet(list(label_names), images, matrix[: len(images)], origins)
    report.images_without_positives = int((labels.positives_per_image() == 0).sum())
    return labels
