"""K models, each trained without one fold of a label set: out-of-fold probabilities for ``hspnet audit``.

The images are dealt into ``k`` folds by a seeded permutation; fold i's model trains on the
other k - 1 folds (all of them, no validation part: the last epoch's weights are used, so the
held-out fold plays no part in choosing them either) and records its training keys like any
run, which the audit checks against the fold it scores. Runs go to ``folds_dir/fold-i``; a
fold whose run finished with the same held-out images (``fold.json``) is reused, so an
interrupted ``--folds`` audit continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.config import RunConfig
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.data.split_io import write_split_csv


def fold_rows(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of each of ``k`` folds (a seeded permutation dealt in near-equal parts, sorted)."""
    if k < 2:
        raise UserError(f"--folds {k}: at least 2 (each model trains on the other folds)")
    if n < 2 * k:
        raise UserError(f"--folds {k}: {n} images are too few (at least 2 per fold)")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, k)]


def _digest(keys: list[str]) -> str:
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _finished(run: Path, digest: str, epochs: int) -> bool:
    try:
        facts = json.loads((run / "fold.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return facts.get("held_out_sha256") == digest and facts.get("epochs") == epochs and (run / "best.ckpt").is_file()


def train_folds(
    labels: LabelSet,
    images: str | Path,
    taxonomy: str | Path,
    folds_dir: str | Path,
    k: int,
    config: RunConfig,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[str, int], Any] | None = None,
    on_fold: Callable[[int, int, bool], None] | None = None,
) -> list[tuple[np.ndarray, Path]]:
    """Train one model per fold on the other folds.

    Args:
        labels: Every image to audit, with its labels.
        images: Folder the keys are relative to.
        taxonomy: Taxonomy name or file (the labels' column order).
        folds_dir: Where the fold runs go (``fold-1`` ... ``fold-k``).
        k: Number of folds.
        config: Resolved training config (the same for every fold).
        seed: Seed of the fold assignment.
        device: Training device.
        progress: Per-epoch progress-bar factory (as :func:`hspnet_cli.train.loop.train`).
        on_fold: Called with (fold number, k, reused) before each fold.

    Returns:
        (held-out rows, best.ckpt of the model trained without them) per fold.
    """
    from hspnet_cli.train.loop import train

    folds_dir = Path(folds_dir)
    out: list[tuple[np.ndarray, Path]] = []
    parts = fold_rows(labels.n_images, k, seed)
    for i, held in enumerate(parts, start=1):
        run = folds_dir / f"fold-{i}"
        digest = _digest([labels.images[r] for r in held])
        reused = _finished(run, digest, config.train.epochs)
        if on_fold is not None:
            on_fold(i, k, reused)
        if not reused:
            rest = np.setdiff1d(np.arange(labels.n_images), held)
            split = folds_dir / f"fold-{i}-split"
            split.mkdir(parents=True, exist_ok=True)
            write_split_csv(split / "train.csv", labels.take(rest))
            (split / "val.csv").unlink(missing_ok=True)
            train(split, images, run, config, taxonomy=taxonomy, device=device, overwrite=True, progress=progress)
            write_text_atomic(
                run / "fold.json",
                json.dumps(
                    {
                        "fold": i,
                        "k": k,
                        "seed": seed,
                        "held_out": len(held),
                        "held_out_sha256": digest,
                        "epochs": config.train.epochs,
                    }
                )
                + "\n",
            )
        out.append((held, run / "best.ckpt"))
    return out
