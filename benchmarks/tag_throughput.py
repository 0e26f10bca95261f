"""``hspnet tag`` speed against a plain open_clip + DataLoader loop, and its memory at two sizes.

    .venv/bin/python benchmarks/tag_throughput.py                  # CPU: 2k and 20k demo images
    .venv/bin/python benchmarks/tag_throughput.py --sizes 2000 --workers 2

Each size runs in a fresh subprocess so peak RSS (ru_maxrss) is that run's alone:

* ``hspnet``: ``tag_images`` with a tiny trained-shape scorer (the demo model's architecture,
  random weights: speed does not depend on them), writing tags, embeddings and manifest;
* ``plain``: the same images through a bare DataLoader (PIL open + the same transform) and the
  same image tower, keeping nothing: the floor of what tagging can cost here.

Memory must stay flat from 2k to 20k images: outputs stream to disk, only the path list grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from PIL import Image
from hspnet_cli.demo.world import demo_taxonomy
from hspnet_cli.scoring.scorer import zero_shot
mode, images, out, workers, batch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
scorer = zero_shot(demo_taxonomy(), "hspnet-tiny-rn", "none")
start = time.perf_counter()
if mode == "hspnet":
    from hspnet_cli.tagging.run import tag_images
    summary = tag_images(images, out / "tags.csv", scorer, workers=workers, batch_size=batch, progress=False)
    n = summary.rows
else:
    files = sorted(images.rglob("*.png"))
    class DS(torch.utils.data.Dataset):
        def __len__(self): return len(files)
        def __getitem__(self, i):
            with Image.open(files[i]) as img:
                return scorer.transform(img.convert("RGB"))
    if workers:
        torch.multiprocessing.set_sharing_strategy("file_system")
    n = 0
    for batch_images in torch.utils.data.DataLoader(DS(), batch_size=batch, num_workers=workers):
        scorer(batch_images)
        n += len(batch_images)
seconds = time.perf_counter() - start
print(json.dumps({"mode": mode, "images": n, "seconds": round(seconds, 2), "images_per_second": round(n / seconds, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from hspnet_cli.demo.world import generate_demo_world

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            world = Path(tmp) / f"world-{size}"
            generate_demo_world(world, n_images=size, seed=0, workers=2)
            for mode in ("plain", "hspnet"):
                out = Path(tmp) / f"out-{size}-{mode}"
                out.mkdir()
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        mode,
                        str(world / "images"),
                        str(out),
                        str(args.workers),
                        str(args.batch_size),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'mode':8} {'images':>7} {'img/s':>8} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r['mode']:8} {r['images']:7d} {r['images_per_second']:8.1f} {r['peak_rss_mib']:13.1f}")


if __name__ == "__main__":
    main()
