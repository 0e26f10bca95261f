"""COCO instances JSON (``instances_train2014.json``): categories, images, annotations.

Categories become labels by name (COCO's names are exactly the built-in ``coco`` taxonomy's);
an image's positives are the categories of its annotations, crowd regions included (the
object is in the image either way, as in the SPML preprocessing of Cole et al.). Images with
no annotation stay, with no positive, and are counted. ``file_name`` is the image path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, Record, clean_image_path
from hspnet_cli.data.readers.common import RawAnnotations, describe, json_where, parse_json, read_text

_SHOWN = 8


class _Doc:
    """The parsed file and its text, so a message can name the line of a bad value."""

    def __init__(self, path: Path, text: str, data: dict) -> None:
        self.path, self.text, self.data = path, text, data

    def fail(self, steps: list[str | int], problem: str) -> UserError:
        return UserError(f"{json_where(self.path, self.text, steps)} {problem}")

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            found = "the key is missing" if key not in self.data else f"it is {describe(value)}"
            raise UserError(
                f"{self.path}: no '{key}' list ({found}); a COCO instances file has 'images', "
                "'categories' and 'annotations' (image_info files without annotations cannot be split)"
            )
        return value

    def entry(self, key: str, i: int, entry: Any, what: str) -> dict:
        if not isinstance(entry, dict):
            raise self.fail([key, i], f"is {describe(entry)}; every {what} is an object with {_NEEDS[key]}")
        return entry

    def field(self, key: str, i: int, entry: dict, name: str, kind: type) -> Any:
        value = entry.get(name)
        if type(value) is not kind:  # bool is an int subclass; true is no id
            found = "is missing" if name not in entry else f"is {describe(value)}"
            want = "a whole number" if kind is int else "text"
            raise self.fail([key, i, name], f"{found}; it must be {want} ({_NEEDS[key]})")
        return value


_NEEDS = {
    "categories": "'id' (a whole number) and 'name' (text)",
    "images": "'id' (a whole number) and 'file_name' (text)",
    "annotations": "'image_id' and 'category_id' (whole numbers)",
}


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
        UserError: Malformed JSON (with line and column), missing lists or fields, a field of
            the wrong type (named by line and JSON path, e.g. ``annotations[3].image_id``),
            an image path leaving the images folder, duplicate image or category ids, or
            annotations pointing at unknown image or category ids.
    """
    text = read_text(path)
    data = parse_json(text, path, "fix the file or download it again")
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: not a COCO instances file (expected a JSON object with 'images', 'categories' and 'annotations')"
        )
    doc = _Doc(path, text, data)
    categories: dict[int, str] = {}
    for i, cat in enumerate(doc.list("categories")):
        cat = doc.entry("categories", i, cat, "category")
        cat_id = doc.field("categories", i, cat, "id", int)
        name = doc.field("categories", i, cat, "name", str).strip()
        if cat_id in categories:
            raise doc.fail(
                ["categories", i, "id"],
                f"category id {cat_id} is listed twice ('{categories[cat_id]}' "
                f"and '{name}'); each category needs its own id",
            )
        categories[cat_id] = name
    images: dict[int, tuple[str, str]] = {}
    for i, image in enumerate(doc.list("images")):
        image = doc.entry("images", i, image, "image")
        image_id = doc.field("images", i, image, "id", int)
        origin = f"{path}: image id {image_id}"
        try:
            file_name = clean_image_path(doc.field("images", i, image, "file_name", str))
        except ValueError as exc:
            raise doc.fail(["images", i, "file_name"], str(exc)) from None
        if image_id in images:
            raise doc.fail(
                ["images", i, "id"], f"image id {image_id} is listed twice in 'images'; each image needs its own id"
            )
        images[image_id] = (file_name, origin)

    positives: dict[int, set[str]] = {image_id: set() for image_id in images}
    bad_images: list[int] = []
    bad_categories: list[int] = []
    for i, ann in enumerate(doc.list("annotations")):
        try:  # the fast path: COCO train has ~600k annotations
            image_id, cat_id = ann["image_id"], ann["category_id"]
        except (KeyError, TypeError, IndexError):
            ann = doc.entry("annotations", i, ann, "annotation")
            image_id = doc.field("annotations", i, ann, "image_id", int)
            cat_id = doc.field("annotations", i, ann, "category_id", int)
        if type(image_id) is not int or type(cat_id) is not int:
            doc.field("annotations", i, ann, "image_id", int)
            doc.field("annotations", i, ann, "category_id", int)
        names = positives.get(image_id)
        if names is None:
            bad_images.append(image_id)
        elif cat_id not in categories:
            bad_categories.append(cat_id)
        else:
            names.add(categories[cat_id])
    # An annotation nobody can place means the file is cut or mixed from two sets: refuse.
    for bad, what in (
        (bad_images, "image id(s) not in 'images'"),
        (bad_categories, "category id(s) not in 'categories'"),
    ):
        if bad:
            distinct = sorted(set(bad), key=str)
            raise UserError(
                f"{path}: {len(bad)} annotation(s) point at {len(distinct)} {what}: "
                f"{_ids(distinct)}; the file is inconsistent (fix or download it again)"
            )

    records = [
        Record(file_name, origin, {name: POSITIVE for name in sorted(positives[image_id])})
        for image_id, (file_name, origin) in images.items()
    ]
    empty = sum(1 for names in positives.values() if not names)
    notes = [f"{empty} image(s) have no annotation; kept, with no positive label"] if empty else []
    declared = list(dict.fromkeys(categories.values()))
    return RawAnnotations(records, declared=declared, files=[path], notes=notes)
