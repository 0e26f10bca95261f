"""COCO instances JSON (``instances_train2014.json``): categories, images, annotations.

Categories become labels by name (COCO's names are exactly the built-in ``coco`` taxonomy's);
an image's positives are the categories of its annotations, crowd regions included (the
object is in the image either way, as in the SPML preprocessing of Cole et al.). Images with
no annotation stay, with no positive, and are counted. ``file_name`` is the image path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hspnet_cli.data.labelset import POSITIVE, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, read_text
from hspnet_cli.errors import UserError

_SHOWN = 8


def _list(data: dict, key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise UserError(f"{path}: no '{key}' list; a COCO instances file has 'images', 'categories' and "
                        "'annotations' (image_info files without annotations cannot be split)")
    return value


def _field(entry: Any, key: str, kind: type | tuple[type, ...], what: str, position: int, path: Path) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
        raise UserError(f"{path}: {what} #{position + 1} has no valid '{key}'; every {what} needs one")
    return entry[key]


def _ids(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def read_coco(path: Path) -> RawAnnotations:
    """Read a COCO instances JSON file.

    Args:
        path: The JSON file.

    Returns:
        One record per entry of ``images`` (file order); ``declared`` holds the category names.

    Raises:
        UserError: Malformed JSON (with line and column), missing lists or fields, duplicate
            image or category ids, or annotations pointing at unknown image or category ids.
    """
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); "
                        "fix the file or download it again") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a COCO instances file (expected a JSON object with 'images', "
                        "'categories' and 'annotations')")
    categories: dict[int, str] = {}
    for i, cat in enumerate(_list(data, "categories", path)):
        cat_id = _field(cat, "id", int, "category", i, path)
        name = _field(cat, "name", str, "category", i, path).strip()
        if cat_id in categories:
            raise UserError(f"{path}: category id {cat_id} is listed twice ('{categories[cat_id]}' and "
                            f"'{name}'); each category needs its own id")
        categories[cat_id] = name
    images: dict[int, tuple[str, str]] = {}
    for i, image in enumerate(_list(data, "images", path)):
        image_id = _field(image, "id", int, "image", i, path)
        origin = f"{path}: image id {image_id}"
        file_name = normalize_image_path(_field(image, "file_name", str, "image", i, path), origin)
        if image_id in images:
            raise UserError(f"{origin}: image id {image_id} is listed twice in 'images'; each image needs its own id")
        images[image_id] = (file_name, origin)

    positives: dict[int, set[str]] = {image_id: set() for image_id in images}
    bad_images: list[Any] = []
    bad_categories: list[Any] = []
    for i, ann in enumerate(_list(data, "annotations", path)):
        try:  # the fast path: COCO train has ~600k annotations
            image_id, cat_id = ann["image_id"], ann["category_id"]
        except (KeyError, TypeError):
            _field(ann, "image_id", int, "annotation", i, path)
            _field(ann, "category_id", int, "annotation", i, path)
            raise  # pragma: no cover - _field raises first
        names = positives.get(image_id) if isinstance(image_id, int) else None
        if names is None:
            bad_images.append(image_id)
        elif cat_id not in categories:
            bad_categories.append(cat_id)
        else:
            names.add(categories[cat_id])
    # An annotation nobody can place means the file is cut or mixed from two sets: refuse.
    for bad, what in ((bad_images, "image id(s) not in 'images'"),
                      (bad_categories, "category id(s) not in 'categories'")):
        if bad:
            distinct = sorted(set(bad), key=str)
            raise UserError(f"{path}: {len(bad)} annotation(s) point at {len(distinct)} {what}: "
                            f"{_ids(distinct)}; the file is inconsistent (fix or download it again)")

    records = [Record(file_name, origin, {name: POSITIVE for name in sorted(positives[image_id])})
               for image_id, (file_name, origin) in images.items()]
    empty = sum(1 for names in positives.values() if not names)
    notes = [f"{empty} image(s) have no annotation; kept, with no positive label"] if empty else []
    declared = list(dict.fromkeys(categories.values()))
    return RawAnnotations(records, declared=declared, files=[path], notes=notes)
