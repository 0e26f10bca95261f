"""Reading images for tagging in DataLoader workers: file -> preprocessed tensor, or a failure reason.

The conversion and refusal rules (EXIF, transparency, 16-bit, decompression bombs, timeouts)
live in :mod:`hspnet_cli.tagging.image_io`, which needs no torch; they are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from hspnet_cli.sources.discover import PathList
from hspnet_cli.tagging.chatter import ChatterLog
from hspnet_cli.tagging.image_io import (
    DEFAULT_DECODE_TIMEOUT,
    DEFAULT_MAX_PIXELS,
    DecodeError,
    DecodeTimeout,
    check_header_size,
    decode_deadline,
    describe_error,
    first_line,
    open_rgb,
    to_rgb,
)

__all__ = [
    "DEFAULT_DECODE_TIMEOUT",
    "DEFAULT_MAX_PIXELS",
    "DecodeError",
    "DecodeTimeout",
    "TagImages",
    "check_header_size",
    "collate_tagged",
    "decode_deadline",
    "describe_error",
    "first_line",
    "make_tag_loader",
    "open_rgb",
    "to_rgb",
]


class TagImages(Dataset):
    """Items of a tagging run: ``(tensor or None, position, error)``.

    ``position`` is the index into ``items``; ``error`` is "" or the reason the image failed
    (then the tensor is None and the image is written to ``tags.failed.csv``, never scored).
    """

    def __init__(
        self,
        root: str | Path,
        items: PathList,
        transform: Callable,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        start: int = 0,
        timeout: float = DEFAULT_DECODE_TIMEOUT,
        chatter: ChatterLog | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.items = items
        self.transform = transform
        self.max_pixels = max_pixels
        self.start = start
        self.timeout = timeout
        self.chatter = chatter or ChatterLog(None)

    def __len__(self) -> int:
        return len(self.items) - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        return self.pil_item(self.start + index)

    def path_of(self, position: int) -> str:
        """The file of item ``position``."""
        return os.path.join(self.root, self.items[position])

    def pil_item(self, position: int) -> tuple[torch.Tensor | None, int, str]:
        """Item ``position`` decoded with PIL and ``transform`` within the decode deadline:
        ``(tensor or None, position, error)``. What the decoders say goes to ``self.chatter``'s
        log (:mod:`hspnet_cli.tagging.chatter`); the capture is outside the deadline, so a
        timeout never leaves file descriptor 2 redirected."""
        path = self.path_of(position)
        with self.chatter.capture(self.items[position]):
            try:
                with decode_deadline(self.timeout):
                    image = open_rgb(path, self.max_pixels)
                    try:
                        tensor = self.transform(image)
                    except DecodeError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a transform failure is this image's failure
                        return None, position, f"preprocessing failed: {describe_error(exc)}"
            except DecodeError as exc:
                return None, position, str(exc)
        return tensor, position, ""


def collate_tagged(batch: list[tuple[torch.Tensor | None, int, str]]):  # type: ignore[no-untyped-def]
    """-> (images (k, 3, S, S) of the readable items, their positions (k,), [(position, error)] of the rest)."""
    good = [(t, p) for t, p, err in batch if not err]
    failed = [(p, err) for t, p, err in batch if err]
    images = torch.stack([t for t, _ in good]) if good else torch.empty(0)
    positions = torch.tensor([p for _, p in good], dtype=torch.long)
    return images, positions, failed


def make_tag_loader(
    dataset: TagImages, batch_size: int, workers: int, pin_memory: bool = False, collate_fn: Callable | None = None
) -> DataLoader:
    """A sequential DataLoader (order = item order, which resume relies on); ``collate_fn``
    defaults to :func:`collate_tagged`."""
    if workers > 0:
        # As in training: the default file-descriptor strategy fails on small /dev/shm.
        torch.multiprocessing.set_sharing_strategy("file_system")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn or collate_tagged,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
