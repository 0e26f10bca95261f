"""Issue 18 item 15: training fits per-label thresholds for the kept checkpoint, and every command
that cuts probabilities into tags uses them by default and says which thresholds it used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke

from hspnet_cli.config import apply_overrides, load_preset
from hspnet_cli.data.split import SplitOptions, make_split
from hspnet_cli.model.checkpoint import load_checkpoint
from hspnet_cli.train.loop import train

TINY = {
    "model.clip_model": "hspnet-tiny",
    "model.pretrained": "none",
    "train.epochs": 1,
    "train.schedule_epochs": None,
    "train.batch_size": 16,
    "train.num_workers": 0,
    "train.lr": 1e-3,
    "train.gcn_lr": 5e-3,
}


def _train(split: Path, demo_split, out: Path):
    config = apply_overrides(load_preset("official"), TINY)
    return train(split, demo_split["images"], out, config, taxonomy=demo_split["taxonomy"], device="cpu")


@pytest.fixture(scope="module")
def calibrated(demo_split, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One epoch on the demo split, whose validation set is fully labelled (split's default)."""
    out = tmp_path_factory.mktemp("cal") / "run"
    return out, _train(demo_split["split"], demo_split, out)


@pytest.fixture(scope="module")
def uncalibrated(demo_split, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The same, but validation labels as weak as training's (--val-labels observed)."""
    root = tmp_path_factory.mktemp("uncal")
    make_split(
        demo_split["world"] / "annotations.csv",
        demo_split["taxonomy"],
        root / "split",
        options=SplitOptions(mode="single-positive", val_fraction=0.25, seed=0, val_labels="observed"),
    )
    return root / "run", _train(root / "split", demo_split, root / "run")


def test_training_stores_thresholds_fitted_on_validation_for_the_kept_weights(calibrated, demo_split) -> None:
    from hspnet_cli.data.split_io import read_split_csv
    from hspnet_cli.evaluation.calibration import calibrate
    from hspnet_cli.evaluation.evaluate import score_split
    from hspnet_cli.scoring.scorer import load_scorer

    run, result = calibrated
    best = load_checkpoint(run / "best.ckpt")
    stored = best["thresholds"]
    assert stored["format"] == "hspnet-thresholds" and stored["labels"] == best["label_names"]
    assert stored["source"]["fitted_by"] == "hspnet train" and stored["source"]["epoch"] == best["epoch"]
    assert json.loads((run / "thresholds.json").read_text()) == json.loads(json.dumps(stored))
    # They are the thresholds of the kept weights: calibrating those weights' validation
    # probabilities again gives the same values.
    scorer = load_scorer(run / "best.ckpt")
    val = read_split_csv(demo_split["split"] / "val.csv", scorer.taxonomy)
    logits, targets = score_split(scorer, val, demo_split["images"])
    again = calibrate(1 / (1 + np.exp(-logits)), targets, scorer.taxonomy.label_names)
    np.testing.assert_allclose(
        [again["thresholds"][n] for n in val.label_names], [stored["thresholds"][n] for n in val.label_names], atol=1e-4
    )
    assert "calibrated per label on 30 validation images" in result.summary()["thresholds"]


def test_tag_uses_the_stored_thresholds_and_says_so(calibrated, demo_split, runner, tmp_path: Path) -> None:
    run, _ = calibrated
    stored = json.loads((run / "thresholds.json").read_text())["thresholds"]
    res = invoke(
        runner,
        "tag",
        demo_split["images"],
        "--checkpoint",
        run,
        "-o",
        tmp_path / "tags.csv",
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "thresholds: calibrated per label on the validation split (30 images" in said
    manifest = json.loads((tmp_path / "tags.manifest.json").read_text())
    assert manifest["threshold_source"].startswith("calibrated per label")
    np.testing.assert_allclose(manifest["thresholds"], [stored[n] for n in manifest["labels"]], rtol=1e-6)
    # An explicit threshold still wins, and says so.
    res = invoke(
        runner,
        "tag",
        demo_split["images"],
        "--checkpoint",
        run,
        "-o",
        tmp_path / "t2.csv",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--threshold",
        "0.3",
        "--json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["threshold_source"] == "--threshold 0.3"

    # select and export-labels say which thresholds cut the tags they read.
    res = invoke(
        runner, "select", tmp_path / "tags.csv", "-n", "5", "-o", tmp_path / "next.txt", "--checkpoint", run, "--json"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["thresholds"].startswith("calibrated per label")
    res = invoke(
        runner, "export-labels", tmp_path / "tags.csv", "--to", "label-studio", "-o", tmp_path / "tasks.json", "--json"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["thresholds"].startswith("calibrated per label")


def test_eval_and_export_use_the_stored_thresholds(calibrated, demo_split, runner, tmp_path: Path) -> None:
    from hspnet_cli.scoring.scorer import load_scorer

    run, _ = calibrated
    stored = json.loads((run / "thresholds.json").read_text())["thresholds"]
    res = invoke(
        runner,
        "eval",
        run,
        "--data",
        demo_split["split"] / "val.csv",
        "--images",
        demo_split["images"],
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["threshold_source"].startswith("calibrated per label") and "threshold_note" not in report
    assert report["thresholds"] == pytest.approx(stored, abs=1e-6)
    res = invoke(runner, "export", run, "-o", tmp_path / "model.pt", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["thresholds"].startswith("calibrated per label")
    exported = load_scorer(tmp_path / "model.pt")
    assert exported.thresholds_source.startswith("calibrated per label")
    torch.testing.assert_close(exported.thresholds, torch.tensor([stored[n] for n in exported.taxonomy.label_names]))


def test_without_validation_labels_every_summary_says_uncalibrated(
    uncalibrated, demo_split, runner, tmp_path: Path
) -> None:
    run, result = uncalibrated
    assert load_checkpoint(run / "best.ckpt")["thresholds"] is None and not (run / "thresholds.json").exists()
    line = result.summary()["thresholds"]
    assert line.startswith("thresholds: uncalibrated") and f"hspnet calibrate --checkpoint {run}" in line
    res = invoke(
        runner,
        "tag",
        demo_split["images"],
        "--checkpoint",
        run,
        "-o",
        tmp_path / "tags.csv",
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "thresholds: uncalibrated: 0.5 for every label" in said and "hspnet calibrate" in said
    res = invoke(
        runner,
        "eval",
        run,
        "--data",
        demo_split["split"] / "val.csv",
        "--images",
        demo_split["images"],
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert "uncalibrated" in report["threshold_note"] and "hspnet calibrate" in report["threshold_note"]
    res = invoke(
        runner, "export-labels", tmp_path / "tags.csv", "--to", "label-studio", "-o", tmp_path / "tasks.json", "--json"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["thresholds"].startswith("uncalibrated")


def test_which_validation_sets_can_fit_thresholds() -> None:
    from hspnet_cli.data.labelset import LabelSet
    from hspnet_cli.train.thresholds import fully_labelled

    def labels(rows: list[list[int]]) -> LabelSet:
        return LabelSet(
            ["a", "b", "c"],
            [f"{i}.png" for i in range(len(rows))],
            np.asarray(rows, np.int8),
            [f"val.csv:{i + 2}" for i in range(len(rows))],
        )

    assert fully_labelled(labels([[1, -1, -1], [-1, 1, 0]]))  # a "difficult" unknown is fine
    assert not fully_labelled(labels([[1, 0, 0], [0, 1, 0]]))  # single positives: no negatives
    assert not fully_labelled(labels([[1, -1, -1], [0, 1, 0]]))  # one image without any negative
    assert not fully_labelled(None)
