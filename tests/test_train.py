"""``hspnet train`` end to end on a tiny demo world: files, checkpoints, exact resume, caching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import invoke

from hspnet_cli.config import apply_overrides, load_preset
from hspnet_cli.core.errors import UserError
from hspnet_cli.model.checkpoint import checkpoint_taxonomy, load_checkpoint, model_from_checkpoint
from hspnet_cli.train.loop import train


def tiny(**changes):
    base = {
        "model.clip_model": "hspnet-tiny",
        "model.pretrained": "none",
        "train.epochs": 2,
        "train.schedule_epochs": None,
        "train.batch_size": 16,
        "train.num_workers": 0,
        "train.lr": 1e-3,
        "train.gcn_lr": 5e-3,
    }
    return apply_overrides(load_preset("official"), {**base, **changes})


def run(demo_split, out: Path, config, **kw):
    return train(
        demo_split["split"], demo_split["images"], out, config, taxonomy=demo_split["taxonomy"], device="cpu", **kw
    )


def test_run_folder_checkpoints_and_metrics(demo_split, tmp_path: Path) -> None:
    result = run(demo_split, tmp_path / "run", tiny())
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    # thresholds.json: the demo split's validation set is fully labelled (issue 18 item 15)
    assert files == ["best.ckpt", "config.yaml", "last.ckpt", "metrics.jsonl", "thresholds.json"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]  # counted from 1, as the console does
    assert all(0 <= line["val_map_raw"] <= 1 and 0 <= line["val_map_ema"] <= 1 for line in lines)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["clip_model"] == "hspnet-tiny"
    assert 0 < result.baseline_map < 1 and result.best_epoch in (1, 2)
    assert len(result.step_losses) == 2 * 6  # 90 training images / 16 per step -> 6 steps, 2 epochs

    best = load_checkpoint(tmp_path / "run" / "best.ckpt")  # weights_only=True inside
    for key in ("config", "taxonomy", "label_names", "model", "label_features", "package_version"):
        assert key in best
    tax = checkpoint_taxonomy(best)
    assert best["label_names"] == tax.label_names and len(tax.label_names) == 16
    # The stored label features are those of the stored weights, and the model rebuilds from it
    # alone (a random backbone's frozen text tower is stored too).
    assert best["frozen_text"] is not None
    model = model_from_checkpoint(best)
    with torch.no_grad():
        torch.testing.assert_close(model.label_features(), best["label_features"], rtol=1e-5, atol=1e-5)


def test_resume_continues_exactly(demo_split, tmp_path: Path) -> None:
    config = tiny(**{"train.epochs": 3})
    whole = run(demo_split, tmp_path / "whole", config)
    first = run(demo_split, tmp_path / "parts", config, stop_after_epochs=1)
    assert len(first.step_losses) == 6
    rest = run(demo_split, tmp_path / "parts", config, resume=True)
    assert first.step_losses + rest.step_losses == whole.step_losses  # bit-identical on CPU
    assert len((tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()) == 3


def test_bf16_autocast_path_trains_like_full_precision(demo_split, tmp_path: Path) -> None:
    """The mixed-precision code path GPUs take (autocast bf16), run on the CPU: the same
    first-step loss within bf16's precision, float32 weights in the checkpoint, a usable model."""
    from hspnet_cli.scoring.scorer import from_checkpoint

    full = run(demo_split, tmp_path / "fp32", tiny(**{"train.amp": "off", "train.epochs": 1}))
    half = run(demo_split, tmp_path / "bf16", tiny(**{"train.amp": "bf16", "train.epochs": 1}))
    loss32, loss16 = (
        json.loads((r.out_dir / "metrics.jsonl").read_text().splitlines()[0])["train_loss"] for r in (full, half)
    )
    assert loss16 == pytest.approx(loss32, rel=0.05)
    assert 0 < half.best_map <= 1 and abs(half.best_map - full.best_map) < 0.1
    saved = torch.load(tmp_path / "bf16" / "best.ckpt", weights_only=True)
    assert saved["config"]["train"]["amp"] == "bf16"
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())
    scorer = from_checkpoint(tmp_path / "bf16" / "best.ckpt")
    assert torch.isfinite(scorer(torch.rand(2, 3, scorer.image_size, scorer.image_size))).all()


def test_channels_last_image_tower_gives_the_same_features() -> None:
    """GPU runs put the image tower in channels-last; the features must not change."""
    from hspnet_cli.model.clip_models import load_clip

    torch.manual_seed(0)
    visual = load_clip("hspnet-tiny-rn", "none").model.visual.eval()
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        plain = visual(images)
        visual.to(memory_format=torch.channels_last)
        fast = visual(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def test_existing_run_is_not_overwritten(demo_split, tmp_path: Path) -> None:
    run(demo_split, tmp_path / "run", tiny(**{"train.epochs": 1}))
    with pytest.raises(UserError, match="holds a run already; continue it with --resume"):
        run(demo_split, tmp_path / "run", tiny(**{"train.epochs": 1}))


def test_cached_features_give_the_same_metrics(demo_split, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HSPNET_CACHE", str(tmp_path / "cache"))
    frozen = {"model.freeze_image_encoder": True}
    plain = run(demo_split, tmp_path / "plain", tiny(**frozen))
    cached = run(demo_split, tmp_path / "cached", tiny(**frozen, **{"train.cache_features": True}))
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2  # train and val
    for a, b in zip(plain.history, cached.history):
        assert a.val_map_raw == pytest.approx(b.val_map_raw, abs=1e-4)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    again = run(demo_split, tmp_path / "again", tiny(**frozen, **{"train.cache_features": True}))
    assert [r.val_map_raw for r in again.history] == [r.val_map_raw for r in cached.history]
    with pytest.raises(UserError, match="--cache-features needs a frozen image encoder"):
        run(demo_split, tmp_path / "bad", tiny(**{"train.cache_features": True}))


def test_bad_and_missing_images_are_named(demo_split, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(demo_split["images"], images)
    victim = sorted(images.rglob("*.png"))[3]
    victim.write_bytes(b"not a png")
    with pytest.raises(UserError, match=rf"{victim.name}: cannot read image"):
        train(demo_split["split"], images, tmp_path / "run", tiny(), taxonomy=demo_split["taxonomy"], device="cpu")
    victim.unlink()
    with pytest.raises(UserError, match=r"image\(s\) not found under"):
        train(demo_split["split"], images, tmp_path / "run2", tiny(), taxonomy=demo_split["taxonomy"], device="cpu")


def test_cli_train_json_and_resume_rules(demo_split, runner, tmp_path: Path) -> None:
    args = [
        "train",
        "--split",
        demo_split["split"],
        "--images",
        demo_split["images"],
        "-t",
        demo_split["taxonomy"],
        "--out",
        tmp_path / "run",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--set",
        "train.schedule_epochs=null",
        "--set",
        "model.n_ctx=2",
        "--json",
    ]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"][0]["epoch"] == 1 and "label_frequency_baseline_map" in summary
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["n_ctx"] == 2
    bad = invoke(runner, "train", "--resume", tmp_path / "run", "--epochs", "3")
    assert bad.exit_code == 2 and "--resume continues a run with its own config" in bad.stderr
    bad = invoke(runner, "train", "--split", demo_split["split"], "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "missing --images" in bad.stderr


def test_ddp_on_two_cpu_processes(demo_split, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29513",
        "-m",
        "hspnet_cli",
        "--quiet",
        "train",
        "--split",
        str(demo_split["split"]),
        "--images",
        str(demo_split["images"]),
        "-t",
        str(demo_split["taxonomy"]),
        "--out",
        str(out),
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--set",
        "train.schedule_epochs=null",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])  # rank 0 alone prints
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert 0 < summary["best_val_map"] <= 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # written once, by rank 0
    assert load_checkpoint(out / "last.ckpt")["step"] == 2 * 6  # 90 images / (2 x 8) -> 6 steps per rank
