"""Out of sample only: a checkpoint's recorded training keys against the images to audit.

A model's probabilities on images it trained on are in-sample: it has fitted their labels,
wrong ones included, so exactly the errors an audit looks for score as confident and stay
hidden. ``hspnet train`` records the training keys in each checkpoint (``data.train_keys``,
hashed: :mod:`hspnet_cli.data.keyset`); an audit refuses images found there. A checkpoint
without the record (trained before it existed, or an export) is refused too, unless the user
states it is safe (``--allow-unknown-training-set``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.keyset import member_mask, rebase
from hspnet_cli.data.labelset import LabelSet

log = logging.getLogger(__name__)


def training_record(checkpoint: str | Path) -> dict[str, Any] | None:
    """The ``data.train_keys`` record of a checkpoint (or run folder), None when it has none."""
    import torch

    path = Path(checkpoint)
    if path.is_dir():
        path = path / "best.ckpt"
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found (give a run folder or a .ckpt of hspnet train)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an export or another file: it records no training keys
        return None
    record = (data.get("data") or {}).get("train_keys") if isinstance(data, dict) else None
    if not isinstance(record, dict) or "hashes" not in record:
        return None
    hashes = record["hashes"]
    hashes = hashes.numpy() if hasattr(hashes, "numpy") else np.asarray(hashes)
    return {**record, "hashes": np.asarray(hashes, dtype=np.int64)}


def check_out_of_sample(
    checkpoint: str | Path, labels: LabelSet, images: str | Path, allow_unknown: bool = False
) -> dict[str, Any]:
    """Refuse when ``checkpoint`` trained on any image of ``labels`` (or cannot say).

    Returns:
        What was checked (for the report): ``record`` (yes/no), ``training_images``, ``overlap``.

    Raises:
        UserError: Overlap (names the first image and where it was read), or no record
            without ``allow_unknown``.
    """
    record = training_record(checkpoint)
    if record is None:
        if not allow_unknown:
            raise UserError(
                f"{checkpoint}: records no training images (trained before hspnet recorded them, or an "
                "export), so its probabilities may be in-sample: pass --folds K to train out-of-fold "
                "models on LABELS, retrain, or --allow-unknown-training-set if you know it never saw "
                "these images (unsafe: a model hides the errors it trained on)"
            )
        log.warning("%s records no training images; auditing anyway (--allow-unknown-training-set)", checkpoint)
        return {"record": False, "training_images": None, "overlap": None}
    # Keys as given and rebased onto the training folder: a folder that moved (another mount,
    # another machine) keeps its relative keys, a different root over the same files does not.
    inside = member_mask(record["hashes"], labels.images)
    if record.get("images"):
        inside |= member_mask(record["hashes"], rebase(labels.images, images, record["images"]))
    if inside.any():
        first = int(np.flatnonzero(inside)[0])
        raise UserError(
            f"{labels.origins[first]}: {labels.images[first]} and {int(inside.sum()) - 1} more of the "
            f"{labels.n_images} images to audit trained {checkpoint}; its probabilities on them are "
            "in-sample and hide their errors: audit images it never trained on, or use --folds K"
        )
    return {"record": True, "training_images": int(record.get("count", len(record["hashes"]))), "overlap": 0}
