"""Training data: split CSV rows -> (image tensor, target row, dataset index) batches.

Bad images never crash a worker with a traceback: the dataset returns the error text with the
sample and the training loop raises one clear :class:`UserError` naming the image. Shuffling
and augmentation draw from generators seeded by (seed, epoch), so a resumed run sees exactly
the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet


class SplitImages(Dataset):
    """Images of a label set under an images root, with their target rows.

    Each item is ``(image (3, S, S) float tensor, target (C,) int8 tensor, index, error)``;
    ``error`` is "" or why the image could not be read (then the tensor is zeros and the
    caller must stop: it is never trained on).
    """

    def __init__(self, labels: LabelSet, root: str | Path, transform: Callable, image_size: int) -> None:
        self.labels = labels
        self.root = Path(root)
        self.transform = transform
        self.image_size = image_size
        self.targets = torch.as_tensor(labels.matrix, dtype=torch.int8)

    def __len__(self) -> int:
        return self.labels.n_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
        path = self.root / self.labels.images[index]
        try:
            with Image.open(path) as img:
                image = self.transform(img.convert("RGB"))
            error = ""
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            image = torch.zeros(3, self.image_size, self.image_size)
            error = f"{type(exc).__name__}: {exc}"
        return image, self.targets[index], index, error


def check_images_exist(labels: LabelSet, root: Path, what: str) -> None:
    """Fail before training starts if images are missing (a cheap stat per image)."""
    if not root.is_dir():
        raise UserError(
            f"{root}: images folder not found; pass --images with the folder the split's paths are relative to"
        )
    missing = [img for img in labels.images if not (root / img).is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} {what} image(s) not found under {root}, e.g. {missing[0]} "
            f"({labels.origins[labels.images.index(missing[0])]}); check --images"
        )


def raise_on_bad_images(batch_errors: list[str], indices: torch.Tensor, labels: LabelSet, root: Path) -> None:
    """Turn the first error of a batch into a user error naming the image and its split line."""
    for err, idx in zip(batch_errors, indices.tolist()):
        if err:
            raise UserError(
                f"{root / labels.images[idx]}: cannot read image ({err}); fix or remove it "
                f"({labels.origins[idx]}). 'hspnet split --check-images-deep' lists every bad image"
            )


class EpochSampler(Sampler[int]):
    """A permutation per epoch from a generator seeded with (seed, epoch): resumable exactly."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # type: ignore[no-untyped-def]
        if not self.shuffle:
            return iter(range(self.n))
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
    distributed: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order and worker seeds depend only on (seed, epoch).

    Call ``loader.sampler.set_epoch(epoch)`` and ``loader.generator.manual_seed(...)`` through
    :func:`start_epoch` before iterating.
    """
    if distributed:
        sampler: Sampler[int] = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = EpochSampler(len(dataset), seed, shuffle)
    if num_workers > 0:
        # Workers exchange tensors through shared memory; the default file-descriptor strategy
        # fails (EBADF, then a hang) on some containers and machines with a small /dev/shm.
        torch.multiprocessing.set_sharing_strategy("file_system")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=False,
        generator=torch.Generator(),
    )


def start_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Seed the loader's order and its workers' augmentation for ``epoch``."""
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    loader.generator.manual_seed(int(np.random.SeedSequence([seed, epoch, 1]).generate_state(1)[0]))  # type: ignore[union-attr]
