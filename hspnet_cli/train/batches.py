"""Batch sources for training and validation: decoded images, or cached image features.

With a frozen image encoder and no augmentation, the image features of an image never
change, so an epoch needs only the prompt side: ``--cache-features`` computes them once into
``$HSPNET_CACHE/features/<key>.pt`` (default ``~/.cache/hspnet``) and reuses them across runs.
The key is a hash of the image tower's weights, the input size and preprocessing, and every
image's path, size and modification time, so a changed image or model never reuses stale
features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hspnet_cli.config import RunConfig
from hspnet_cli.core.errors import UserError
from hspnet_cli.data.images import SplitImages, check_images_exist, make_loader, raise_on_bad_images, start_epoch
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.model.hspnet import HSPNet
from hspnet_cli.model.image_size import model_image_size
from hspnet_cli.model.preprocess import Preprocessing
from hspnet_cli.train.runtime import Runtime

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch); seeds order, augmentation and worker RNGs of an epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)[0] >> 1)


class BatchSource:
    """Yields ``(inputs, targets, index)`` per step of an epoch; ``inputs`` are images or features."""

    is_features = False

    def __init__(
        self, loader: DataLoader, labels: LabelSet, root: Path, rt: Runtime, seed: int, channels_last: bool
    ) -> None:
        self.loader, self.labels, self.root, self.rt, self.seed = loader, labels, root, rt, seed
        self.channels_last = channels_last and rt.device.type == "cuda"

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int) -> Iterator[Batch]:
        # The main process's RNG drives augmentation when there are no workers: seed it too.
        torch.manual_seed(epoch_seed(self.seed, epoch))
        start_epoch(self.loader, self.seed, epoch)
        for item in self.loader:
            inputs, targets, index = item[0], item[1], item[2]
            if len(item) > 3:
                raise_on_bad_images(list(item[3]), index, self.labels, self.root)
            inputs = inputs.to(self.rt.device, non_blocking=True)
            if self.channels_last and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield inputs, targets.to(self.rt.device, non_blocking=True), index


class FeatureSource(BatchSource):
    """Batches of cached image features."""

    is_features = True


def image_source(
    model: HSPNet, labels: LabelSet | None, root: Path, config: RunConfig, rt: Runtime, *, shuffle: bool, what: str
) -> BatchSource | None:
    """The batch source for ``labels``: cached features when allowed and asked for, else images."""
    if labels is None:
        return None
    tc = config.train
    root = Path(root)
    check_images_exist(labels, root, what)
    size = model_image_size(model, config)
    augment = tc.augment if shuffle else "none"
    images = SplitImages(labels, root, Preprocessing.for_model(model.visual, size).transform(augment), size)
    loader_kw = dict(seed=tc.seed, num_workers=tc.num_workers, distributed=rt.distributed)
    if tc.cache_features:
        if not config.model.freeze_image_encoder or tc.augment != "none":
            raise UserError(
                "--cache-features needs a frozen image encoder (--freeze-image-encoder) and "
                "--augment none: otherwise image features change every step"
            )
        feats = cached_features(model, images, size, rt, tc.num_workers)
        data = TensorDataset(feats, images.targets, torch.arange(labels.n_images))
        loader = make_loader(data, tc.batch_size, shuffle=shuffle, **{**loader_kw, "num_workers": 0})
        return FeatureSource(loader, labels, root, rt, tc.seed, channels_last=False)
    if rt.device.type == "cuda" and tc.channels_last:
        model.visual.to(memory_format=torch.channels_last)
    loader = make_loader(images, tc.batch_size, shuffle=shuffle, **loader_kw)
    return BatchSource(loader, labels, root, rt, tc.seed, channels_last=tc.channels_last)


def _cache_dir() -> Path:
    base = os.environ.get("HSPNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hspnet"
    )
    return Path(base) / "features"


def feature_cache_key(model: HSPNet, images: SplitImages, size: int) -> str:
    """Hash of the image tower's weights, the preprocessing and every image's identity."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.visual.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"size={size};transform={images.transform!r}".encode())
    for rel in images.labels.images:
        st = (images.root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@torch.no_grad()
def cached_features(model: HSPNet, images: SplitImages, size: int, rt: Runtime, num_workers: int) -> torch.Tensor:
    """(n, D) float32 image features of ``images``, from the cache or computed once (main process)."""
    path = _cache_dir() / f"{feature_cache_key(model, images, size)}.pt"
    if rt.is_main and not path.exists():
        was_training = model.visual.training
        model.visual.eval()
        loader = make_loader(images, 256, shuffle=False, seed=0, num_workers=num_workers)
        start_epoch(loader, 0, 0)
        out = torch.empty(len(images), model.embed_dim)
        for batch, _, index, errors in loader:
            raise_on_bad_images(list(errors), index, images.labels, images.root)
            with rt.autocast():
                out[index] = model.encode_image(batch.to(rt.device)).float().cpu()
        model.visual.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(out, tmp)
        os.replace(tmp, path)
    rt.barrier()
    return torch.load(path, weights_only=True)
