"""Reading images: any file PIL can open -> a correct RGB image, or a reason why not (no torch here).

Used by the tagging DataLoader workers (:mod:`hspnet_cli.tagging.decode`) and by the annotation
server, which must not pay for importing torch when it has no suggester. Every image is either converted faithfully or refused with a
one-line reason that ends up in ``tags.failed.csv``; a failed image is never replaced by a
placeholder that the model would score.

Conversion rules (decisions):

* EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`); an unreadable EXIF block
  leaves the pixels as stored rather than failing the image.
* Transparency (RGBA, LA, palette images with a ``transparency`` entry, PA) is **composited on
  white**. Fully transparent pixels often hold arbitrary colours (frequently black), so simply
  dropping alpha would show the model things no viewer shows; white is how documents, product
  shots and most viewers present cut-outs.
* 16-bit greyscale (``I;16*`` and PNG's ``I``) is **scaled** to 8 bits, ``round(v / 257)``, so
  0 -> 0, 32896 -> 128, 65535 -> 255 (PIL's own ``convert`` clips such values to 255 or keeps
  only the low byte). 32-bit ``I`` data outside 0..65535 and float ``F`` data are stretched from
  their min..max to 0..255.
* CMYK, YCbCr, LAB, HSV, 1-bit and greyscale are converted with PIL's converters. Embedded
  ICC profiles are not applied.
* Multi-frame files (GIF, TIFF) are tagged by their first frame.

Refusals: empty (0-byte) file, missing file, unrecognised format, a header claiming more than
``max_pixels`` pixels (checked from the header before any pixel is decoded: decompression
bombs), truncated or corrupt pixel data (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), and
an image whose decoding and preprocessing take longer than ``--decode-timeout`` seconds
(:func:`decode_deadline`).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL refuses outright at twice its warning limit; that figure (about 179 M pixels, e.g.
# 13400 x 13400) is our default hard limit.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


DEFAULT_DECODE_TIMEOUT = 60.0


class DecodeError(Exception):
    """An image that cannot be tagged; ``str(exc)`` is the reason written to ``tags.failed.csv``."""


class DecodeTimeout(DecodeError):
    """An image whose decoding ran past ``--decode-timeout``."""


@contextlib.contextmanager
def decode_deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`DecodeTimeout` inside the block once it has run ``seconds`` (0: no limit).

    A SIGALRM timer, so it works in a process's main thread on POSIX: each DataLoader worker,
    and the main process with ``--workers 0``; elsewhere (Windows, other threads) it is a no-op.
    Python runs the handler between bytecodes, and PIL decodes in a Python loop over chunks, so
    a pathological file (a decoder spinning on crafted data, a stalled network read between
    chunks) is cut off; a single C call that never returns cannot be. A timer already set by
    someone else (pytest-timeout, say) is put back, less the time spent here.
    """
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise DecodeTimeout(
            f"decoding took longer than {seconds:g} s (--decode-timeout); a pathological file or a stalled disk"
        )

    previous = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)
        if old_delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-3), old_interval)


def to_rgb(img: Image.Image) -> Image.Image:
    """A loaded image of any mode -> RGB by the rules of the module docstring."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(img), mode="L").convert("RGB")
    return img.convert("RGB")


def _to_uint8(img: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float single-channel image as uint8 (see module docstring)."""
    mode = img.mode
    if mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64)  # numpy knows the byte order of I;16 / I;16B
        return np.rint(arr / 257.0).astype(np.uint8)
    arr = np.asarray(img, dtype=np.float64)
    if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return np.rint(arr / 257.0).astype(np.uint8)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise DecodeError(f"{mode} image has no finite pixel values")
    lo, hi = float(finite.min()), float(finite.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint(np.clip((np.nan_to_num(arr, nan=lo) - lo) * scale, 0, 255)).astype(np.uint8)


def check_header_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse a header's claimed size (non-positive, or more than ``max_pixels``: a decompression
    bomb) with the reason written to ``tags.failed.csv``; shared by the PIL and the JPEG-bytes paths
    so both refuse with the same words."""
    if width <= 0 or height <= 0:
        raise DecodeError(f"image header says {width} x {height} pixels")
    if width * height > max_pixels:
        raise DecodeError(
            f"too many pixels: {width} x {height} = {width * height:,} > --max-pixels "
            f"{max_pixels:,} (decompression-bomb guard)"
        )


def open_rgb(path: str | Path | io.BytesIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``path`` as an RGB image, or raise :class:`DecodeError` with the reason.

    The header is read first (``Image.open`` is lazy) so an image claiming more than
    ``max_pixels`` pixels is refused before its pixels are decoded.
    """
    if isinstance(path, io.BytesIO):  # bytes read from object storage or a tar shard
        size = path.getbuffer().nbytes
    else:
        path = os.fspath(path)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise DecodeError("file not found" + (" (dangling symlink)" if os.path.islink(path) else "")) from None
        except OSError as exc:
            raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    # PIL's own guard (in Image.open, from the header, like ours) is off for this open only: the
    # header check below refuses with our limit and one consistent message.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too many pixels: {first_line(exc)} (decompression-bomb guard, --max-pixels)") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image (format not recognised)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"cannot open image: {describe_error(exc)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        width, height = img.size
        check_header_size(width, height, max_pixels)
        try:
            img.load()
            try:
                img = ImageOps.exif_transpose(img) or img
            except DecodeError:
                raise
            except Exception:  # noqa: BLE001 - a broken EXIF block must not fail a readable image
                pass
            return to_rgb(img)
        except DecodeError:
            raise
        except MemoryError:
            raise DecodeError(f"out of memory decoding {width} x {height} image") from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
            raise DecodeError(f"corrupt or truncated image data: {describe_error(exc)}") from None


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"
