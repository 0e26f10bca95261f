"""Files labeling tools and hspnet itself write: CVAT 1.1 XML, Hugging Face ``metadata.jsonl``,
FiftyOne's image classification layout, and hspnet's own tag outputs.

- CVAT for images 1.1 (``<annotations>`` XML): every ``<image name=...>`` is a labelled image;
  its image-level ``<tag label=...>`` elements are its positives (an image without tags has
  none). The ``<meta>`` labels are the labels the file annotates. Image names are mapped back
  to relative paths like Label Studio references (``http(s)://`` and ``s3://`` prefixes dropped).
  Read as a stream (``xml.sax``: no DTDs or external entities are fetched) with line numbers.
- Hugging Face imagefolder ``metadata.jsonl``: ``{"file_name": ..., "labels": [names]}`` (or
  ``"label": name``) one a line; other keys (``scores``, ``groups``) are ignored.
- FiftyOne image classification dataset (a folder, or its ``labels.json``): ``labels.json``
  ``{"classes": [...], "labels": {sample: target}}`` with a target an index or name, a
  ``{"label": ...}`` object, a list of those, or null (unlabelled: left out); images from
  ``data.json`` (sample -> path) or ``data/<sample>.<ext>``.
- hspnet's own tags (``tags.csv``: ``path,tags,scores,groups``; ``tags.jsonl``: ``path``,
  ``tags``): the tags a model chose. Text cells are unescaped
  (:func:`hspnet_cli.tagsfile.escape.unescape`: the one escape pair), unless the manifest
  beside the file says they were written before escaping; no other manifest fact is needed.

Image keys in these files are the ``/``-separated keys hspnet wrote, so a backslash in them is
part of the file name (``keep_backslash``), unlike in hand-written annotation files.
"""

from __future__ import annotations

import json
import os
import xml.sax
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, json_objects, parse_json, read_text
from hspnet_cli.data.readers.labelstudio import path_from_ref
from hspnet_cli.tagsfile.escape import unescape as _unescape

TAGS_HEADER = ["path", "tags", "scores", "groups"]


class _CvatHandler(xml.sax.ContentHandler):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.stack = path, []  # type: ignore[var-annotated]
        self.records: list[Record] = []
        self.declared: list[str] = []
        self.text: list[str] = []
        self.image: Record | None = None
        self.locator: Any = None

    def setDocumentLocator(self, locator: Any) -> None:  # noqa: N802 - the sax API's name
        self.locator = locator

    def where(self) -> str:
        return f"{self.path}:{self.locator.getLineNumber() if self.locator else '?'}"

    def startElement(self, name: str, attrs: Any) -> None:  # noqa: N802
        if not self.stack and name != "annotations":
            raise UserError(f"{self.where()}: expected CVAT for images 1.1 XML (<annotations>), found <{name}>")
        self.stack.append(name)
        self.text = []
        if name == "image" and len(self.stack) == 2:
            if "name" not in attrs:
                raise UserError(f"{self.where()}: <image> without a name attribute")
            self.image = Record(path_from_ref(attrs["name"], self.where()), self.where(), {})
        elif name == "tag" and self.image is not None:
            label = (attrs.get("label") or "").strip()
            if not label:
                raise UserError(f"{self.where()}: <tag> without a label attribute")
            self.image.values[label] = POSITIVE

    def characters(self, content: str) -> None:
        self.text.append(content)

    def endElement(self, name: str) -> None:  # noqa: N802
        if name == "name" and self.stack[-2:-1] == ["label"] and "meta" in self.stack:
            self.declared.append("".join(self.text).strip())
        elif name == "image" and self.image is not None and len(self.stack) == 2:
            self.records.append(self.image)
            self.image = None
        self.stack.pop()


def read_cvat(path: Path) -> RawAnnotations:
    """Read CVAT for images 1.1 XML (image-level tags; see the module docstring).

    Raises:
        UserError: Not well-formed XML or not CVAT's layout (file:line).
    """
    handler = _CvatHandler(path)
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setFeature(xml.sax.handler.feature_external_pes, False)
    parser.setContentHandler(handler)
    try:
        parser.parse(str(path))
    except xml.sax.SAXParseException as exc:
        raise UserError(
            f"{path}:{exc.getLineNumber()}:{exc.getColumnNumber()}: not well-formed XML "
            f"({exc.getMessage()}); was the file cut short?"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    declared = [d for d in handler.declared if d] or None
    return RawAnnotations(handler.records, declared=declared, files=[path])


def _names(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f'{where}: "{key}" must be a list of label names, e.g. "{key}": ["cat", "dog"]')
    return [v.strip() for v in value if v.strip()]


def read_hf_metadata(path: Path) -> RawAnnotations:
    """Read a Hugging Face imagefolder ``metadata.jsonl`` (``file_name`` + ``labels`` or ``label``).

    Raises:
        UserError: A line that is not a JSON object, lacks ``file_name``, or whose labels are not names.
    """
    records = []
    for where, entry in json_objects(path):
        if not isinstance(entry.get("file_name"), str):
            raise UserError(f'{where}: expected "file_name" (the image path relative to metadata.jsonl)')
        key = "labels" if "labels" in entry else "label"
        if key not in entry:
            raise UserError(f'{where}: expected "labels" (a list of label names) or "label" (one name)')
        names = _names(entry[key], where, key)
        records.append(
            Record(
                normalize_image_path(entry["file_name"], where, keep_backslash=True),
                where,
                dict.fromkeys(names, POSITIVE),
            )
        )
    return RawAnnotations(records, declared=None, files=[path])


def read_tags(path: Path) -> RawAnnotations:
    """Read hspnet's own ``tags.csv`` (``path,tags,scores,groups``) or ``tags.jsonl`` (``path``, ``tags``).

    Raises:
        UserError: A wrong header, a malformed row, or a row without ``path`` / ``tags`` (file:line).
    """
    from hspnet_cli.data.readers.tabular import csv_rows

    records = []
    if path.is_dir():  # a --format parquet folder: read through its JSONL view
        from hspnet_cli.tagsfile.parquet_view import parquet_view_file

        path = parquet_view_file(path)
    # Cells are escaped (tagsfile.escape) unless the manifest beside says the output predates it.
    text = _unescape if _tags_escaped(path) else (lambda cell: cell)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for where, entry in json_objects(path):
            if not isinstance(entry.get("path"), str) or "tags" not in entry:
                raise UserError(f'{where}: expected "path" and "tags" as hspnet tag --format jsonl writes them')
            names = _names(entry["tags"], where, "tags")  # JSON strings: names as they are
            records.append(
                Record(
                    normalize_image_path(text(entry["path"]), where, keep_backslash=True),
                    where,
                    dict.fromkeys(names, POSITIVE),
                )
            )
        return RawAnnotations(records, declared=None, files=[path])
    rows = csv_rows(path, read_text(path))
    header = next(rows, None)
    if header is None or [c.strip() for c in header[1]] != TAGS_HEADER:
        raise UserError(f"{path}:1: expected the header {','.join(TAGS_HEADER)} of hspnet tag")
    for number, cells in rows:
        where = f"{path}:{number}"
        if len(cells) != len(TAGS_HEADER):
            raise UserError(f"{where}: expected 4 cells ({','.join(TAGS_HEADER)}), found {len(cells)}")
        names = [text(n) for n in cells[1].split(";") if n]
        records.append(
            Record(
                normalize_image_path(text(cells[0]), where, keep_backslash=True), where, dict.fromkeys(names, POSITIVE)
            )
        )
    return RawAnnotations(records, declared=None, files=[path])


def _tags_escaped(path: Path) -> bool:
    """Whether a tag output's text cells are escaped: yes, unless its manifest (``STEM.manifest.json``
    beside it) exists without ``text_escaping`` (an output written before escaping)."""
    manifest = path.with_suffix(".manifest.json")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return True
    return not isinstance(doc, dict) or bool(doc.get("text_escaping", 0))


def _fo_target(value: Any, classes: list[str], where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    names = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("label")
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise UserError(f'{where}: expected a class index, a name or {{"label": ...}}, found {json.dumps(item)}')
        if isinstance(item, int):
            if not 0 <= item < len(classes):
                raise UserError(f'{where}: class index {item} is outside "classes" (0..{len(classes) - 1})')
            item = classes[item]
        names.append(item)
    return names


def _fo_media(folder: Path, files: list[Path]) -> dict[str, str]:
    """FiftyOne sample id -> image key, from ``data.json`` or ``data/`` (ids drop extensions, as FiftyOne's do)."""
    media: dict[str, str] = {}
    manifest = folder / "data.json"
    if manifest.is_file():
        files.append(manifest)
        entries = parse_json(read_text(manifest), manifest, "FiftyOne's data.json maps sample ids to image paths")
        if not isinstance(entries, dict):
            raise UserError(f"{manifest}: expected an object mapping sample ids to image paths")
        for key, value in entries.items():
            where = f"{manifest}: sample {key}"
            if not isinstance(value, str):
                raise UserError(f"{where}: the image path must be a string")
            if Path(value).is_absolute():
                # hspnet writes image keys as ids; any other absolute path has no images root here.
                if not value.replace("\\", "/").endswith("/" + key.replace("\\", "/")):
                    raise UserError(
                        f"{where}: image path '{value}' is absolute and its id is not its path "
                        "under an images folder; write paths relative to the dataset folder"
                    )
                image = normalize_image_path(key, where, keep_backslash=True)
            else:
                image = path_from_ref(value, where)
            media[os.path.splitext(key)[0]] = image
    elif (folder / "data").is_dir():
        for p in sorted((folder / "data").rglob("*")):
            if p.is_file():
                media[p.relative_to(folder / "data").with_suffix("").as_posix()] = p.relative_to(folder).as_posix()
    return media


def read_fiftyone(path: Path) -> RawAnnotations:
    """Read FiftyOne's image classification dataset (the folder or its ``labels.json``).

    Image keys: ``data.json`` ids when its paths are absolute (what ``hspnet export-labels``
    writes), else its paths, or ``data/<file>``, relative to the dataset folder.

    Raises:
        UserError: A missing ``labels.json``, a layout that is not FiftyOne's, a sample without
            an image, or a class index outside ``classes``.
    """
    folder = path if path.is_dir() else path.parent
    labels_file = folder / "labels.json" if path.is_dir() else path
    if not labels_file.is_file():
        raise UserError(
            f"{folder}: no labels.json; a FiftyOne image classification dataset holds labels.json "
            "and data/ (or data.json)"
        )
    doc = parse_json(read_text(labels_file), labels_file, "write FiftyOne's labels.json as JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise UserError(f'{labels_file}: expected {{"classes": [...], "labels": {{sample: target}}}}')
    classes = doc.get("classes")
    if classes is None:
        classes = []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError(
            f'{labels_file}: "classes" must be a list of class names, found '
            f"{json.dumps(classes, ensure_ascii=False)[:60]}"
        )
    files = [labels_file]
    media = _fo_media(folder, files)
    if not path.is_dir():
        files = [labels_file]  # split.yaml digests files relative to the input: labels.json given, it alone
    records, unlabelled = [], 0
    for sample, target in doc["labels"].items():
        where = f"{labels_file}: sample {sample}"
        if sample not in media:
            raise UserError(f"{where}: no image for this sample in data.json or data/")
        if target is None:
            unlabelled += 1
            continue
        records.append(Record(media[sample], where, dict.fromkeys(_fo_target(target, classes, where), POSITIVE)))
    notes = [f"{unlabelled} sample(s) without a label left out as unlabelled"] if unlabelled else []
    return RawAnnotations(records, declared=list(classes) or None, files=files, notes=notes)
