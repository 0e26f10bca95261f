"""Training-step throughput of HSPNet: images/s, text-side share, peak memory.

Run on demand (never part of the tests):

    .venv/bin/python benchmarks/train_throughput.py                       # CPU, small defaults
    python benchmarks/train_throughput.py --device cuda --clip-model RN50 --image-size 224 \
        --batch-size 128 --steps 200                                      # the GPU check
    python benchmarks/train_throughput.py --device cuda --end-to-end 4096 # + hspnet train on generated images

Part 1 times the optimisation step alone on pre-made tensors (forward, SPLC loss, backward,
Adam, EMA) with the project's settings (the official preset's autocast, fp16 with a grad
scaler, and channels-last on GPU; --amp bf16 to compare), and times the text side (prompts
through the frozen text tower and the GCN, forward and backward) separately, at the cut
context length and at the full 77 positions, so the saving is a measured number.
Part 2 (``--end-to-end N``) runs the real ``hspnet train`` loop on N generated demo images at
the same size, data loading included. Random weights throughout: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_benchmark(args: argparse.Namespace) -> dict:
    from hspnet_cli.config import ModelConfig, TrainConfig
    from hspnet_cli.core.device import resolve_amp, tune_for_cuda
    from hspnet_cli.losses import build_loss
    from hspnet_cli.model.hspnet import build_model
    from hspnet_cli.taxonomy import load_taxonomy
    from hspnet_cli.train.optim import EMA, build_optimizer

    device = torch.device(args.device)
    tune_for_cuda(device)  # as hspnet train does
    tax = load_taxonomy(args.taxonomy)
    torch.manual_seed(0)
    model = build_model(tax, ModelConfig(clip_model=args.model, pretrained="none"), device=str(device))
    tc = TrainConfig(batch_size=args.batch_size)
    optimizer, scheduler = build_optimizer(model, tc, steps_per_epoch=args.steps + args.warmup)
    ema = EMA(model, 0.999)
    loss_fn = build_loss("splc")
    amp = resolve_amp(args.amp, device)
    # fp16 (the official preset) needs the grad scaler the real loop uses; bf16 does not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    channels_last = device.type == "cuda" and not args.no_channels_last
    if channels_last:
        model.visual.to(memory_format=torch.channels_last)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(args.batch_size, tax.num_labels, dtype=torch.int8, device=device)
    targets[torch.arange(args.batch_size), torch.randint(tax.num_labels, (args.batch_size,))] = 1
    index = torch.arange(args.batch_size)

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast(device.type, enabled=False)

    def step() -> None:
        with autocast():
            logits = model(images)
        loss = loss_fn(logits.float(), targets, epoch=0, index=index)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        ema.update(model)

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    step_s = (time.perf_counter() - start) / args.steps

    def text_side(full: bool) -> float:
        prompts = model.prompts
        if full:  # re-embed at 77 positions: what an uncut implementation pays
            pad = model.text.max_length - prompts.length
            suffix = torch.cat([prompts.suffix, prompts.suffix[:, -1:].expand(-1, pad, -1)], dim=1)
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                _sync(device)
                t0 = time.perf_counter()
            with autocast():
                ctx = model._context()
                if full:
                    emb = torch.cat([prompts.prefix.to(ctx.dtype), ctx, suffix.to(ctx.dtype)], dim=1)
                else:
                    emb = prompts.assemble(ctx)
                feats = model.text(emb, prompts.eos_index)
                if model.gcn_label is not None:
                    feats = model.gcn_label(model.label_graph.to(feats.dtype), feats)
            feats.float().sum().backward()
        _sync(device)
        return (time.perf_counter() - t0) / args.steps

    text_cut = text_side(full=False)
    text_full = text_side(full=True)
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "labels": tax.num_labels,
        "groups": tax.num_groups,
        "amp": str(amp),
        "grad_scaler": scaler.is_enabled(),
        "channels_last": channels_last,
        "step_seconds": round(step_s, 4),
        "images_per_second": round(args.batch_size / step_s, 1),
        "text_side_seconds_cut": round(text_cut, 4),
        "prompt_length": model.prompts.length,
        "text_side_seconds_full77": round(text_full, 4),
        "text_share_of_step": round(text_cut / step_s, 3),
        "peak_memory_gib": round(peak, 2),
        "peak_memory_kind": "cuda allocated" if device.type == "cuda" else "max RSS",
    }


def end_to_end(args: argparse.Namespace) -> dict:
    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo_world(
            root / "world",
            n_images=args.end_to_end,
            seed=0,
            image_size=min(args.image_size, 256),
            workers=args.workers or 1,
        )
        make_split(
            root / "world" / "annotations.csv",
            root / "world" / "taxonomy.yaml",
            root / "split",
            options=SplitOptions(val_fraction=0.1),
        )
        config = apply_overrides(
            load_preset("official"),
            {
                "model.clip_model": args.model,
                "model.pretrained": "none",
                "train.epochs": args.epochs,
                "train.schedule_epochs": None,
                "train.batch_size": args.batch_size,
                "train.image_size": args.image_size,
                "train.num_workers": args.workers,
            },
        )
        result = train(root / "split", root / "world" / "images", root / "run", config, device=args.device)
        best = max(result.history, key=lambda r: r.images_per_second)
        return {
            "images": args.end_to_end,
            "epochs": args.epochs,
            "images_per_second_per_epoch": [round(r.images_per_second, 1) for r in result.history],
            "best_epoch_images_per_second": round(best.images_per_second, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clip-model", "--model", dest="model", default="RN50")
    parser.add_argument("--taxonomy", default="coco")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on GPU, 8 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 200 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--amp", default=None, help="auto | bf16 | fp16 | off (default: the official preset's)")
    parser.add_argument("--end-to-end", type=int, default=0, help="also run hspnet train on N generated images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (128 if gpu else 8)
    if args.amp is None:
        from hspnet_cli.config import load_preset

        args.amp = load_preset("official").train.amp
    args.steps = args.steps or (200 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (20 if gpu else 1)
    out = {"step": step_benchmark(args)}
    if args.end_to_end:
        out["end_to_end"] = end_to_end(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
