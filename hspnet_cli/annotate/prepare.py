"""Getting an image ready to show: a safe path, a server-side resized JPEG, and suggestions.

Each image is decoded once per visit: the same decoded picture gives the preview (longest
side ``max_side``, JPEG) and the suggester's input. Work runs in a small thread pool and is
kept in a bounded cache of futures, so the page can ask for the next few images ahead of time
(prefetch) and the request for an image already prepared answers at once. Nothing is prepared
for an image that no client has been handed: a folder of millions costs only its path list.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hspnet_cli.sources.discover import is_image_name
from hspnet_cli.tagging.image_io import DEFAULT_MAX_PIXELS, DecodeError, open_rgb

log = logging.getLogger(__name__)


class UnsafePath(Exception):
    """An image path that would leave IMAGES_DIR (or is not an image): answered with 403."""


def safe_image_path(root_real: str, rel: str) -> str:
    """The real path of image ``rel`` under ``root_real``, refusing anything that leaves it.

    ``rel`` is the already URL-decoded path. Refused: absolute paths, ``..``/``.``/empty
    segments, backslashes, NUL bytes, non-image names, and any path whose real location
    (symlinks resolved) is outside ``root_real``.

    Raises:
        UnsafePath: The path is refused.
        FileNotFoundError: The path is fine but no such file exists.
    """
    if not rel or "\0" in rel or "\\" in rel or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePath(rel)
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise UnsafePath(rel)
    if not is_image_name(rel):
        raise UnsafePath(rel)
    real = os.path.realpath(os.path.join(root_real, rel))
    if real == root_real or os.path.commonpath([real, root_real]) != root_real:
        raise UnsafePath(rel)
    if not os.path.isfile(real):
        raise FileNotFoundError(rel)
    return real


@dataclass
class Prepared:
    """An image ready to show.

    Attributes:
        image: Relative path (the queue key).
        jpeg: The resized preview, or None when the image cannot be read.
        error: Why the image cannot be shown (decode failure, refused path), else None.
        ranking: Label indices, best first, when a suggester is set.
        scores: Probability per label (label order), when a suggester is set.
        size: Original (width, height).
    """

    image: str
    jpeg: bytes | None = None
    error: str | None = None
    ranking: np.ndarray | None = None
    scores: np.ndarray | None = None
    size: tuple[int, int] | None = None


class Preparer:
    """Prepares images on demand in a thread pool, with a bounded cache.

    Args:
        images_dir: IMAGES_DIR.
        scorer: An :class:`hspnet_cli.scoring.scorer.Scorer`, or None (no suggestions).
        max_side: Longest side of the previews sent to the browser.
        cache_items: Prepared images kept (LRU); a few screens ahead and behind is enough.
        workers: Threads decoding and resizing.
        max_pixels: Decompression-bomb guard, as in ``hspnet tag``.
    """

    def __init__(
        self,
        images_dir: str | Path,
        scorer: Any = None,
        max_side: int = 1024,
        cache_items: int = 64,
        workers: int = 2,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.root = os.path.realpath(images_dir)
        self.scorer = scorer
        self.max_side = max_side
        self.cache_items = cache_items
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="annotate-prepare")
        self._cache: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one forward pass at a time: no gain from overlap on CPU

    def submit(self, image: str) -> Future:
        """Start preparing ``image`` unless it is cached or under way; return its future."""
        with self._lock:
            future = self._cache.get(image)
            if future is not None:
                self._cache.move_to_end(image)
                return future
            future = self._pool.submit(self._prepare, image)
            self._cache[image] = future
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
            return future

    def get(self, image: str, timeout: float | None = 120.0) -> Prepared:
        """The prepared image, waiting for it if needed."""
        return self.submit(image).result(timeout=timeout)

    def close(self) -> None:
        """Stop the worker threads (pending work is dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, image: str) -> Prepared:
        try:
            path = safe_image_path(self.root, image)
            picture = open_rgb(path, self.max_pixels)
        except UnsafePath:
            return Prepared(image, error="refused: the path leaves the images folder")
        except FileNotFoundError:
            return Prepared(image, error="file not found")
        except DecodeError as exc:
            return Prepared(image, error=str(exc))
        out = Prepared(image, size=picture.size)
        if self.scorer is not None:
            try:
                out.scores = self._score(picture)
                out.ranking = np.argsort(-out.scores, kind="stable")
            except Exception as exc:  # noqa: BLE001 - the image can still be labelled without suggestions
                log.warning("%s: no suggestions (%s)", image, exc)
        preview = picture.copy()
        preview.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        preview.save(buffer, format="JPEG", quality=88)
        out.jpeg = buffer.getvalue()
        return out

    def _score(self, picture: Image.Image) -> np.ndarray:
        import torch

        batch = self.scorer.transform(picture).unsqueeze(0)
        with self._model_lock, torch.inference_mode():
            logits = self.scorer(batch)
        return torch.sigmoid(logits.float())[0].cpu().numpy()
