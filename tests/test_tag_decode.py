"""``hspnet tag`` decoding: every image kind becomes a correct RGB image, every bad file a reason."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hspnet_cli.sources.discover import PathList
from hspnet_cli.tagging.decode import DecodeError, TagImages, collate_tagged, open_rgb


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose IHDR claims width x height RGB pixels, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _noise(size=(64, 48), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_bomb_header_refused_fast_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png_header())
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="too many pixels"):
        open_rgb(path)
    assert time.perf_counter() - start < 1.0
    # Below PIL's own hard limit but above ours: our header check refuses it.
    path.write_bytes(huge_png_header(3000, 3000))
    with pytest.raises(DecodeError, match=r"too many pixels: 3000 x 3000 = 9,000,000 > --max-pixels 1,000,000"):
        open_rgb(path, max_pixels=1_000_000)


def test_truncated_jpeg_fails(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _noise((128, 128)).save(buf, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        open_rgb(path)


def test_random_bytes_empty_and_missing_fail(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DecodeError, match="not an image"):
        open_rgb(junk)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match=r"empty file \(0 bytes\)"):
        open_rgb(empty)
    with pytest.raises(DecodeError, match="file not found"):
        open_rgb(tmp_path / "nope.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DecodeError, match="dangling symlink"):
        open_rgb(tmp_path / "dangling.png")


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 16), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # pure red in CMYK
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (32, 16)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 230 and g < 25 and b < 25


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    values = np.array([[0, 32896, 65535, 32768]], dtype=np.uint16)  # 32896 = 128 * 257: mid-grey
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    img = open_rgb(path)
    assert img.mode == "RGB"
    assert np.asarray(img)[0, :, 0].tolist() == [0, 128, 255, 128]
    assert (np.asarray(img)[..., 0] == np.asarray(img)[..., 2]).all()


def test_palette_png_with_transparency_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)  # index 0 black (transparent), 1 red
    img.putpixel((1, 0), 1)
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    out = np.asarray(open_rgb(path))
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent black -> white, not black
    assert out[0, 1].tolist() == [200, 10, 20]


def test_rgba_and_la_and_grayscale(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 200, 30, 255))
    rgba.save(tmp_path / "a.png")
    assert np.asarray(open_rgb(tmp_path / "a.png")).tolist() == [[[255, 255, 255], [10, 200, 30]]]
    Image.new("LA", (2, 2), (0, 128)).save(tmp_path / "la.png")
    assert np.asarray(open_rgb(tmp_path / "la.png"))[0, 0].tolist() == [127, 127, 127] or np.asarray(
        open_rgb(tmp_path / "la.png")
    )[0, 0].tolist() == [128, 128, 128]
    Image.new("L", (3, 3), 77).save(tmp_path / "g.jpg")
    assert open_rgb(tmp_path / "g.jpg").mode == "RGB"


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", exif=exif, quality=95)
    out = open_rgb(path)
    assert out.size == (20, 40)
    arr = np.asarray(out).astype(int)
    assert arr[5, 10, 2] > 200 and arr[35, 10, 0] > 200  # stored left (blue) is now on top


def test_other_formats(tmp_path: Path) -> None:
    for ext in ("webp", "bmp", "gif", "tiff"):
        _noise((20, 10)).save(tmp_path / f"x.{ext}")
        assert open_rgb(tmp_path / f"x.{ext}").size == (20, 10)


def test_dataset_reports_failures_and_never_scores_them(tmp_path: Path) -> None:
    _noise((16, 16)).save(tmp_path / "ok.png")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    ds = TagImages(
        tmp_path,
        PathList(["bad.jpg", "ok.png"]),
        lambda im: np.asarray(im).shape and __import__("torch").zeros(3, 4, 4),
    )
    images, positions, failed = collate_tagged([ds[0], ds[1]])
    assert images.shape == (1, 3, 4, 4) and positions.tolist() == [1]
    assert failed == [(0, "not an image (format not recognised)")]
    images, positions, failed = collate_tagged([ds[0]])
    assert images.numel() == 0 and positions.tolist() == [] and len(failed) == 1


def test_decode_deadline_cuts_a_slow_image_and_puts_back_an_outer_timer() -> None:
    import signal

    from hspnet_cli.tagging.decode import DecodeTimeout, decode_deadline

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 30.0)  # someone else's timer (pytest-timeout, say)
    try:
        start = time.monotonic()
        with pytest.raises(DecodeTimeout, match=r"longer than 0\.2 s \(--decode-timeout\)"):
            with decode_deadline(0.2):
                time.sleep(5)
        assert time.monotonic() - start < 2
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 25 < remaining <= 30 and not fired  # put back, less the time spent
        with decode_deadline(0):  # 0: no limit, no timer touched
            time.sleep(0.01)
        with decode_deadline(5):
            pass
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class SlowOn17px:
    """A transform that hangs (sleeps) on 17 x 17 images: a stand-in for a file PIL spins on.
    A class, not a closure, so DataLoader workers can pickle it."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, image):
        if image.size == (17, 17):
            time.sleep(30)
        return self.inner(image)


class KillWorkerOn19px:
    """A transform whose DataLoader worker dies (SIGKILL) on 19 x 19 images: a decoder crash."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, image):
        import os
        import signal

        from torch.utils.data import get_worker_info

        if image.size == (19, 19) and get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(image)
