"""What a person sees while training and right after: ``hspnet train`` / ``eval`` / ``calibrate``
/ ``export`` / ``tag`` / ``search`` end to end on the demo world, off a terminal (CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import invoke

from hspnet_cli.config import list_presets
from hspnet_cli.data.split_io import labels_sha256
from hspnet_cli.model.checkpoint import best_record, epochs_done, load_checkpoint

RANDOM = "randomly initialised"


def _train_args(demo_split, out: Path, *extra: str) -> list:
    return [
        "train",
        "--split",
        demo_split["split"],
        "--images",
        demo_split["images"],
        "-t",
        demo_split["taxonomy"],
        "--out",
        out,
        "--device",
        "cpu",
        *extra,
    ]


@pytest.fixture(scope="module")
def an_run(demo_split, tmp_path_factory):
    """The demo preset (AN loss, EMA) for 3 epochs, as a user runs it into a log file."""
    out = tmp_path_factory.mktemp("console") / "run"
    from typer.testing import CliRunner

    result = invoke(
        CliRunner(),
        *_train_args(demo_split, out, "--preset", "demo", "--epochs", "3", "--batch-size", "16", "--workers", "0"),
    )
    assert result.exit_code == 0, result.output
    return {"out": out, "result": result, **demo_split}


def test_one_plain_line_per_epoch_numbered_like_metrics(an_run) -> None:
    stdout = an_run["result"].stdout
    lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    metrics = [json.loads(line) for line in (an_run["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]  # the same numbers as metrics.jsonl
    assert "┏" not in stdout and "│" not in stdout  # plain lines, no table drawing in a log
    for line, m in zip(lines, metrics):
        assert f"val mAP raw {m['val_map_raw']:.4f}" in line and f"EMA {m['val_map_ema']:.4f}" in line
    best = max((m for m in metrics if m["best"]), key=lambda m: m["epoch"])
    final = re.search(r"best validation mAP ([0-9.]+) \(epoch (\d+), (\w+) weights\)", " ".join(stdout.split()))
    assert final and int(final.group(2)) == best["epoch"] and final.group(3) == best["best_weights"]
    saved = load_checkpoint(an_run["out"] / "best.ckpt")
    assert saved["epoch"] == best["epoch"] == saved["best"]["epoch"] and saved["best"]["source"] == best["best_weights"]


def test_best_star_marks_the_column_that_was_saved(an_run) -> None:
    lines = [line for line in an_run["result"].stdout.splitlines() if line.startswith("epoch ")]
    metrics = [json.loads(line) for line in (an_run["out"] / "metrics.jsonl").read_text().splitlines()]
    for line, m in zip(lines, metrics):
        raw_star = f"raw {m['val_map_raw']:.4f} *" in line
        ema_star = f"EMA {m['val_map_ema']:.4f} *" in line
        assert (raw_star, ema_star) == (m["best_weights"] == "raw", m["best_weights"] == "ema"), line
        if m["best"]:  # the saved kind is the better of the two that epoch
            better = "ema" if m["val_map_ema"] > m["val_map_raw"] else "raw"
            assert m["best_weights"] == better


def test_best_star_on_ema_column_in_terminal_table() -> None:
    from rich.console import Console

    from hspnet_cli.train.loop import EpochRecord
    from hspnet_cli.train.progress import epoch_table

    record = EpochRecord(4, 0.5, 0.30, 0.35, 1e-3, 2.0, 50.0, best=True, best_weights="ema")
    console = Console(width=120, record=True)
    console.print(epoch_table(record, 10))
    text = console.export_text()
    assert "epoch 4/10" in text and "0.3500 *" in text and "0.3000 *" not in text


def test_config_yaml_records_the_taxonomy_and_is_a_valid_config(an_run, runner, tmp_path: Path) -> None:
    from hspnet_cli.taxonomy import load_taxonomy
    from hspnet_cli.train.record import groups_sha256

    recorded = yaml.safe_load((an_run["out"] / "config.yaml").read_text())["taxonomy"]
    tax = load_taxonomy(an_run["taxonomy"])
    assert recorded["source"] == str(Path(an_run["taxonomy"]).resolve())
    assert recorded["labels_sha256"] == labels_sha256(tax.label_names)
    assert recorded["groups_sha256"] == groups_sha256(tax) and recorded["groups"] == 4 and recorded["labels"] == 16
    import hashlib

    assert recorded["file_sha256"] == hashlib.sha256(Path(an_run["taxonomy"]).read_bytes()).hexdigest()
    # A regrouped taxonomy (same labels) has another groups digest.
    moved = dict(tax.groups)
    first, second = list(moved)[:2]
    moved[second] = moved[second] + [moved[first][0]]
    moved[first] = moved[first][1:]
    from hspnet_cli.taxonomy import Taxonomy

    assert groups_sha256(Taxonomy(tax.name, tax.labels, moved)) != recorded["groups_sha256"]
    # The run's config.yaml can be given back as --config (the taxonomy section is a record).
    again = invoke(
        runner,
        *_train_args(
            an_run, tmp_path / "again", "--config", an_run["out"] / "config.yaml", "--set", "train.epochs=1", "--json"
        ),
    )
    assert again.exit_code == 0, again.output


def test_train_help_lists_the_presets_that_exist(runner) -> None:
    result = invoke(runner, "train", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    presets = list_presets()
    assert "demo" in presets and len(presets) >= 3
    assert all(name in text for name in presets), text


def test_no_random_init_warning_for_a_trained_checkpoint(an_run, runner, tmp_path: Path) -> None:
    out, val = an_run["out"], an_run["split"] / "val.csv"
    steps = {
        "eval": ["eval", "--checkpoint", out, "--data", val, "--images", an_run["images"]],
        "calibrate": [
            "calibrate",
            "--checkpoint",
            out,
            "--data",
            val,
            "--images",
            an_run["images"],
            "-o",
            tmp_path / "t.json",
        ],
        "export": ["export", "--checkpoint", out, "-o", tmp_path / "m.pt"],
        "tag": ["tag", an_run["images"], "--out", tmp_path / "tags.csv", "--checkpoint", out, "--workers", "0"],
        "index": ["index", "build", tmp_path / "tags.csv", "--out", tmp_path / "i.faiss"],
        "search": ["search", tmp_path / "i.faiss", "--text", "spiral", "--checkpoint", out],
    }
    for name, args in steps.items():
        result = invoke(runner, *args)
        assert result.exit_code == 0, (name, result.output)
        assert RANDOM not in result.output, name
    # An untrained random model still says so.
    zero = invoke(
        runner,
        "eval",
        "--zero-shot",
        "-t",
        an_run["taxonomy"],
        "--clip-model",
        "hspnet-tiny-rn",
        "--pretrained",
        "none",
        "--data",
        val,
        "--images",
        an_run["images"],
    )
    assert zero.exit_code == 0 and RANDOM in " ".join(zero.output.split())


def test_eval_says_why_f1_is_zero_and_uses_calibrated_thresholds(an_run, runner, tmp_path: Path) -> None:
    out, val = an_run["out"], an_run["split"] / "val.csv"
    # By default eval cuts at the thresholds training fitted on the (fully labelled) validation split.
    fitted = json.loads(
        invoke(runner, "eval", "--checkpoint", out, "--data", val, "--images", an_run["images"], "--json", "-").stdout
    )
    assert fitted["threshold_source"].startswith("calibrated per label") and fitted["cf1"] > 0
    plain = invoke(
        runner,
        "eval",
        "--checkpoint",
        out,
        "--data",
        val,
        "--images",
        an_run["images"],
        "--threshold",
        "0.5",
        "--json",
        "-",
    )
    data = json.loads(plain.stdout)
    # The AN loss leaves every probability far below 0.5: F1 is 0 there, and the report says why.
    assert data["threshold"] == 0.5 and data["cf1"] == 0 and "hspnet calibrate" in data["threshold_note"]
    shown = invoke(
        runner, "eval", "--checkpoint", out, "--data", val, "--images", an_run["images"], "--threshold", "0.5"
    )
    assert "no probability reaches 0.5" in " ".join(shown.stdout.split())
    assert (
        invoke(
            runner,
            "calibrate",
            "--checkpoint",
            out,
            "--data",
            val,
            "--images",
            an_run["images"],
            "-o",
            tmp_path / "t.json",
        ).exit_code
        == 0
    )
    with_file = json.loads(
        invoke(
            runner,
            "eval",
            "--checkpoint",
            out,
            "--data",
            val,
            "--images",
            an_run["images"],
            "--thresholds",
            tmp_path / "t.json",
            "--json",
            "-",
        ).stdout
    )
    assert with_file["cf1"] > 0 and with_file["threshold"] is None and "threshold_note" not in with_file
    assert set(with_file["thresholds"]) == set(data["per_class"])
    # An export that carries the calibrated thresholds is evaluated at them without being told.
    assert (
        invoke(
            runner, "export", "--checkpoint", out, "-o", tmp_path / "m.pt", "--thresholds", tmp_path / "t.json"
        ).exit_code
        == 0
    )
    exported = json.loads(
        invoke(
            runner,
            "eval",
            "--checkpoint",
            tmp_path / "m.pt",
            "--data",
            val,
            "--images",
            an_run["images"],
            "--json",
            "-",
        ).stdout
    )
    assert exported["threshold_source"] == f"per-label thresholds of {tmp_path / 't.json'}"
    assert exported["cf1"] == pytest.approx(with_file["cf1"], abs=1e-6)
    both = invoke(
        runner,
        "eval",
        "--checkpoint",
        out,
        "--data",
        val,
        "--images",
        an_run["images"],
        "--threshold",
        "0.1",
        "--thresholds",
        tmp_path / "t.json",
    )
    assert both.exit_code == 2 and "not both" in both.stderr


def test_demo_preset_one_epoch_short_schedule(demo_split, runner, tmp_path: Path) -> None:
    """90 training images at 18 a step: a 5-step OneCycle, whose warm-up torch would end at step
    0 (ZeroDivisionError); the run trains and writes its folder."""
    result = invoke(
        runner,
        *_train_args(
            demo_split,
            tmp_path / "run",
            "--preset",
            "demo",
            "--epochs",
            "1",
            "--batch-size",
            "18",
            "--workers",
            "0",
            "--json",
        ),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_epoch"] == 1 and 0 < summary["best_val_map"] <= 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.ckpt",
        "config.yaml",
        "last.ckpt",
        "metrics.jsonl",
        "thresholds.json",
    ]
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["step"] == 5


def test_warmup_fraction_avoids_zero_length_phase() -> None:
    from hspnet_cli.train.optim import warmup_fraction

    for total in range(1, 60):
        for pct in (0.1, 0.2, 0.25, 0.3, 0.5):
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=0.1)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=0.1, total_steps=total, pct_start=warmup_fraction(pct, total)
            )
            for _ in range(total):
                opt.step()
                sched.step()
    assert warmup_fraction(0.2, 5) == pytest.approx(0.3) and warmup_fraction(0.2, 20) == 0.2


@pytest.mark.parametrize("size", [96, 32])
def test_image_size_on_the_resnet_trains_and_is_used_downstream(demo_split, runner, tmp_path: Path, size) -> None:
    out = tmp_path / "run"
    result = invoke(
        runner,
        *_train_args(
            demo_split,
            out,
            "--preset",
            "demo",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--workers",
            "0",
            "--image-size",
            str(size),
            "--json",
        ),
    )
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(out / "best.ckpt")
    grid = size // 32
    assert saved["model"]["visual.attnpool.positional_embedding"].shape[0] == grid * grid + 1
    ev = invoke(
        runner,
        "eval",
        "--checkpoint",
        out,
        "--data",
        demo_split["split"] / "val.csv",
        "--images",
        demo_split["images"],
        "--json",
        "-",
    )
    assert ev.exit_code == 0 and json.loads(ev.stdout)["image_size"] == size
    assert invoke(runner, "export", "--checkpoint", out, "-o", tmp_path / "m.pt").exit_code == 0
    from hspnet_cli.scoring.scorer import load_scorer

    scorer = load_scorer(tmp_path / "m.pt")
    assert scorer.image_size == size and scorer(torch.rand(2, 3, size, size)).shape == (2, 16)


def test_image_size_that_cannot_work_is_refused_before_any_folder(demo_split, runner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(
        runner,
        *_train_args(demo_split, out, "--preset", "demo", "--epochs", "1", "--workers", "0", "--image-size", "80"),
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "multiple of 32" in result.stderr and "64, 96" in result.stderr
    assert not out.exists()


def test_vit_image_size_resamples_patch_positions() -> None:
    from hspnet_cli.model.clip_models import load_clip
    from hspnet_cli.model.image_size import fit_image_size, resample_positions

    visual = load_clip("hspnet-tiny", "none").model.visual.eval()
    before = visual.positional_embedding.detach().clone()
    fit_image_size(visual, 96, "hspnet-tiny")
    assert visual.positional_embedding.shape == (6 * 6 + 1, before.shape[1])
    torch.testing.assert_close(visual.positional_embedding[0], before[0])  # class position kept
    assert visual(torch.rand(1, 3, 96, 96)).shape == (1, 32)
    # Resampling to the same grid is the identity; a constant grid stays constant.
    torch.testing.assert_close(resample_positions(before, 4), before)
    flat = torch.ones(17, 3)
    torch.testing.assert_close(resample_positions(flat, 7), torch.ones(50, 3))


def test_thread_rule_and_override(demo_split, runner, tmp_path: Path, monkeypatch) -> None:
    import hspnet_cli.core.device as runtime

    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert runtime.intra_op_threads(workers=1) == 1 and runtime.intra_op_threads(workers=0) == 2
    assert runtime.intra_op_threads(workers=4) == 1 and runtime.intra_op_threads(workers=4, requested=3) == 3
    monkeypatch.setattr(runtime, "usable_cores", lambda: 16)
    assert runtime.intra_op_threads(workers=4) == 12 and runtime.intra_op_threads(workers=4, processes=2) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert runtime.intra_op_threads(workers=4) == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    result = invoke(
        runner,
        *_train_args(demo_split, tmp_path / "a", "--preset", "demo", "--epochs", "1", "--workers", "1", "--json"),
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["threads"] == 1  # 2 cores - 1 worker
    result = invoke(
        runner,
        *_train_args(
            demo_split,
            tmp_path / "b",
            "--preset",
            "demo",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--threads",
            "1",
            "--json",
        ),
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["threads"] == 1
    assert torch.get_num_threads() == before  # the caller's setting is restored
    bad = invoke(runner, *_train_args(demo_split, tmp_path / "c", "--threads", "0"))
    assert bad.exit_code == 2 and "--threads must be at least 1" in bad.stderr


def test_tag_prints_periodic_lines_off_a_terminal(an_run, runner, tmp_path: Path, monkeypatch) -> None:
    from hspnet_cli.core.progress import LineProgress

    monkeypatch.setattr(LineProgress, "interval", 0.0)
    result = invoke(
        runner,
        "tag",
        an_run["images"],
        "--out",
        tmp_path / "tags.csv",
        "--checkpoint",
        an_run["out"],
        "--workers",
        "0",
        "--batch-size",
        "40",
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("tagging: ")]
    assert [line.split()[1] for line in lines] == ["40/120", "80/120", "120/120"]
    assert all("img/s" in line and "ETA" in line for line in lines)


def test_tag_threads_rule_and_override(an_run, runner, tmp_path: Path, monkeypatch) -> None:
    import hspnet_cli.core.device as runtime

    seen: list[int] = []
    real = runtime.intra_op_threads
    monkeypatch.setattr(runtime, "intra_op_threads", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    monkeypatch.setattr(runtime, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = ["tag", an_run["images"], "--checkpoint", an_run["out"], "--workers", "1"]
    assert invoke(runner, *args, "--out", tmp_path / "a.csv").exit_code == 0
    assert invoke(runner, *args, "--out", tmp_path / "b.csv", "--threads", "2").exit_code == 0
    assert seen == [3, 2]  # 4 cores - 1 worker; then as asked
    bad = invoke(runner, *args, "--out", tmp_path / "c.csv", "--threads", "0")
    assert bad.exit_code == 2 and "--threads must be at least 1" in bad.stderr
    assert not list(tmp_path.glob("c.*"))  # refused before anything was written


def test_old_checkpoints_counted_from_zero_resume_right() -> None:
    old = {"epoch": 2, "best": {"map": 0.3, "epoch": 1, "source": "raw"}}
    new = {"epoch": 3, "epoch_numbering": "from 1", "best": {"map": 0.3, "epoch": 2, "source": "raw"}}
    assert epochs_done(old) == epochs_done(new) == 3
    assert best_record(old)["epoch"] == best_record(new)["epoch"] == 2
