"""Speed-up of ``--cache-features`` (frozen image tower) and that it changes no metric.

    .venv/bin/python benchmarks/feature_cache.py                        # CPU, tiny model, demo world
    python benchmarks/feature_cache.py --clip-model RN50 --image-size 224 --device cuda --images 4000

Trains the same frozen-tower run twice on a generated demo world, without and with the feature
cache, and prints seconds per epoch, total seconds (the cached run's includes computing the
features once, before its first epoch) and validation mAP of both.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-model", "--model", dest="model", default="hspnet-tiny-rn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HSPNET_CACHE"] = str(root / "cache")
        generate_demo_world(root / "world", n_images=args.images, seed=0, image_size=min(args.image_size, 256))
        make_split(
            root / "world" / "annotations.csv",
            root / "world" / "taxonomy.yaml",
            root / "split",
            options=SplitOptions(val_fraction=0.2),
        )
        out = {}
        for cached in (False, True):
            config = apply_overrides(
                load_preset("demo"),
                {
                    "model.clip_model": args.model,
                    "model.freeze_image_encoder": True,
                    "train.cache_features": cached,
                    "train.epochs": args.epochs,
                    "train.image_size": args.image_size,
                    "train.num_workers": args.workers,
                },
            )
            start = time.perf_counter()
            result = train(
                root / "split", root / "world" / "images", root / f"run-{cached}", config, device=args.device
            )
            out["cached" if cached else "uncached"] = {
                "total_seconds": round(time.perf_counter() - start, 1),
                "epoch_seconds": [round(r.seconds, 2) for r in result.history],
                "val_map": [round(r.val_map_raw, 5) for r in result.history],
            }
        u, c = out["uncached"]["epoch_seconds"], out["cached"]["epoch_seconds"]
        out["epoch_speedup"] = round(sum(u) / max(sum(c), 1e-9), 1)
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
