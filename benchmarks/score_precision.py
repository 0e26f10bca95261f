"""How much the precision of the score product changes mAP (docs/training.md, "What a run does").

Synthetic COCO-sized validation set: 16,416 images x 80 labels, 1024-d features like RN50's
(a shared component, as CLIP features have, plus label signal and noise), ~2.9 positives per
image. Scores ``10 * cos(image, label)`` are computed three ways: float32 (what hspnet does),
and the same product inside bf16 and fp16 autocast (what the published step does under its
autocast). Prints distinct scores per class and mAP of each, then JSON. CPU only; seconds.

    python benchmarks/score_precision.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch.nn import functional as F

from hspnet_cli.evaluation.metrics import mean_average_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signal", type=float, default=0.1, help="weight of each positive label's direction")
    parser.add_argument("--noise", type=float, default=0.5, help="weight of the per-image noise direction")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    n, c, d = 16_416, 80, 1024
    common = F.normalize(torch.randn(d, generator=gen), dim=0)
    labels = F.normalize(common + 0.8 * F.normalize(torch.randn(c, d, generator=gen), dim=-1), dim=-1)
    targets = (torch.rand(n, c, generator=gen) < 2.9 / c).int()
    noise = F.normalize(torch.randn(n, d, generator=gen), dim=-1)
    images = common + args.signal * targets.float() @ labels + args.noise * noise

    def product() -> torch.Tensor:
        return 10.0 * F.normalize(images, dim=-1) @ F.normalize(labels, dim=-1).T

    full = product()
    rows = [("float32", full)]
    for name, dtype in (("bf16 autocast", torch.bfloat16), ("fp16 autocast", torch.float16)):
        try:
            with torch.autocast("cpu", dtype=dtype):
                rows.append((name, product().float()))
        except RuntimeError as exc:  # fp16 autocast is missing on some CPU builds
            print(f"{name}: not available on this CPU build ({exc})")
    y = targets.numpy()
    report = {}
    for name, scores in rows:
        distinct = [len(torch.unique(scores[:, j])) for j in range(c)]
        m = mean_average_precision(scores.numpy(), y).map
        print(
            f"{name:14s} mAP {100 * m:6.2f}   distinct scores per class: min {min(distinct):,} "
            f"median {int(np.median(distinct)):,} of {n:,}"
        )
        report[name] = {"map": round(100 * m, 2), "median_distinct_scores": int(np.median(distinct))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
