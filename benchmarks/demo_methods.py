"""Methods and losses compared on the demo world (single-positive labels, CPU, tiny random model).

    .venv/bin/python benchmarks/demo_methods.py                  # SPL, SPL+GCN, HCP, HSPNet x AN, SPLC
    .venv/bin/python benchmarks/demo_methods.py --methods hspnet --losses an,splc,hill --epochs 30

Generates a demo world (default 2,000 images), splits it single-positive with 20% validation,
trains each (method, loss) with the ``demo`` preset otherwise, and prints validation mAP (best
epoch, raw or EMA), the label-frequency baseline, and the training time. The model's text tower
is random, so these numbers say how the methods behave without CLIP's language knowledge, not
what they reach with pretrained weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo preset's")
    parser.add_argument("--methods", default="spl,spl_gcn,hcp,hspnet")
    parser.add_argument("--losses", default="an,splc")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.train.loop import train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo_world(root / "world", n_images=args.images, seed=args.seed)
        make_split(
            root / "world" / "annotations.csv",
            root / "world" / "taxonomy.yaml",
            root / "split",
            options=SplitOptions(mode="single-positive", val_fraction=0.2, seed=args.seed),
        )
        for method in args.methods.split(","):
            for loss in args.losses.split(","):
                changes = {"model.method": method, "train.loss": loss, "train.seed": args.seed}
                if args.epochs:
                    changes["train.epochs"] = args.epochs
                config = apply_overrides(load_preset("demo"), changes)
                start = time.perf_counter()
                result = train(
                    root / "split", root / "world" / "images", root / f"run-{method}-{loss}", config, device="cpu"
                )
                rows.append(
                    {
                        "method": method,
                        "loss": loss,
                        "val_map": round(result.best_map, 4),
                        "best_epoch": result.best_epoch,
                        "source": result.best_source,
                        "baseline": round(result.baseline_map, 4),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'method':10} {'loss':6} {'val mAP':>8} {'baseline':>9} {'seconds':>8}")
    for r in rows:
        print(f"{r['method']:10} {r['loss']:6} {r['val_map']:8.3f} {r['baseline']:9.3f} {r['seconds']:8.1f}")


if __name__ == "__main__":
    main()
