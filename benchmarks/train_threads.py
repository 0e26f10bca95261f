"""Training speed by intra-op thread count next to DataLoader workers (CPU, demo preset).

    .venv/bin/python benchmarks/train_threads.py                      # threads 1..cores, 1 worker
    .venv/bin/python benchmarks/train_threads.py --workers 2 --threads 1,2 --epochs 2

Generates a demo world, splits it single-positive with 20% validation, and trains the ``demo``
preset for ``--epochs`` with each thread count (``OMP_NUM_THREADS`` is ignored here: each run
passes its count explicitly), printing the training images per second of the last epoch and the
wall time, then JSON. Measured on the project's shared 2-core machine under load (load average
~11), 1,000 images, 1 worker, 2 epochs: 1 thread (the rule) 113 img/s, 26 s; 2 threads (torch's
default) 8.4 img/s, 266 s. ``rule`` is what ``hspnet train`` picks without ``--threads``. Run it on the machine
in the state you care about (a busy shared machine shows the oversubscription most).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", default=None, help="comma-separated counts (default: 1..usable cores)")
    args = parser.parse_args()

    import os

    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.core.device import intra_op_threads, usable_cores
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.train.loop import train

    os.environ.pop("OMP_NUM_THREADS", None)
    cores = usable_cores()
    counts = [int(t) for t in args.threads.split(",")] if args.threads else list(range(1, cores + 1))
    rule = intra_op_threads(args.workers)
    print(f"{cores} usable cores, {args.workers} DataLoader worker(s); the rule picks {rule} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo_world(root / "world", n_images=args.images, seed=0)
        make_split(
            root / "world" / "annotations.csv",
            root / "world" / "taxonomy.yaml",
            root / "split",
            options=SplitOptions(mode="single-positive", val_fraction=0.2, seed=0),
        )
        config = apply_overrides(load_preset("demo"), {"train.epochs": args.epochs, "train.num_workers": args.workers})
        print(f"{'threads':>8} {'img/s':>8} {'wall s':>8}")
        rows = []
        for threads in counts:
            start = time.perf_counter()
            result = train(
                root / "split",
                root / "world" / "images",
                root / f"run-{threads}",
                config,
                taxonomy=root / "world" / "taxonomy.yaml",
                device="cpu",
                threads=threads,
            )
            wall = time.perf_counter() - start
            mark = "  (rule)" if threads == rule else ""
            rate = result.history[-1].images_per_second
            print(f"{threads:>8} {rate:>8.1f} {wall:>8.1f}{mark}")
            rows.append({"threads": threads, "images_per_second": rate, "wall_seconds": wall, "rule": threads == rule})
    print(json.dumps({"cores": cores, "workers": args.workers, "epochs": args.epochs, "runs": rows}))


if __name__ == "__main__":
    main()
