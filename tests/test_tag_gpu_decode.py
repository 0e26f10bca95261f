"""``hspnet tag --decode gpu`` forced on the CPU: same rows and failures as ``--decode cpu``,
close embeddings, EXIF orientation and bomb refusal on the JPEG-bytes path, mode in the manifest."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_jpeg

from hspnet_cli.core.errors import UserError
from hspnet_cli.model.preprocess import build_transform
from hspnet_cli.tagging.decode import DecodeError, open_rgb
from hspnet_cli.tagging.gpu_decode import TensorPreprocess, apply_orientation, read_jpeg, resolve_decode_mode
from hspnet_cli.tagging.run import tag_images

# Measured on the fixture below (torch 2.14 / torchvision 0.29, CPU): embedding cosine >= 0.999998,
# preprocessing max |diff| 0.058 and mean |diff| <= 0.0046 after normalisation; bounds leave room.
MIN_COSINE = 0.99
MAX_ABS_DIFF = 0.1
MAX_MEAN_DIFF = 0.02


@pytest.fixture(scope="module")
def scorer(demo_split):
    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.taxonomy import load_taxonomy

    torch.manual_seed(0)  # the same random weights whatever ran before (probabilities are compared to 4 decimals)
    return zero_shot(load_taxonomy(demo_split["taxonomy"]), "hspnet-tiny", None)


def _jpeg(img: Image.Image, orientation: int = 1, **kw) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes(), **kw)
    return buf.getvalue()


def bomb_jpeg(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small valid JPEG whose SOF0 header is patched to claim width x height pixels."""
    data = bytearray(_jpeg(Image.new("RGB", (16, 16), (200, 30, 30))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def folder(demo_split, tmp_path_factory) -> Path:
    """12 JPEGs (sizes above and below the model's 64 px, EXIF orientations 1-8), a CMYK JPEG, two
    truncated JPEGs, a PNG and a PNG named .jpg."""
    root = tmp_path_factory.mktemp("jpegs")
    src = sorted(demo_split["images"].glob("*.png"))[:14]
    sizes = [(160, 120), (90, 130), (48, 48), (200, 90)]
    for i, p in enumerate(src[:12]):
        img = Image.open(p).convert("RGB").resize(sizes[i % 4], Image.BICUBIC)
        (root / f"im{i:02d}.jpg").write_bytes(_jpeg(img, orientation=1 + i % 8))
    cmyk = Image.open(src[12]).convert("RGB").resize((120, 100)).convert("CMYK")
    (root / "cmyk.jpg").write_bytes(_jpeg(cmyk))
    (root / "cut.jpg").write_bytes((root / "im00.jpg").read_bytes()[:600])
    # Headers only (cut before the scan), then EOI: passes the worker's checks, decode_jpeg refuses
    # it in the main process, and the PIL fallback there gives the reason the cpu mode gives.
    data = (root / "im00.jpg").read_bytes()
    (root / "cut_eoi.jpg").write_bytes(data[: data.index(b"\xff\xda")] + b"\xff\xd9")
    Image.open(src[13]).convert("RGB").save(root / "plain.png")
    Image.open(src[13]).convert("RGB").save(root / "png_named.jpg", "PNG")
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_resolve_mode() -> None:
    assert resolve_decode_mode("auto", torch.device("cpu")) == "cpu"
    assert resolve_decode_mode("auto", torch.device("cuda", 0)) == "gpu"
    assert resolve_decode_mode("GPU", torch.device("cpu")) == "gpu"
    with pytest.raises(UserError, match="--decode"):
        resolve_decode_mode("nvjpeg", torch.device("cpu"))


def test_gpu_mode_matches_cpu_mode(scorer, folder: Path, tmp_path: Path) -> None:
    a = tag_images(folder, tmp_path / "cpu.csv", scorer, batch_size=4, decode="cpu")
    b = tag_images(folder, tmp_path / "gpu.csv", scorer, batch_size=4, decode="gpu")
    assert read_jpeg(str(folder / "cut_eoi.jpg"), 10**9) is not None  # reaches decode_jpeg
    assert (
        read_jpeg(str(folder / "cmyk.jpg"), 10**9) is None and read_jpeg(str(folder / "png_named.jpg"), 10**9) is None
    )
    assert (a.items, a.rows, a.failed) == (b.items, b.rows, b.failed) == (17, 15, 2)
    ra, rb = rows(tmp_path / "cpu.csv"), rows(tmp_path / "gpu.csv")
    assert [r["path"] for r in ra] == [r["path"] for r in rb]
    assert (tmp_path / "cpu.failed.csv").read_bytes() == (tmp_path / "gpu.failed.csv").read_bytes()
    assert [r["path"] for r in rows(tmp_path / "gpu.failed.csv")] == ["cut.jpg", "cut_eoi.jpg"]
    ea = np.fromfile(tmp_path / "cpu.emb.f32", "<f4").reshape(a.rows, -1)
    eb = np.fromfile(tmp_path / "gpu.emb.f32", "<f4").reshape(b.rows, -1)
    cosine = (ea * eb).sum(1)
    assert cosine.min() > MIN_COSINE, cosine
    assert np.abs(ea - eb).max() > 1e-6  # the JPEGs really took the tensor path
    manifest = json.loads((tmp_path / "gpu.manifest.json").read_text())
    assert manifest["options"]["decode"] == "gpu" and manifest["fingerprint"]["decode"] == "gpu"
    # Workers give the same files on the bytes path too.
    c = tag_images(folder, tmp_path / "gpu2.csv", scorer, batch_size=3, workers=2, decode="gpu")
    assert c.rows == b.rows and (tmp_path / "gpu2.csv").read_bytes() == (tmp_path / "gpu.csv").read_bytes()
    np.testing.assert_allclose(np.fromfile(tmp_path / "gpu2.emb.f32", "<f4").reshape(c.rows, -1), eb, atol=1e-5)


def test_rerun_with_other_mode_refused(scorer, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    tag_images(folder, out, scorer, batch_size=8, decode="cpu")
    with pytest.raises(UserError, match="decode"):
        tag_images(folder, out, scorer, batch_size=8, decode="gpu")
    assert tag_images(folder, out, scorer, batch_size=8, decode="auto").already_complete  # auto = cpu here
    again = tag_images(folder, out, scorer, batch_size=8, decode="gpu", overwrite=True)
    assert again.rows == 15 and json.loads((tmp_path / "t.manifest.json").read_text())["options"]["decode"] == "gpu"


def test_old_manifest_without_decode_resumes_as_cpu(scorer, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    tag_images(folder, out, scorer, batch_size=8, decode="cpu")
    path = tmp_path / "t.manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["fingerprint"]["decode"]
    path.write_text(json.dumps(manifest))
    assert tag_images(folder, out, scorer, batch_size=8, decode="cpu").already_complete


def test_tensor_preprocessing_close_to_pil(folder: Path) -> None:
    transform = build_transform(64)
    pre = TensorPreprocess.from_transform(transform)
    assert pre == TensorPreprocess(64, 64, pre.mean, pre.std, "bicubic")
    worst, means = 0.0, []
    for path in sorted(folder.glob("im*.jpg")):
        data, orientation = read_jpeg(str(path), 10**9)
        fast = pre(apply_orientation(decode_jpeg(data, mode=ImageReadMode.RGB), orientation))
        ref = transform(open_rgb(path))
        assert fast.shape == ref.shape == (3, 64, 64)
        diff = (fast - ref).abs()
        worst, means = max(worst, float(diff.max())), means + [float(diff.mean())]
    assert worst < MAX_ABS_DIFF and max(means) < MAX_MEAN_DIFF, (worst, means)


def test_batched_preprocessing_equals_one_by_one() -> None:
    """Images grouped by size and resized together give each image's own result."""
    pre = TensorPreprocess(64, 64, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28))
    gen = torch.Generator().manual_seed(0)
    sizes = [(90, 120), (120, 90), (90, 120), (64, 64), (90, 120), (300, 200)]
    images = [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in sizes]
    batched = pre.batch(images, group=True)  # as on a GPU
    assert len(batched) == len(images)
    for image, got in zip(images, batched):
        torch.testing.assert_close(got, pre(image), rtol=0, atol=1e-5)
    assert pre.batch([]) == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_tensor_matches_pil(tmp_path: Path, orientation: int) -> None:
    # Asymmetric content (a bright block in one corner of a wide image) shows any wrong turn.
    arr = np.zeros((40, 64, 3), np.uint8)
    arr[:10, :16] = 255
    arr[30:, 40:] = (0, 0, 255)
    path = tmp_path / "o.jpg"
    path.write_bytes(_jpeg(Image.fromarray(arr), orientation=orientation))
    data, seen = read_jpeg(str(path), 10**9)
    assert seen == orientation
    ours = apply_orientation(decode_jpeg(data, mode=ImageReadMode.RGB), orientation).permute(1, 2, 0).numpy()
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert ours.shape == ref.shape
    assert np.abs(ours.astype(int) - ref.astype(int)).mean() < 2


def test_bomb_jpeg_refused_in_gpu_mode(scorer, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "bomb.jpg").write_bytes(bomb_jpeg())
    (root / "ok.jpg").write_bytes(_jpeg(Image.new("RGB", (80, 60), (10, 200, 10))))
    with pytest.raises(DecodeError, match="too many pixels"):
        read_jpeg(str(root / "bomb.jpg"), 178_956_970)
    reasons = {}
    for mode in ("cpu", "gpu"):
        out = tmp_path / f"{mode}.csv"
        summary = tag_images(root, out, scorer, batch_size=4, decode=mode)
        assert (summary.rows, summary.failed) == (1, 1)
        reasons[mode] = rows(tmp_path / f"{mode}.failed.csv")
    assert reasons["cpu"] == reasons["gpu"] and "too many pixels" in reasons["gpu"][0]["error"]


def test_forced_gpu_refuses_unknown_preprocessing(scorer, folder: Path, tmp_path: Path) -> None:
    import dataclasses

    odd = dataclasses.replace(scorer, transform=lambda img: build_transform(64)(img))
    with pytest.raises(UserError, match="--decode cpu"):
        tag_images(folder, tmp_path / "x.csv", odd, decode="gpu")
    assert tag_images(folder, tmp_path / "y.csv", odd, decode="auto").rows == 15
