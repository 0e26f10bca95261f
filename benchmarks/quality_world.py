"""Shared by the dedup and audit quality benchmarks: a demo world and a demo model trained on half of it.

``prepare(work, n_images, epochs, seed)`` generates the demo world into ``work/world`` (once;
reused when it is there), makes a single-positive split of its FIRST half (20% validation),
trains the ``demo`` preset on it (``work/run/best.ckpt``, reused when present) and returns the
paths. The world's second half is never trained on: the audit benchmark audits it, out of
sample. Training records its keys in the checkpoint, so ``hspnet audit`` can check that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hspnet_cli.core.io_utils import write_text_atomic


def prepare(
    work: Path, n_images: int = 3000, epochs: int | None = None, seed: int = 0, mode: str = "single-positive"
) -> dict[str, Any]:
    """World + trained demo model under ``work`` (see the module docstring); ``mode`` is the
    split mode of the training half (``full``: every label, in ``run-full/``)."""
    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.train.loop import train

    work.mkdir(parents=True, exist_ok=True)
    world = work / "world"
    facts: dict[str, Any] = {
        "world": str(world),
        "images": str(world / "images"),
        "taxonomy": str(world / "taxonomy.yaml"),
    }
    start = time.perf_counter()
    if not (world / "annotations.csv").is_file():
        generate_demo_world(world, n_images=n_images, seed=seed, workers=2)
    facts["world_seconds"] = round(time.perf_counter() - start, 1)
    lines = (world / "annotations.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    half = len(rows) // 2
    write_text_atomic(work / "train-half.csv", header + "".join(rows[:half]))
    write_text_atomic(work / "held-out.csv", header + "".join(rows[half:]))
    facts.update(train_half=str(work / "train-half.csv"), held_out=str(work / "held-out.csv"))
    suffix = "" if mode == "single-positive" else f"-{mode}"
    ckpt = work / f"run{suffix}" / "best.ckpt"
    start = time.perf_counter()
    if not ckpt.is_file():
        make_split(
            work / "train-half.csv",
            world / "taxonomy.yaml",
            work / f"split{suffix}",
            options=SplitOptions(mode=mode, val_fraction=0.2, seed=seed, overwrite=True),
        )
        config = load_preset("demo")
        changes: dict[str, Any] = {"train.seed": seed}
        if epochs is not None:
            changes["train.epochs"] = epochs
        config = apply_overrides(config, changes)
        result = train(
            work / f"split{suffix}",
            world / "images",
            work / f"run{suffix}",
            config,
            taxonomy=world / "taxonomy.yaml",
            device="cpu",
            overwrite=True,
        )
        facts["val_map"] = round(result.best_map, 4)
    facts["train_seconds"] = round(time.perf_counter() - start, 1)
    facts["checkpoint"] = str(ckpt)
    return facts
