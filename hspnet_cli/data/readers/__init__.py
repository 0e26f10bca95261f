"""Annotation readers: one entry point that detects the format and maps labels onto a taxonomy.

Formats (``--format`` forces one; otherwise detected from the path and first line):

========  =======================================================================
coco      COCO instances JSON (``.json``)
voc       Pascal VOC folder with ``Annotations/*.xml`` (a folder)
csv       ``image,labels`` header, ``;``-separated positive names (``label_sep``)
wide      ``image,<label1>,<label2>,...`` header, cells 1 / 0 or -1 / empty
jsonl     ``{"image": ..., "labels": [...]}`` one a line (``.jsonl``, ``.ndjson``)
list      published ``relative/path.jpg,idx idx`` (0-based indices), e.g. ``.txt``
split     our own split CSV (first line ``# hspnet-split v1 ...``)
annotate  the labels log of ``hspnet annotate`` (JSON Lines with an ``hspnet-annotate`` header)
========  =======================================================================

Every reader refuses, with file:line, image paths that are absolute or climb out of the images
folder (:func:`hspnet_cli.data.labelset.normalize_image_path`) and fields of the wrong type.

Label-tool exports and hspnet's own tag files (:mod:`~hspnet_cli.data.readers.labelstudio`,
:mod:`~hspnet_cli.data.readers.toolfiles`):

===========  ====================================================================
labelstudio  Label Studio JSON, JSON-MIN (a ``.json`` list of tasks) or CSV export
cvat         CVAT for images 1.1 XML, image-level tags (``.xml``)
hf           Hugging Face imagefolder ``metadata.jsonl`` (``file_name`` key)
fiftyone     FiftyOne image classification dataset (folder with ``labels.json``)
tags         hspnet's own ``tags.csv`` / ``tags.jsonl`` (``path,tags,scores,groups``)
===========  ====================================================================

What a label an entry does not give means (``absent``): ``negative`` (full annotations: the
readers' meaning), ``unknown`` (positives only: everything not given stays 0), or ``auto``:
negative, except that a label-tool export or tag file (the second table) in which every
image has exactly one positive is read as single positives, everything else unknown, with a
note: a person who picked one label per image said nothing about the others.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet, ReadReport, build_labelset
from hspnet_cli.data.readers.annotate_log import is_annotate_header, read_annotate_log
from hspnet_cli.data.readers.coco import read_coco
from hspnet_cli.data.readers.common import RawAnnotations
from hspnet_cli.data.readers.labelstudio import read_label_studio
from hspnet_cli.data.readers.listfile import format_list, read_list_file
from hspnet_cli.data.readers.tabular import read_jsonl, read_label_csv, read_wide_csv
from hspnet_cli.data.readers.toolfiles import read_cvat, read_fiftyone, read_hf_metadata, read_tags
from hspnet_cli.data.readers.voc import DIFFICULT_POLICIES, read_voc
from hspnet_cli.taxonomy.core import Taxonomy

FORMATS = (
    "coco",
    "voc",
    "csv",
    "wide",
    "jsonl",
    "list",
    "split",
    "labelstudio",
    "cvat",
    "hf",
    "fiftyone",
    "tags",
    "annotate",
)
TOOL_FORMATS = ("labelstudio", "cvat", "hf", "fiftyone", "tags")
ABSENT = ("auto", "negative", "unknown")
_LIST_LINE = re.compile(r"^[^,]+,\s*\d*(\s+\d+)*\s*$")

__all__ = [
    "ABSENT",
    "DIFFICULT_POLICIES",
    "FORMATS",
    "RawAnnotations",
    "detect_format",
    "format_list",
    "read_annotations",
    "read_list_file",
]


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    text = head.decode("utf-8-sig", errors="replace")
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _detect_tool_file(path: Path, suffix: str) -> str | None:
    """The label-tool format of a file from its suffix and head, or None."""
    if suffix == ".xml":
        return "cvat"
    if suffix not in (".json", ".jsonl", ".ndjson"):
        return None
    first = _first_line(path)
    if suffix == ".json":
        if first.startswith("["):
            return "labelstudio"  # COCO is an object; Label Studio exports a list of tasks
        return "fiftyone" if path.name == "labels.json" else None
    try:
        entry = json.loads(first)
    except (ValueError, RecursionError):  # not JSON, or JSON too odd to detect by
        return None
    if isinstance(entry, dict) and "file_name" in entry and "image" not in entry:
        return "hf"
    if isinstance(entry, dict) and "path" in entry and "tags" in entry and "image" not in entry:
        return "tags"
    return None


def detect_format(path: str | Path) -> str:
    """The annotation format of ``path``, from its suffix and first non-blank line.

    Raises:
        UserError: The path does not exist, the file is empty, or nothing matches.
    """
    path = Path(path)
    if path.is_dir() and (path / "_manifest.json").is_file():
        return "tags"  # hspnet tag --format parquet
    if path.is_dir():
        return "fiftyone" if (path / "labels.json").is_file() else "voc"
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    tool = _detect_tool_file(path, suffix)
    if tool:
        return tool
    if suffix == ".json":
        return "coco"
    first = _first_line(path)
    if suffix in (".jsonl", ".ndjson"):
        return "annotate" if is_annotate_header(first) else "jsonl"
    if not first:
        raise UserError(f"{path}: the file is empty; no images found")
    if first.startswith("# hspnet-split"):
        return "split"
    if first.startswith("{"):
        try:
            return "jsonl" if isinstance(json.loads(first), dict) else "coco"
        except (ValueError, RecursionError):
            return "coco"  # a pretty-printed JSON document opens with a lone '{'
    cells = next(csv.reader([first]), [""])
    if [c.strip() for c in cells] == ["path", "tags", "scores", "groups"]:
        return "tags"
    if {"annotation_id", "annotator"} <= {c.strip() for c in cells}:
        return "labelstudio"  # Label Studio's CSV export
    if cells[0].strip().lower() == "image":
        return "csv" if [c.strip().lower() for c in cells] == ["image", "labels"] else "wide"
    if suffix == ".txt" or _LIST_LINE.match(first):
        return "list"
    raise UserError(
        f"{path}:1: cannot tell the annotation format from the first line ('{first[:60]}'); "
        "CSV files need a header 'image,labels' or 'image,<label>,...'; "
        f"or pass --format ({', '.join(FORMATS)})"
    )


def read_annotations(
    path: str | Path,
    taxonomy: Taxonomy,
    *,
    fmt: str | None = None,
    strict: bool = False,
    voc_set: str | None = None,
    voc_difficult: str = "ignore",
    label_sep: str = ";",
    absent: str = "auto",
) -> tuple[LabelSet, ReadReport]:
    """Read annotations in any supported format onto ``taxonomy``'s label order.

    Args:
        path: Annotation file, or a VOC folder.
        taxonomy: The :class:`~hspnet_cli.taxonomy.Taxonomy` whose labels are the columns.
        fmt: Force a format (one of :data:`FORMATS`); None detects it.
        strict: Labels outside the taxonomy, or taxonomy labels absent from the data, are
            errors instead of warnings.
        voc_set: VOC only: read ``ImageSets/Main/<voc_set>.txt``.
        voc_difficult: VOC only: ``ignore`` | ``unknown`` | ``positive`` (see
            :mod:`hspnet_cli.data.readers.voc`).
        label_sep: ``image,labels`` CSV only: what separates the names in a labels cell.
        absent: What a label an entry does not give means: ``auto`` | ``negative`` | ``unknown``
            (see the module docstring).

    Returns:
        ``(labels, report)``: full annotations in the SPML encoding, one row per distinct
        image in source order, and what was noticed on the way.

    Raises:
        UserError: Any malformed input, named by file and line (or image id).
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if absent not in ABSENT:
        raise UserError(f"--absent must be one of {', '.join(ABSENT)}, got '{absent}'")
    if fmt == "voc" and not path.is_dir():
        raise UserError(f"{path}: --format voc needs the VOC folder that holds Annotations/")
    if fmt not in ("voc", "fiftyone") and path.is_dir() and not (fmt == "tags" and (path / "_manifest.json").is_file()):
        raise UserError(
            f"{path}: is a folder; only Pascal VOC and FiftyOne input are folders (give an annotation file)"
        )
    report = ReadReport(source=str(path), format=fmt)
    if fmt == "split":
        from hspnet_cli.data.split_io import read_split_csv  # split_io imports the readers: import late

        labels = read_split_csv(path, taxonomy)
        if labels.n_images == 0:
            raise UserError(f"{path}: no images found in this split file")
        report.files = [path]
        report.images_without_positives = int((labels.positives_per_image() == 0).sum())
        return labels, report
    if fmt == "coco":
        raw = read_coco(path)
    elif fmt == "voc":
        raw = read_voc(path, voc_set, voc_difficult)
    elif fmt == "csv":
        clash = [name for name in taxonomy.label_names if label_sep in name]
        if clash:
            raise UserError(
                f"taxonomy '{taxonomy.name}' has label '{clash[0]}', which contains the label "
                f"separator '{label_sep}', so {path} cannot be read unambiguously; choose another "
                "--label-sep"
            )
        raw = read_label_csv(path, label_sep, frozenset(taxonomy.label_names))
    elif fmt == "wide":
        raw = read_wide_csv(path)
    elif fmt == "jsonl":
        raw = read_jsonl(path, frozenset(taxonomy.label_names))
    elif fmt in _TOOL_READERS:
        raw = _TOOL_READERS[fmt](path)
    elif fmt == "annotate":
        raw = read_annotate_log(path)
    else:
        raw = read_list_file(path, taxonomy.label_names, taxonomy.name)
    report.files = raw.files
    report.notes = list(raw.notes) + _apply_absent(raw, fmt, absent)
    labels = build_labelset(
        raw.records, taxonomy.label_names, taxonomy.name, report, declared=raw.declared, strict=strict
    )
    return labels, report


_TOOL_READERS = {
    "labelstudio": read_label_studio,
    "cvat": read_cvat,
    "hf": read_hf_metadata,
    "fiftyone": read_fiftyone,
    "tags": read_tags,
}


def _apply_absent(raw: RawAnnotations, fmt: str, absent: str) -> list[str]:
    """Make labels an entry does not give unknown where ``absent`` says so; notes for the report."""
    from hspnet_cli.data.labelset import NEGATIVE, POSITIVE, UNKNOWN

    if absent == "negative" or not raw.records:
        return []
    if absent == "auto":
        single = fmt in TOOL_FORMATS and all(
            sum(v == POSITIVE for v in r.values.values()) == 1 and NEGATIVE not in r.values.values()
            for r in raw.records
        )
        if not single:
            return []
    for record in raw.records:
        record.default = UNKNOWN
    if absent == "unknown":
        return ["--absent unknown: labels an image is not given are unknown (0), not negative"]
    return [
        f"every one of the {len(raw.records)} labelled image(s) has exactly one label: read as single "
        "positives, every other label unknown (0); pass --absent negative if the other labels are truly absent"
    ]
