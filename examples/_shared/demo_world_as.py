"""Lay a generated demo world out as a public dataset would be, for the examples' small mode.

The examples run the exact commands a user runs on COCO or Pascal VOC. In CI there is no COCO
or VOC, so this script generates a demo world (``hspnet demo data``) and writes it in the same
layout: COCO instances JSON with ``train2014/`` and ``val2014/`` folders, or a VOC folder with
``Annotations/*.xml``, ``JPEGImages/`` and ``ImageSets/Main/{train,val}.txt``. The first 80% of
the images are the training set, the rest the test set.

Usage: python demo_world_as.py {coco|voc|folder} OUT [--images N] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from hspnet_cli.demo.world import generate_demo_world
from hspnet_cli.taxonomy import load_taxonomy


def _read_world(world: Path) -> list[tuple[str, list[str]]]:
    with open(world / "annotations.csv", newline="", encoding="utf-8") as fh:
        return [(row["image"], [n for n in row["labels"].split(";") if n]) for row in csv.DictReader(fh)]


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)  # a rerun lays the world out again
    try:
        os.link(src, dst)  # same bytes, no copy
    except OSError:
        shutil.copyfile(src, dst)


def as_coco(world: Path, out: Path, labels: list[str]) -> None:
    rows = _read_world(world)
    cut = int(len(rows) * 0.8)
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(labels)]
    cat_id = {c["name"]: c["id"] for c in cats}
    for part, chunk in (("train2014", rows[:cut]), ("val2014", rows[cut:])):
        images, anns = [], []
        for k, (image, names) in enumerate(chunk):
            images.append({"id": k + 1, "file_name": image, "width": 64, "height": 64})
            anns += [{"id": len(anns) + 1, "image_id": k + 1, "category_id": cat_id[n]} for n in names]
            _place(world / "images" / image, out / part / image)
        doc = {"images": images, "annotations": anns, "categories": cats}
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / f"instances_{part}.json").write_text(json.dumps(doc), encoding="utf-8")


def as_voc(world: Path, out: Path) -> None:
    rows = _read_world(world)
    cut = int(len(rows) * 0.8)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for part, chunk in (("train", rows[:cut]), ("val", rows[cut:])):
        ids = []
        for image, names in chunk:
            stem = Path(image).stem
            ids.append(stem)
            objects = "".join(f"<object><name>{escape(n)}</name><difficult>0</difficult></object>" for n in names)
            xml = f"<annotation><filename>{escape(image)}</filename>{objects}</annotation>\n"
            (out / "Annotations" / f"{stem}.xml").write_text(xml, encoding="utf-8")
            _place(world / "images" / image, out / "JPEGImages" / image)
        (out / "ImageSets" / "Main" / f"{part}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


def as_folder(world: Path, out: Path) -> None:
    """An unlabelled image folder, with the hidden truth kept aside for scripted reviewers."""
    for image, _ in _read_world(world):
        _place(world / "images" / image, out / "images" / image)
    shutil.copyfile(world / "annotations.csv", out / "truth.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", choices=["coco", "voc", "folder"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = args.out / "world"
    if not (world / "annotations.csv").exists():
        generate_demo_world(world, n_images=args.images, seed=args.seed)
    labels = load_taxonomy(world / "taxonomy.yaml").label_names
    shutil.copyfile(world / "taxonomy.yaml", args.out / "taxonomy.yaml")
    if args.layout == "coco":
        as_coco(world, args.out, labels)
    elif args.layout == "voc":
        as_voc(world, args.out)
    else:
        as_folder(world, args.out)


if __name__ == "__main__":
    main()
