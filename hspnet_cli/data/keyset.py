"""A compact record of which image keys a model was trained on, and membership tests against it.

A checkpoint stores its training keys as a sorted array of 64-bit hashes (BLAKE2b with an
8-byte digest of the UTF-8 key, read as a little-endian int64), not the keys themselves: 8
bytes an image whatever the path length (10M training images: 80 MB, where the paths would
be ~500 MB and a set of SHA-256 digests 320 MB), sorted so membership is a binary search, and
torch saves it as a plain tensor that ``weights_only=True`` loads. Two different keys share a
hash with probability ~2^-64 per pair: over 10M training keys and 10M checked keys about
5e-6 expected collisions in all, and a collision can only make ``hspnet audit`` refuse an
image it could have used, never accept one it must not.

Keys are the image paths relative to the training images folder, as the split readers
normalise them; :func:`rebase` makes another folder's keys comparable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

HASH = "blake2b-64"


def key_hashes(keys: Iterable[str]) -> np.ndarray:
    """Sorted unique int64 hashes of ``keys`` (see the module docstring)."""
    digests = b"".join(hashlib.blake2b(k.encode("utf-8", "surrogateescape"), digest_size=8).digest() for k in keys)
    return np.unique(np.frombuffer(digests, dtype="<i8").astype(np.int64))


def training_record(keys: list[str], images: str | os.PathLike) -> dict:
    """What a checkpoint stores under ``data.train_keys`` (the hashes as a numpy array)."""
    return {"hash": HASH, "count": len(keys), "images": str(Path(images).absolute()), "hashes": key_hashes(keys)}


def member_mask(hashes: np.ndarray, keys: list[str]) -> np.ndarray:
    """(len(keys),) True where a key's hash is in the sorted ``hashes``."""
    if not len(keys) or not len(hashes):
        return np.zeros(len(keys), dtype=bool)
    digests = b"".join(hashlib.blake2b(k.encode("utf-8", "surrogateescape"), digest_size=8).digest() for k in keys)
    mine = np.frombuffer(digests, dtype="<i8").astype(np.int64)
    at = np.searchsorted(hashes, mine).clip(0, len(hashes) - 1)
    return hashes[at] == mine


def rebase(keys: list[str], root: str | os.PathLike, train_root: str | os.PathLike) -> list[str]:
    """``keys`` relative to ``root`` made relative to ``train_root`` (unchanged when the roots agree)."""
    root, train_root = os.path.abspath(root), os.path.abspath(train_root)
    if root == train_root:
        return list(keys)
    return [Path(os.path.relpath(os.path.join(root, k), train_root)).as_posix() for k in keys]
