"""How well ``hspnet dedup`` finds planted near-duplicates in the demo world, over thresholds.

Run on demand (a few minutes of CPU: it trains the demo model once, reused afterwards)::

    PYTHONPATH=. .venv/bin/python benchmarks/dedup_quality.py [--work DIR] [--images 3000]

What it does:

1. a demo world of ``--images`` images and the ``demo`` preset trained on its first half
   (``benchmarks/quality_world.py``; the same model the audit benchmark uses);
2. a folder with every world image plus, for 10% of them (seeded), one altered copy: resized
   to 75% (Lanczos), cropped by 5% of each side's length (at a seeded offset), re-encoded as
   JPEG quality 50, or mirrored left-right (a quarter of the copies each);
3. ``hspnet tag`` of that folder with (a) the trained demo model and (b) the same tiny
   architecture with random weights (what an untrained encoder gives), then ``hspnet dedup``
   at each threshold, with whitened (the default) and raw embeddings;
4. precision and recall of the groups as pairs: a true pair is an original and its copy; a
   found pair is two images in one group. Recall = true pairs found / true pairs; precision =
   found pairs that are true / found pairs. Also per alteration, and whether the keeper
   (most pixels, then earliest path) is the original where the original is larger.

The demo model is tiny and trained on 64 px synthetic shapes: these numbers describe it, not a
pretrained CLIP; docs/quality.md says how to pick a threshold for your own features. The last
line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_world import prepare  # noqa: E402

THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
ALTERATIONS = ("resized", "cropped", "jpeg50", "mirrored")


def alter(src: Path, kind: str, dst_dir: Path, rng: np.random.Generator) -> Path:
    """Write the altered copy of ``src`` into ``dst_dir``; return its path."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        if kind == "resized":
            out, ext = im.resize((round(w * 0.75), round(h * 0.75)), Image.LANCZOS), ".png"
        elif kind == "cropped":
            dw, dh = max(1, round(w * 0.05)), max(1, round(h * 0.05))
            x, y = int(rng.integers(0, dw + 1)), int(rng.integers(0, dh + 1))
            out, ext = im.crop((x, y, x + w - dw, y + h - dh)), ".png"
        elif kind == "jpeg50":
            out, ext = im, ".jpg"
        else:
            out, ext = ImageOps.mirror(im), ".png"
        path = dst_dir / f"{src.stem}.{kind}{ext}"
        out.save(path, quality=50) if ext == ".jpg" else out.save(path)
    return path


def build_folder(world_images: Path, folder: Path, seed: int) -> list[tuple[str, str, str]]:
    """Originals under ``orig/``, copies under ``copy/``; returns (original key, copy key, alteration)."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "orig").mkdir(parents=True)
    (folder / "copy").mkdir()
    images = sorted(world_images.iterdir())
    for p in images:
        shutil.copy2(p, folder / "orig" / p.name)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=len(images) // 10, replace=False)
    pairs = []
    for j, i in enumerate(sorted(chosen)):
        kind = ALTERATIONS[j % len(ALTERATIONS)]
        copy = alter(images[i], kind, folder / "copy", rng)
        pairs.append((f"orig/{images[i].name}", f"copy/{copy.name}", kind))
    return pairs


def read_groups(dups: Path) -> tuple[dict[int, list[str]], dict[int, str]]:
    groups: dict[int, list[str]] = {}
    keepers: dict[int, str] = {}
    with open(dups, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            g = int(row["group"])
            groups.setdefault(g, []).append(row["key"])
            if row["keep"] == "1":
                keepers[g] = row["key"]
    return groups, keepers


def score(groups: dict[int, list[str]], pairs: list[tuple[str, str, str]]) -> dict:
    group_of = {k: g for g, keys in groups.items() for k in keys}
    truth = {frozenset((a, b)) for a, b, _ in pairs}
    found = sum(len(keys) * (len(keys) - 1) // 2 for keys in groups.values())  # pairs in one group
    tp = sum(1 for a, b, _ in pairs if a in group_of and group_of.get(a) == group_of.get(b))
    by_kind = {}
    for kind in ALTERATIONS:
        mine = [(a, b) for a, b, k in pairs if k == kind]
        hit = sum(1 for a, b in mine if a in group_of and group_of.get(a) == group_of.get(b))
        by_kind[kind] = round(hit / max(1, len(mine)), 4)
    return {
        "precision": round(tp / found, 4) if found else 1.0,
        "recall": round(tp / len(truth), 4),
        "found_pairs": found,
        "true_pairs": len(truth),
        "groups": len(groups),
        "exact_groups": sum(1 for keys in groups.values() if frozenset(keys) in truth),
        "recall_by_alteration": by_kind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/hspnet-quality-bench"))
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-tags", action="store_true", help="Keep tag outputs of an earlier run.")
    args = parser.parse_args()

    from hspnet_cli.dedup import DedupOptions, run_dedup
    from hspnet_cli.scoring.scorer import load_scorer, zero_shot
    from hspnet_cli.tagging.run import tag_images
    from hspnet_cli.taxonomy import load_taxonomy

    started = time.perf_counter()
    world = prepare(args.work, args.images, args.epochs, args.seed)
    print(f"world + demo model: {world}")
    folder = args.work / "dedup-images"
    pairs = build_folder(Path(world["images"]), folder, args.seed)
    print(f"{len(pairs)} altered copies among {len(pairs) + args.images} images")
    models = {
        "trained demo model (hspnet-tiny-rn, demo preset, first half of the world)": load_scorer(world["checkpoint"]),
        "random weights (hspnet-tiny-rn, untrained)": zero_shot(
            load_taxonomy(world["taxonomy"]), "hspnet-tiny-rn", None
        ),
    }
    results = {}
    for name, scorer in models.items():
        tag_dir = args.work / ("dedup-tags-trained" if name.startswith("trained") else "dedup-tags-random")
        t0 = time.perf_counter()
        if not args.reuse_tags or not (tag_dir / "tags.csv").is_file():
            tag_images(folder, tag_dir / "tags.csv", scorer, progress=False, overwrite=True)
        for whiten in (True, False):
            rows = {}
            for t in THRESHOLDS:
                dups = tag_dir / f"dups-{'w' if whiten else 'raw'}-{t:.3f}.csv"
                facts = run_dedup(tag_dir / "tags.csv", dups, DedupOptions(threshold=t, whiten=whiten)).facts
                groups, keepers = read_groups(dups)
                rows[f"{t:.3f}"] = r = {
                    **score(groups, pairs),
                    "largest_group": facts["largest_group"],
                    "seconds": facts["seconds"],
                }
                larger = [a for a, b, k in pairs if k == "resized"]
                group_of = {k: g for g, keys in groups.items() for k in keys}
                r["resized_keeper_is_original"] = (
                    f"{sum(1 for a in larger if a in group_of and keepers[group_of[a]] == a)}"
                    f"/{sum(1 for a in larger if a in group_of)}"
                )
                print(
                    f"[{name[:22]}, {'whitened' if whiten else 'raw'}] threshold {t:.3f}: precision "
                    f"{r['precision']:.3f} recall {r['recall']:.3f} ({r['found_pairs']} pairs found, {r['groups']} "
                    f"groups, {r['exact_groups']} exact, largest {r['largest_group']}) by alteration "
                    f"{r['recall_by_alteration']}; resized: keeper is the original {r['resized_keeper_is_original']}",
                    flush=True,
                )
            results[f"{name}, {'whitened' if whiten else 'raw'}"] = {"thresholds": rows}
        results[name] = {"tag_and_dedup_seconds": round(time.perf_counter() - t0, 1)}
    print(
        json.dumps(
            {
                "benchmark": "dedup_quality",
                "images": args.images + len(pairs),
                "copies": len(pairs),
                "world": {k: v for k, v in world.items() if k.endswith("seconds") or k == "val_map"},
                "results": results,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
