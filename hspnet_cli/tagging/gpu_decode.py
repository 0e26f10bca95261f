"""JPEG decoding on the scorer's device for ``hspnet tag --decode gpu`` (issue 6).

PIL decoding in DataLoader workers tops out around 500 images/s for 640 x 480 JPEGs, while
``torchvision.io.decode_jpeg(..., device="cuda")`` (nvJPEG) decodes several thousand a second.
In this mode the work is split so the slow part leaves the workers:

* **workers** (:class:`JpegBytesImages`) read each file's bytes. A file whose content is a
  baseline-decodable JPEG (magic bytes ``FF D8 FF``, not the extension) is passed on as bytes
  together with its EXIF orientation, both taken from PIL's lazy header parse (no pixel is
  decoded). Its header size is checked against ``max_pixels`` first, so decompression bombs are
  refused exactly as on the PIL path. Everything else (PNG, WebP, CMYK JPEGs, files that do not
  end with the EOI marker, unreadable files) goes through the unchanged PIL path
  (:meth:`~hspnet_cli.tagging.decode.TagImages.pil_item`), so its failure reasons are identical.
* **the main process** (:func:`finish_batch`) decodes the batch's JPEG bytes with one batched
  ``decode_jpeg`` call on the scorer's device, applies the EXIF orientation on the tensor and runs
  the evaluation preprocessing on tensors (:class:`TensorPreprocess`: bicubic antialiased resize of
  the short side, centre crop, [0, 1], mean/std). A JPEG that ``decode_jpeg`` refuses falls back to
  the PIL path (in the main process, since the worker has finished with it by then).

The tensor preprocessing is not bit-identical to PIL's bicubic resize (torch's antialiased
bicubic kernel and the absence of 8-bit rounding differ slightly); embeddings agree to a cosine
similarity above 0.99 (see tests/test_tag_gpu_decode.py for measured bounds). The decode mode is
therefore part of a run's fingerprint: a run is never resumed with the other mode.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagging.decode import DecodeError, TagImages, check_header_size, describe_error

JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
DECODE_MODES = ("auto", "cpu", "gpu")
_ORIENTATION_TAG = 0x0112

# One worker item: (tensor or None, position, error, (jpeg bytes, EXIF orientation) or None).
JpegItem = tuple[torch.Tensor | None, int, str, tuple[torch.Tensor, int] | None]


def resolve_decode_mode(mode: str, device: torch.device) -> str:
    """``auto`` -> ``gpu`` on a CUDA device, else ``cpu``; ``cpu`` / ``gpu`` as given.

    ``gpu`` on a CPU device is allowed: ``decode_jpeg`` runs on the CPU too (how it is tested).
    """
    mode = str(mode).strip().lower()
    if mode not in DECODE_MODES:
        raise UserError(f"--decode must be one of {', '.join(DECODE_MODES)}; got '{mode}'")
    if mode == "auto":
        return "gpu" if torch.device(device).type == "cuda" else "cpu"
    return mode


@dataclass(frozen=True)
class TensorPreprocess:
    """The evaluation preprocessing (``Resize(resize)`` of the short side, ``CenterCrop(crop)``,
    ``ToTensor``, ``Normalize(mean, std)``) on uint8 (3, H, W) tensors on any device."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @classmethod
    def from_transform(cls, transform: Callable) -> TensorPreprocess | None:
        """Read the parameters off a torchvision ``Compose`` of Resize, CenterCrop, ToTensor,
        Normalize (what ``build_transform`` and exports make); None for any other transform, since
        guessing would silently tag with other preprocessing than the model's."""
        from torchvision import transforms as T

        steps = list(getattr(transform, "transforms", []))
        kinds = [type(s) for s in steps]
        if kinds != [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]:
            return None
        resize, crop, _, norm = steps
        size = resize.size if isinstance(resize.size, int) else list(resize.size)
        if isinstance(size, list):
            if len(size) != 1:
                return None  # a fixed (h, w) resize is not "short side to S"
            size = size[0]
        if getattr(resize, "max_size", None) is not None:
            return None
        crop_size = list(crop.size) if not isinstance(crop.size, int) else [crop.size, crop.size]
        if crop_size[0] != crop_size[-1] or len(norm.mean) != 3 or len(norm.std) != 3:
            return None
        return cls(
            resize=int(size),
            crop=int(crop_size[0]),
            mean=tuple(float(m) for m in norm.mean),  # type: ignore[arg-type]
            std=tuple(float(s) for s in norm.std),
            interpolation=resize.interpolation.value,
        )  # type: ignore[arg-type]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> float32 (3, crop, crop), normalised, on ``image``'s device."""
        return self._finish(image.unsqueeze(0))[0]

    def batch(self, images: list[torch.Tensor], group: bool | None = None) -> list[torch.Tensor]:
        """Many uint8 (3, H_i, W_i) -> float32 (3, crop, crop) each, as :meth:`__call__` gives.

        With ``group`` (default: when the images are on a GPU) images of one size go through one
        resize call together. On a GPU the per-image path is bound by kernel launches (about six
        an image, plus two small host-to-device copies for mean and std), not by arithmetic, and
        the images of a folder mostly share a few sizes. On the CPU grouping measured slower
        (benchmarks/gpu_tag.py, decode mode, 8 sizes: 380 vs 466 images/s), so it is off there.
        """
        if group is None:
            group = bool(images) and images[0].is_cuda
        if not group:
            return [self(image) for image in images]
        out: list[torch.Tensor] = [torch.empty(0)] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for members in groups.values():
            done = self._finish(torch.stack([images[i] for i in members]))  # (n, 3, crop, crop)
            for row, i in enumerate(members):
                out[i] = done[row]
        return out

    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, H, W) of one size -> float32 (n, 3, crop, crop), normalised."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        # Float before resizing: antialiased bicubic on uint8 is CPU-only in torch, and the float
        # result keeps the fraction PIL would round away.
        x = images.float()
        x = TF.resize(x, [self.resize], interpolation=InterpolationMode(self.interpolation), antialias=True)
        x = TF.center_crop(x, [self.crop, self.crop])
        # Bicubic overshoots; PIL clips to 0..255 when it stores 8 bits, so do the same.
        x = x.clamp_(0.0, 255.0).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A (..., H, W) tensor as :func:`PIL.ImageOps.exif_transpose` shows it for EXIF ``orientation``.

    PIL's methods per orientation: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM,
    5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90 (PIL rotates counter-clockwise);
    anything else leaves the pixels as stored, as PIL does.
    """
    h, w = -2, -1
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:
        return torch.rot90(image, -1, (h, w))
    if orientation == 7:
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:
        return torch.rot90(image, 1, (h, w))
    return image


def read_jpeg(path: str, max_pixels: int) -> tuple[torch.Tensor, int] | None:
    """A JPEG's bytes (uint8 tensor) and EXIF orientation, or None when the PIL path must take it.

    Raises:
        DecodeError: The header claims more than ``max_pixels`` pixels (same reason as PIL's path).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None  # missing / unreadable: the PIL path words the reason
    if not data.startswith(JPEG_MAGIC):
        return None
    # A file cut short decodes "successfully" in some decoders (nvJPEG may pad with grey), while
    # PIL refuses it; only files ending with the EOI marker take this path. (Files with data after
    # EOI, e.g. motion photos, go the slower PIL way, which reads them fine.)
    if data.rstrip(b"\x00")[-2:] != JPEG_EOI:
        return None
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our check below refuses, with the same words as open_rgb
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - anything PIL's header parse dislikes: the PIL path reports it
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        # CMYK / YCCK: PIL's conversion (Adobe inverted CMYK) is the reference; keep it there.
        if img.format != "JPEG" or img.mode not in ("RGB", "L"):
            return None
        check_header_size(img.size[0], img.size[1], max_pixels)
        try:
            orientation = int(img.getexif().get(_ORIENTATION_TAG, 1))
        except Exception:  # noqa: BLE001 - a broken EXIF block leaves pixels as stored (as open_rgb)
            orientation = 1
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), orientation


class JpegBytesImages(TagImages):
    """Items for ``--decode gpu``: JPEG bytes for the main process, else the PIL path's tensor.

    Each item is ``(tensor or None, position, error, jpeg)`` where ``jpeg`` is
    ``(bytes uint8 tensor, EXIF orientation)`` for a JPEG left to :func:`finish_batch` (then
    the tensor is None and error "").
    """

    def __getitem__(self, index: int) -> JpegItem:  # type: ignore[override]
        position = self.start + index
        try:
            with self.chatter.capture(self.items[position]):  # EXIF parsing talks too
                jpeg = read_jpeg(self.path_of(position), self.max_pixels)
        except DecodeError as exc:
            return None, position, str(exc), None
        if jpeg is not None:
            return None, position, "", jpeg
        tensor, position, error = self.pil_item(position)
        return tensor, position, error, None


def collate_jpeg(batch: list[JpegItem]) -> tuple[Any, ...]:
    """-> (PIL-path images (k, 3, S, S), their positions (k,), [(position, error)],
    [jpeg bytes], their positions (j,), their orientations (j,))."""
    good = [(t, p) for t, p, err, jpeg in batch if not err and jpeg is None]
    failed = [(p, err) for _, p, err, _ in batch if err]
    jpegs = [(jpeg, p) for _, p, err, jpeg in batch if jpeg is not None]
    images = torch.stack([t for t, _ in good]) if good else torch.empty(0)
    return (
        images,
        torch.tensor([p for _, p in good], dtype=torch.long),
        failed,
        [j[0] for j, _ in jpegs],
        torch.tensor([p for _, p in jpegs], dtype=torch.long),
        torch.tensor([j[1] for j, _ in jpegs], dtype=torch.long),
    )


def _decode_all(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode each JPEG to uint8 (3, H, W) on ``device``; None where ``decode_jpeg`` refuses it."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not datas:
        return []
    try:
        # The list API is what batches nvJPEG on CUDA; on the CPU it is a loop.
        return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - one bad file fails the whole call; find it one by one
        pass
    out: list[torch.Tensor | None] = []
    for data in datas:
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except Exception:  # noqa: BLE001 - this file goes through PIL (which gives the reason)
            out.append(None)
    return out


def finish_batch(
    batch: tuple[Any, ...], dataset: TagImages, preprocess: TensorPreprocess, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """A collated ``--decode gpu`` batch -> (images on ``device``, positions, [(position, error)]),
    rows in item order, like a ``--decode cpu`` batch (the writer's row order relies on it)."""
    images, positions, failed, datas, jpeg_positions, orientations = batch
    rows: list[tuple[int, torch.Tensor]] = [(int(p), t) for p, t in zip(positions.tolist(), images.to(device))]
    failed = list(failed)
    decoded = _decode_all(list(datas), device)
    ready: list[tuple[int, torch.Tensor]] = []
    for image, position, orientation in zip(decoded, jpeg_positions.tolist(), orientations.tolist()):
        if image is None:
            tensor, _, error = dataset.pil_item(position)
            if error:
                failed.append((position, error))
            else:
                assert tensor is not None
                rows.append((position, tensor.to(device)))
        else:
            ready.append((position, apply_orientation(image, orientation)))
    try:
        rows += zip([p for p, _ in ready], preprocess.batch([t for _, t in ready]))
    except Exception:  # noqa: BLE001 - find the image that fails, one by one, as the PIL path would
        for position, image in ready:
            try:
                rows.append((position, preprocess(image)))
            except Exception as exc:  # noqa: BLE001 - as on the PIL path: this image's failure only
                failed.append((position, f"preprocessing failed: {describe_error(exc)}"))
    rows.sort(key=lambda r: r[0])
    failed.sort(key=lambda f: f[0])
    out = torch.stack([t for _, t in rows]) if rows else torch.empty(0, device=device)
    return out, torch.tensor([p for p, _ in rows], dtype=torch.long), failed
