"""Is the demo world learnable, and not trivially so? Train a small CNN on it and print mAP.

Run on demand (it takes a few minutes of CPU)::

    .venv/bin/python benchmarks/demo_world_learnability.py            # defaults below
    .venv/bin/python benchmarks/demo_world_learnability.py --epochs 4 --train 1000

It generates a training world and a test world (different seeds, so no test image is a copy
of a training image), trains a few-layer CNN on the FULL labels with binary cross-entropy, and
after every epoch prints the test mAP (macro average precision over labels, as
``sklearn.metrics.average_precision_score``) next to the label-frequency baseline (every image
gets each label's training frequency as its score, which scores mAP = mean test prevalence).

What "learnable" means here: the CNN should beat the baseline clearly within the first epoch or
two and reach mAP > 0.8 within about 2-3 minutes on a 2-core CPU, without hitting ~1.0 after
one epoch (that would make the world too easy to tell methods apart on).

Measured with the defaults on the project's 2-core machine (generator version 1, otherwise idle):
generation 2.8 s; baseline mAP 0.130; test mAP 0.26 after epoch 1, 0.82 after epoch 8 (56 s),
0.90 after epoch 15 (107 s of training, 1 min 55 s in all). The hardest labels are the
within-group look-alikes: zigzag/wave (0.71/0.80), square (0.75), arrow (0.78).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import average_precision_score
from torch import nn

from hspnet_cli.demo.world import demo_taxonomy, generate_demo_world, read_demo_annotations


def load_world(world_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    """Read a demo world into memory.

    Args:
        world_dir: Folder written by ``generate_demo_world``.

    Returns:
        ``(images, labels)``: (N, 3, H, W) uint8 tensor and (N, num_labels) 0/1 float32 array
        in taxonomy label order.
    """
    taxonomy = demo_taxonomy()
    rows = read_demo_annotations(world_dir)
    images = np.stack([np.asarray(Image.open(world_dir / "images" / name).convert("RGB")) for name, _ in rows])
    labels = np.zeros((len(rows), taxonomy.num_labels), dtype=np.float32)
    for i, (_, names) in enumerate(rows):
        labels[i, [taxonomy.label_index(n) for n in names]] = 1.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


class SmallCNN(nn.Module):
    """Four conv blocks (conv-BN-ReLU, max-pool) and a linear head.

    The head reads global max- and average-pooled features: an object covering a small part
    of the image is better seen by the maximum than diluted in the average.
    """

    def __init__(self, num_labels: int, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * chans[-1], num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1))


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float, roughly zero-mean unit-variance."""
    return (batch.float() / 255.0 - 0.5) / 0.25


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Sigmoid scores of ``model`` for every image, as an (N, num_labels) array."""
    model.eval()
    out = [torch.sigmoid(model(to_float(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def macro_map(labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro mAP over the labels that occur in ``labels`` (AP is undefined for the others)."""
    present = labels.sum(axis=0) > 0
    return float(average_precision_score(labels[:, present], scores[:, present], average="macro"))


def main(argv: list[str] | None = None) -> int:
    """Generate, train, evaluate and print; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--test", type=int, default=500, help="test images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="training world seed; the test world uses seed+1")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (and generation processes)")
    parser.add_argument("--min-map", type=float, default=None, help="exit 1 if the final test mAP is lower")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="demo-learnability-") as tmp:
        t0 = time.perf_counter()
        train_sum = generate_demo_world(
            Path(tmp) / "train", args.train, seed=args.seed, image_size=args.size, workers=args.threads
        )
        generate_demo_world(
            Path(tmp) / "test", args.test, seed=args.seed + 1, image_size=args.size, workers=args.threads
        )
        gen_s = time.perf_counter() - t0
        x_train, y_train = load_world(Path(tmp) / "train")
        x_test, y_test = load_world(Path(tmp) / "test")
    print(
        f"generated {args.train} + {args.test} images of {args.size} px in {gen_s:.1f} s "
        f"({args.threads} process(es)); {train_sum.mean_labels_per_image:.2f} labels/image, "
        f"co-occurrence within/across groups {train_sum.cooccurrence_ratio:.1f}x"
    )

    prevalence = y_train.mean(axis=0)
    baseline = macro_map(y_test, np.broadcast_to(prevalence, y_test.shape))
    print(f"label-frequency baseline: test mAP {baseline:.3f} (mean test prevalence {y_test.mean(axis=0).mean():.3f})")

    model = SmallCNN(y_train.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(x_train) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.BCEWithLogitsLoss()
    y_train_t = torch.from_numpy(y_train)
    t_train = time.perf_counter()
    final = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i : i + args.batch]
            xb = to_float(x_train[idx])
            # Flips keep every label's identity (a mirrored arrow is still an arrow): cheap augmentation.
            if torch.rand(()) < 0.5:
                xb = xb.flip(3)
            loss = loss_fn(model(xb), y_train_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        final = macro_map(y_test, predict(model, x_test))
        print(
            f"epoch {epoch:2d}: train BCE {total / len(x_train):.4f}  test mAP {final:.3f}  "
            f"(baseline {baseline:.3f})  {time.perf_counter() - t_train:6.1f} s"
        )

    scores = predict(model, x_test)
    per_label = [
        average_precision_score(y_test[:, j], scores[:, j]) if y_test[:, j].any() else float("nan")
        for j in range(y_test.shape[1])
    ]
    names = demo_taxonomy().label_names
    print("per-label test AP: " + ", ".join(f"{n} {ap:.2f}" for n, ap in zip(names, per_label)))
    print(f"final: test mAP {final:.3f} vs baseline {baseline:.3f}, training {time.perf_counter() - t_train:.1f} s")
    if args.min_map is not None and final < args.min_map:
        print(f"FAIL: test mAP {final:.3f} < {args.min_map}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
