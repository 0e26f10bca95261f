"""What the input checks cost on COCO-sized annotations: reading, and ``--check-images``.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/read_annotations.py [--images 118287 --annotations 604907]``

Writes a synthetic COCO instances file the size of ``instances_train2014``-like data (ids,
80 categories, file names; no boxes beyond what the reader ignores) and times
:func:`hspnet_cli.data.read_annotations` on it (best of ``--repeat``), then ``check_images``
over empty files in nested folders (the per-folder real-path check plus one ``lstat`` and one
``stat`` per image), and the error path: locating ``annotations[N-1].image_id`` by line in the
whole text. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--annotations", type=int, default=604_907)
    parser.add_argument("--check-files", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from hspnet_cli.data import read_annotations
    from hspnet_cli.data.image_check import check_images
    from hspnet_cli.data.readers.common import json_where
    from hspnet_cli.taxonomy import load_taxonomy

    coco = load_taxonomy("coco")
    rng = np.random.default_rng(0)
    out: dict[str, float | int] = {"images": args.images, "annotations": args.annotations}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        doc = {
            "images": [
                {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 640, "height": 480}
                for i in range(args.images)
            ],
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(coco.label_names)],
            "annotations": [
                {"id": k, "image_id": int(i), "category_id": int(c) + 1, "iscrowd": 0}
                for k, (i, c) in enumerate(
                    zip(rng.integers(0, args.images, args.annotations), rng.integers(0, 80, args.annotations))
                )
            ],
        }
        path = root / "instances.json"
        path.write_text(json.dumps(doc, indent=1))
        out["file_mb"] = round(path.stat().st_size / 2**20, 1)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            labels, _ = read_annotations(path, coco)
            times.append(time.perf_counter() - start)
        out["read_s"] = round(min(times), 3)
        assert labels.n_images == args.images

        text = path.read_text()
        start = time.perf_counter()
        where = json_where(path, text, ["annotations", args.annotations - 1, "image_id"])
        out["locate_last_annotation_s"] = round(time.perf_counter() - start, 3)
        out["located"] = where.rsplit("/", 1)[-1]

        images = root / "images"
        entries = []
        for i in range(args.check_files):
            rel = f"part{i % 100:02d}/{i:08d}.jpg"
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            (images / rel).touch()
            entries.append((rel, f"x:{i}"))
        start = time.perf_counter()
        check_images(entries, images)
        out["check_images_files"] = args.check_files
        out["check_images_s"] = round(time.perf_counter() - start, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
