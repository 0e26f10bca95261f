"""``hspnet tag`` on a GPU: CPU decoding vs GPU decoding, against the model's own ceiling.

Run on demand (never part of the tests):

    python benchmarks/gpu_tag.py                                  # GPU: RN50, 224 px, 4000 JPEGs, batch 256
    python benchmarks/gpu_tag.py --out-json "$OUT/gpu_tag.json"   # the device check (benchmarks/gpu_check.sh)
    .venv/bin/python benchmarks/gpu_tag.py --device cpu --clip-model hspnet-tiny-rn --images 64 \
        --batch-size 16 --workers 2                               # CPU smoke test of the plumbing

Goal (issue): end-to-end ``hspnet tag`` above 3,000 images/s on an H200. The script generates
N varied JPEGs of camera-like sizes (500x375 to 640x480, both orientations, quality 90) in
parallel processes, builds a zero-shot scorer with random weights (speed does not depend on
them; the COCO taxonomy's 80 labels) and times, per ``--modes`` entry:

* ``cpu``: ``tag_images(decode="cpu")``: PIL decoding and resizing in ``--workers`` DataLoader
  workers, the forward pass and writing tags, embeddings and manifest;
* ``gpu``: ``tag_images(decode="gpu")``: workers only read bytes; nvJPEG decodes each batch on
  the scorer's device and resizes there (on a CPU device ``decode_jpeg`` runs on the CPU);
* ``decode``: the decoding half of ``gpu`` alone: JPEG bytes already in memory, batched
  ``decode_jpeg`` plus the package's tensor preprocessing, no model, no files written; timed
  with images grouped by size (``images_per_second``) and one by one
  (``per_image_preprocess_images_per_second``);
* ``forward``: the ceiling: pre-decoded, pre-resized (B, 3, S, S) tensors already on the device
  through the scorer's image encoder, as ``tag_images`` calls it (bf16 autocast and
  channels-last on CUDA, float32 on CPU).

Each ``tag_images`` mode is run three times: a small warm-up (discarded), a run on a quarter of
the images and a run on all of them, each given as a ``--list`` file. ``images_per_second`` is
the full run as ``hspnet tag`` reports it (DataLoader start-up included); ``marginal_images_per_second`` is
(N - N/4) / (t_full - t_quarter), the steady rate with the fixed costs subtracted. Peak GPU
memory is that of the full run (``torch.cuda.max_memory_allocated``, reset before it).

The images are read back from the page cache (they were just written): disk speed is not part
of these numbers. Output: a table, then one JSON line (also written to ``--out-json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

MODES = ("cpu", "gpu", "decode", "forward")
GOAL_IMAGES_PER_SECOND = 3000.0
# Common camera / web sizes around 0.2-0.3 megapixels, landscape and portrait (width, height).
SIZES = ((640, 480), (480, 640), (500, 375), (375, 500), (640, 427), (427, 640), (600, 450), (512, 384))


# --------------------------------------------------------------------------------------------
# Generated images
# --------------------------------------------------------------------------------------------


def render_jpeg(path: str, seed: int, index: int, quality: int = 90) -> int:
    """Write one varied, photo-like JPEG to ``path``; returns its size in bytes.

    Content: a two-colour gradient, a low-frequency colour field (smooth blotches, like an out-of-
    focus background) and a finer one (texture), a few filled shapes with hard edges, and
    sensor-like noise. Flat or pure-noise images would decode much faster or slower than photos;
    this mix gives JPEGs of a photo's size and entropy (at quality 90: about 50-110 KiB, 78 KiB
    on average).
    """
    rng = np.random.default_rng([seed, index])
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / math.hypot(width, height) + 0.5
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    pixels = c0 + ramp[..., None] * (c1 - c0)
    # Colour fields: coarse random grids upsampled bicubically (blotches, then finer texture).
    for grid, amplitude in (((6, 8), 0.5), ((96, 128), 0.3)):
        field = Image.fromarray(rng.integers(0, 256, (*grid, 3), dtype=np.uint8))
        pixels += (np.asarray(field.resize((width, height), Image.BICUBIC), np.float32) - 128.0) * amplitude
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1 + 8, y1 + 8), fill=colour)
    noisy = np.asarray(image, np.float32) + rng.normal(0.0, rng.uniform(4.0, 10.0), (height, width, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return os.path.getsize(path)


def _render_range(folder: str, seed: int, start: int, stop: int, width: int) -> list[int]:
    return [render_jpeg(os.path.join(folder, f"img{i:0{width}d}.jpg"), seed, i) for i in range(start, stop)]


def generate_jpegs(folder: Path, n: int, seed: int = 0, processes: int = 1) -> list[int]:
    """Write ``n`` JPEGs ``img0000.jpg``... into ``folder`` with ``processes`` processes; their sizes.

    Uses ``fork`` so the children need not re-import this script and torch (seconds each); they
    only run numpy and PIL, and the parent has not touched CUDA yet when this runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    width = len(str(max(n - 1, 1)))
    processes = max(1, min(processes, n))
    if processes == 1:
        return _render_range(str(folder), seed, 0, n, width)
    chunk = math.ceil(n / (processes * 4))  # several chunks per process evens out their finish times
    bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = pool.map(_render_range, *zip(*[(str(folder), seed, s, e, width) for s, e in bounds]))
        return [size for part in parts for size in part]


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """What ``tag_images`` runs the encoder under: bf16 (fp16 without bf16) autocast on CUDA only."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _write_list(path: Path, keys: list[str]) -> Path:
    path.write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    return path


def time_tag_images(
    scorer: Any, images_dir: Path, keys: list[str], work: Path, decode: str, batch_size: int, workers: int
) -> dict[str, Any]:
    """``tag_images`` with ``decode`` on all ``keys``: warm-up, quarter and full run (module doc)."""
    from hspnet_cli.tagging.run import tag_images

    device = scorer.device
    n = len(keys)
    out = work / f"out-{decode}" / "tags.csv"
    out.parent.mkdir(parents=True, exist_ok=True)

    def run(count: int, name: str) -> Any:
        # A --list file picks the first `count` images (the full run's too: with --images-dir the
        # folder may hold more than --images).
        listed = _write_list(work / f"{decode}-{name}.txt", keys[:count])
        return tag_images(
            images_dir,
            out,
            scorer,
            list_file=listed,
            batch_size=batch_size,
            workers=workers,
            decode=decode,
            overwrite=True,
            progress=False,
        )

    run(min(n, 2 * batch_size), "warmup")  # lazy CUDA/cuDNN/nvJPEG set-up and worker start-up paths
    quarter = run(max(1, n // 4), "quarter") if n >= 8 else None
    _sync(device)
    _reset_peak(device)
    full = run(n, "full")
    _sync(device)
    result: dict[str, Any] = {
        "what": f"tag_images(decode={decode!r}, workers={workers})",
        "images": full.processed,
        "failed": full.failed,
        "seconds": round(full.seconds, 3),
        "images_per_second": round(full.images_per_second, 1),
        "peak_gpu_mib": _peak_mib(device),
    }
    if quarter is not None and full.seconds > quarter.seconds:
        result["marginal_images_per_second"] = round(
            (full.processed - quarter.processed) / (full.seconds - quarter.seconds), 1
        )
    if full.failed:
        result["failures"] = [f"{p}: {e}" for p, e in full.failures[:3]]
    return result


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def time_decode(scorer: Any, files: list[Path], batch_size: int) -> dict[str, Any]:
    """Batched ``decode_jpeg`` on the scorer's device + the tensor preprocessing, bytes in memory."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from hspnet_cli.tagging.gpu_decode import TensorPreprocess

    device = scorer.device
    preprocess = TensorPreprocess.from_transform(scorer.transform)
    if preprocess is None:
        return {"what": "decode_jpeg + TensorPreprocess", "skipped": "this model's transform has no tensor path"}
    datas = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]

    def decode(batch: list[torch.Tensor], batched: bool) -> torch.Tensor:
        images = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)
        # Grouped by size (TensorPreprocess.batch, what tag_images does on a GPU) vs one by one
        # (what it does on the CPU): the GPU run says whether grouping pays there.
        return torch.stack(preprocess.batch(images, group=True) if batched else [preprocess(image) for image in images])

    result: dict[str, Any] = {
        "what": f"decode_jpeg(device={device.type!r}) + TensorPreprocess.batch, bytes in memory",
        "images": len(datas),
    }
    for batched in (False, True):
        decode(datas[:batch_size], batched)  # warm-up: nvJPEG handles, resize kernels
        _sync(device)
        _reset_peak(device)
        start = time.perf_counter()
        for batch in _batches(datas, batch_size):
            decode(batch, batched)
        _sync(device)
        seconds = time.perf_counter() - start
        if batched:
            result.update(
                seconds=round(seconds, 3),
                images_per_second=round(len(datas) / seconds, 1),
                peak_gpu_mib=_peak_mib(device),
            )
        else:
            result["per_image_preprocess_images_per_second"] = round(len(datas) / seconds, 1)
    return result


def time_forward(scorer: Any, batch_size: int, iters: int, warmup: int) -> dict[str, Any]:
    """The ceiling: the image encoder on one pre-made batch already on the device, as tag_images runs it."""
    device = scorer.device
    images = torch.randn(batch_size, 3, scorer.image_size, scorer.image_size, device=device)
    if device.type == "cuda":
        # tag_images converts the encoder (and each batch) to channels-last on CUDA; so does the ceiling.
        scorer.image_encoder.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), _autocast(device):
        for _ in range(warmup):
            scorer.embed(images)
        _sync(device)
        _reset_peak(device)
        start = time.perf_counter()
        for _ in range(iters):
            scorer.embed(images)
        _sync(device)
    seconds = time.perf_counter() - start
    precision = "bf16 autocast, channels-last" if device.type == "cuda" else "float32"
    return {
        "what": f"image encoder on pre-decoded tensors ({precision})",
        "images": batch_size * iters,
        "seconds": round(seconds, 3),
        "images_per_second": round(batch_size * iters / seconds, 1),
        "peak_gpu_mib": _peak_mib(device),
    }


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _environment(device: torch.device) -> dict[str, Any]:
    import torchvision

    env: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return env


def print_table(results: dict[str, dict[str, Any]], ceiling: float | None) -> None:
    print(f"\n{'mode':8} {'images':>7} {'img/s':>9} {'marginal':>9} {'/ceiling':>9} {'peak GPU MiB':>13}  what")
    for mode, r in results.items():
        if "skipped" in r:
            print(f"{mode:8} {'-':>7} {'-':>9} {'-':>9} {'-':>9} {'-':>13}  skipped: {r['skipped']}")
            continue
        marginal = r.get("marginal_images_per_second")
        ratio = r.get("ratio_to_ceiling")
        print(
            f"{mode:8} {r['images']:7d} {r['images_per_second']:9.1f} "
            f"{'-' if marginal is None else f'{marginal:.1f}':>9} {'-' if ratio is None else f'{ratio:.3f}':>9} "
            f"{'-' if r['peak_gpu_mib'] is None else r['peak_gpu_mib']:>13}  {r['what']}"
        )
    if ceiling:
        print(f"ceiling (forward): {ceiling:.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--clip-model", "--model", dest="model", default="RN50", help="open_clip architecture (random weights)"
    )
    parser.add_argument("--taxonomy", default="coco")
    parser.add_argument("--images", type=int, default=None, help="generated JPEGs (default: 4000 on GPU, 64 on CPU)")
    parser.add_argument(
        "--images-dir",
        type=Path,
        default=None,
        help="tag these images (the first --images of them) instead of generating some",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 on GPU, 16 on CPU")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(16, os.cpu_count() or 1),
        help="DataLoader workers for tag_images, and processes generating the images",
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--forward-iters", type=int, default=None, help="timed batches (default: 50 GPU, 3 CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    n = args.images or (4000 if gpu else 64)
    batch_size = args.batch_size or (256 if gpu else 16)
    forward_iters = args.forward_iters or (50 if gpu else 3)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")

    from hspnet_cli.core.device import tune_for_cuda
    from hspnet_cli.scoring.scorer import zero_shot
    from hspnet_cli.sources.discover import discover_images
    from hspnet_cli.taxonomy import load_taxonomy

    report: dict[str, Any] = {
        "benchmark": "gpu_tag",
        "model": args.model,
        "batch_size": batch_size,
        "workers": args.workers,
    }
    with tempfile.TemporaryDirectory(prefix="gpu_tag-") as tmp:
        work = Path(tmp)
        # Images first: the generator forks, which is only safe before this process sets up CUDA.
        if args.images_dir is not None:
            images_dir = args.images_dir
            keys = list(discover_images(images_dir))[:n]
            report["images_source"] = str(images_dir)
        else:
            images_dir = work / "images"
            start = time.perf_counter()
            sizes = generate_jpegs(images_dir, n, seed=args.seed, processes=args.workers)
            seconds = time.perf_counter() - start
            keys = list(discover_images(images_dir))
            report["images_source"] = "generated"
            report["generated_kib_mean"] = round(sum(sizes) / len(sizes) / 1024, 1)
            print(f"generated {n} JPEGs (mean {report['generated_kib_mean']} KiB) in {seconds:.1f} s", flush=True)
        report["images"] = len(keys)
        report.update(_environment(device))

        torch.manual_seed(0)
        scorer = zero_shot(load_taxonomy(args.taxonomy), args.model, "none", device=str(device))
        tune_for_cuda(device)  # as tag_images does, so the ceiling is a fair one
        report["image_size"] = scorer.image_size
        print(
            f"scorer: {scorer.description}, {scorer.image_size} px, {scorer.taxonomy.num_labels} labels, "
            f"on {report['device']}; batch {batch_size}, {args.workers} workers",
            flush=True,
        )

        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            if mode == "forward":
                results[mode] = time_forward(scorer, batch_size, forward_iters, warmup=max(3, forward_iters // 5))
            elif mode == "decode":
                results[mode] = time_decode(scorer, [images_dir / k for k in keys], batch_size)
            else:
                results[mode] = time_tag_images(scorer, images_dir, keys, work, mode, batch_size, args.workers)
            if not gpu and mode == "gpu":
                results[mode]["note"] = "CPU device: decode_jpeg ran on the CPU, in the main process"
            print(f"{mode}: {json.dumps(results[mode])}", flush=True)

    ceiling = results.get("forward", {}).get("images_per_second")
    for r in results.values():
        if ceiling and "images_per_second" in r:
            r["ratio_to_ceiling"] = round(r["images_per_second"] / ceiling, 3)
    report["results"] = results
    if gpu and "gpu" in results:
        report["goal_images_per_second"] = GOAL_IMAGES_PER_SECOND
        report["goal_met"] = results["gpu"]["images_per_second"] >= GOAL_IMAGES_PER_SECOND
    print_table(results, ceiling)
    if args.out_json is not None:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
