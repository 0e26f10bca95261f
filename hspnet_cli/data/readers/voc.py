"""Pascal VOC: a folder with ``Annotations/*.xml`` (and ``ImageSets/Main/<set>.txt`` lists).

Every ``<object>`` names a class; an image's positives are the classes of its objects. The
image path is ``JPEGImages/<filename>``, relative to the VOC folder.

Difficult objects (``<difficult>1</difficult>``) are the one real choice. VOC's own class
lists (``ImageSets/Main/<class>_train.txt``) mark a class seen only as difficult objects with
0, and the SPML preprocessing of Cole et al. (``format_pascal.py``), whose splits the
published numbers use, keeps only label 1: a difficult-only class is *not* a positive. That is
the default here (``ignore``: difficult objects are skipped), so splits stay comparable with
published results. ``unknown`` marks such a class 0 (neither positive nor negative: honest,
and what VOC's own evaluation does by ignoring difficult entries); ``positive`` counts it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, UNKNOWN, Record, clean_image_path
from hspnet_cli.data.readers.common import RawAnnotations, read_text

DIFFICULT_POLICIES = ("ignore", "unknown", "positive")
_POLICY_TEXT = {
    "ignore": "treated as absent (negative)",
    "unknown": "left unknown (0)",
    "positive": "counted as positive",
}


def _parse_xml(path: Path) -> tuple[ET.Element, bytes]:
    try:
        data = path.read_bytes()  # bytes, so expat honours the file's own encoding declaration
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return ET.fromstring(data), data
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise UserError(f"{path}:{line}:{column + 1}: malformed XML ({reason}); fix or restore the file") from None


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _set_ids(root: Path, image_set: str) -> list[tuple[str, str]]:
    set_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not _plain_name(image_set):
        raise UserError(
            f"--voc-set '{image_set}' must be the name of a list in ImageSets/Main (e.g. train), not a path"
        )
    if not set_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise UserError(f"{set_file}: no such image set; available: {', '.join(available) or 'none'}")
    ids = []
    for number, line in enumerate(read_text(set_file).splitlines(), start=1):
        if line.strip():
            image_id = line.split()[0]
            if not _plain_name(image_id):
                # the id names Annotations/<id>.xml: a path here would read a file outside the folder
                raise UserError(
                    f"{set_file}:{number}: image id '{image_id[:120]}' is not a plain file name "
                    "(it holds '/', '\\' or is '..'); list ids like 2008_000008"
                )
            ids.append((image_id, f"{set_file}:{number}"))
    if not ids:
        raise UserError(f"{set_file}: the image set is empty; list one image id a line")
    return ids


def read_voc(root: Path, image_set: str | None = None, difficult: str = "ignore") -> RawAnnotations:
    """Read a Pascal VOC folder.

    Args:
        root: The folder holding ``Annotations/`` (e.g. ``VOCdevkit/VOC2012``).
        image_set: Read only the ids in ``ImageSets/Main/<image_set>.txt`` (e.g. ``train``);
            None reads every XML file, sorted by name.
        difficult: ``ignore`` | ``unknown`` | ``positive``: what a class seen only as
            difficult objects becomes (see the module docstring).

    Returns:
        One record per XML file.

    Raises:
        UserError: No ``Annotations/`` folder, no XML files, a missing XML for a listed id,
            malformed XML (with line and column), or an object without a class name.
    """
    if difficult not in DIFFICULT_POLICIES:
        raise UserError(f"--voc-difficult must be one of {', '.join(DIFFICULT_POLICIES)}, got '{difficult}'")
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise UserError(
            f"{root}: not a Pascal VOC folder (no Annotations/ inside); pass the folder that "
            "holds Annotations/ and JPEGImages/, e.g. VOCdevkit/VOC2012"
        )
    files: list[Path] = []
    if image_set is not None:
        entries = []
        for image_id, where in _set_ids(root, image_set):
            xml = ann_dir / f"{image_id}.xml"
            if not xml.is_file():
                raise UserError(f"{where}: image id '{image_id}' has no annotation file {xml}")
            entries.append(xml)
        files.append(root / "ImageSets" / "Main" / f"{image_set}.txt")
    else:
        entries = sorted(ann_dir.glob("*.xml"))
        if not entries:
            raise UserError(f"{ann_dir}: no *.xml annotation files; is this the right folder?")

    records: list[Record] = []
    difficult_only = 0
    for xml in entries:
        files.append(xml)
        tree, data = _parse_xml(xml)
        if tree.tag != "annotation":
            raise UserError(f"{xml}:1: root element is <{tree.tag}>, not <annotation>; not a VOC annotation file")
        # Surrounding white space is the XML's layout, not part of the name.
        filename = (tree.findtext("filename") or "").strip() or f"{xml.stem}.jpg"
        try:
            image = "JPEGImages/" + clean_image_path(filename)  # a name inside JPEGImages/, never above it
        except ValueError as exc:
            line = data[: max(data.find(b"<filename"), 0)].count(b"\n") + 1
            raise UserError(f"{xml}:{line}: <filename> {exc}") from None
        clear: set[str] = set()
        hard: set[str] = set()
        for number, obj in enumerate(tree.findall("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise UserError(f"{xml}: <object> #{number} has no <name>; give every object its class name")
            flag = (obj.findtext("difficult") or "0").strip()
            if flag not in ("0", "1"):
                raise UserError(
                    f"{xml}: <object> #{number} ('{name[:80]}') has <difficult>{flag[:20]}</difficult>; "
                    "VOC writes 0 or 1"
                )
            (hard if flag == "1" else clear).add(name)
        values = {name: POSITIVE for name in sorted(clear)}
        hard_only = sorted(hard - clear)  # a clear instance of the class settles it whatever the policy
        if difficult != "ignore":
            values.update({name: POSITIVE if difficult == "positive" else UNKNOWN for name in hard_only})
        difficult_only += len(hard_only)
        records.append(Record(image, str(xml), values))
    notes = []
    if difficult_only:
        notes.append(
            f"{difficult_only} image label(s) are present only as difficult objects: "
            f"{_POLICY_TEXT[difficult]} (--voc-difficult {difficult})"
        )
    return RawAnnotations(records, declared=None, files=files, notes=notes)
