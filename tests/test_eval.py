"""``hspnet eval`` and ``hspnet calibrate`` end to end on a tiny model trained on the demo world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from test_train import tiny
from typer.testing import CliRunner

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import LabelSet
from hspnet_cli.data.split_io import read_split_csv, write_split_csv
from hspnet_cli.scoring.thresholds import load_thresholds
from hspnet_cli.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def trained(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of HSPNet on the demo split (a few seconds on CPU)."""
    from hspnet_cli.train.loop import train

    out = tmp_path_factory.mktemp("eval") / "run"
    result = train(
        demo_split["split"],
        demo_split["images"],
        out,
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    return {"run": out, "result": result, **demo_split}


def _eval_args(trained: dict, *extra: object) -> list[object]:
    return [
        "eval",
        "--checkpoint",
        trained["run"],
        "--data",
        trained["split"] / "val.csv",
        "--images",
        trained["images"],
        "--device",
        "cpu",
        "--batch-size",
        "8",
        *extra,
    ]


def test_eval_json_and_plots(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    result = invoke(runner, *_eval_args(trained, "--json", tmp_path / "m.json", "--plot", tmp_path / "plots"))
    assert result.exit_code == 0, result.output
    assert "Per-class AP" in result.stdout and "group mAP" in result.stdout
    data = json.loads((tmp_path / "m.json").read_text())
    tax = load_taxonomy(trained["taxonomy"])
    assert list(data["per_class"]) == tax.label_names and data["images"] == 30
    assert set(data["per_group_ap"]) == set(tax.group_names) and 0 <= data["group_map"] <= 1
    for key in ("map", "cf1", "of1", "cp", "cr", "op", "or", "top3_precision"):
        assert data[key] is None or 0 <= data[key] <= 1, key
    # The same images and preprocessing as training's validation: the same mAP as best.ckpt's.
    assert data["map"] == pytest.approx(trained["result"].best_map, abs=1e-4)
    aps = [v["ap"] for v in data["per_class"].values() if v["ap"] is not None]
    assert data["map"] == pytest.approx(np.mean(aps))
    for name in ("class_ap.png", "pr_curves.png", "label_map.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000, name
    asl = json.loads(invoke(runner, *_eval_args(trained, "--json", "-", "--map-variant", "asl")).stdout)
    assert asl["map_variant"] == "asl" and 0 < asl["map"] <= 1


def test_zero_shot_eval(runner: CliRunner, demo_split, tmp_path: Path) -> None:
    result = invoke(
        runner,
        "eval",
        "--zero-shot",
        "--taxonomy",
        demo_split["taxonomy"],
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--data",
        demo_split["split"] / "val.csv",
        "--images",
        demo_split["images"],
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["scorer"].startswith("zero-shot") and 0 < data["map"] <= 1 and data["labels"] == 16


def test_calibrate_then_load(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "thresholds.json"
    result = invoke(
        runner,
        "calibrate",
        "--checkpoint",
        trained["run"],
        "--data",
        trained["split"] / "val.csv",
        "--images",
        trained["images"],
        "--out",
        out,
        "--min-positives",
        "4",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    tax = load_taxonomy(trained["taxonomy"])
    assert data["labels"] == tax.label_names and set(data["thresholds"]) == set(tax.label_names)
    counts = read_split_csv(trained["split"] / "val.csv", tax).positive_counts()
    assert sorted(data["fallback"]["labels"]) == sorted(n for n, c in zip(tax.label_names, counts) if c < 4)
    thresholds = load_thresholds(out, tax)
    assert thresholds.dtype == np.float32 and thresholds.shape == (16,)
    assert ((thresholds >= 0) & (thresholds <= 1)).all()
    with pytest.raises(UserError, match="made for other labels"):
        load_thresholds(out, load_taxonomy("voc"))
    out.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_thresholds(out, tax)


def _write_csv(path: Path, images: list[str], labels: list[str]) -> Path:
    matrix = np.zeros((len(images), len(labels)), dtype=np.int8)
    matrix[:, 0] = 1
    write_split_csv(path, LabelSet(labels, images, matrix, [f"x:{i}" for i in range(len(images))]))
    return path


def test_errors_are_one_line(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    tax = load_taxonomy(trained["taxonomy"])
    real = read_split_csv(trained["split"] / "val.csv", tax).images[0]
    cases = [
        (
            _write_csv(tmp_path / "missing.csv", [real, "nope/gone.png"], tax.label_names),
            trained["images"],
            "1 evaluation image(s) not found",
            "nope/gone.png",
        ),
        (
            _write_csv(tmp_path / "voc.csv", [real], load_taxonomy("voc").label_names),
            trained["images"],
            "columns do not match taxonomy",
            "voc.csv:2",
        ),
    ]
    bad_root = tmp_path / "imgs"
    (bad_root / "sub").mkdir(parents=True)
    (bad_root / "sub" / "broken.png").write_bytes(b"not a png")
    cases.append(
        (
            _write_csv(tmp_path / "broken.csv", ["sub/broken.png"], tax.label_names),
            bad_root,
            "cannot read image",
            "broken.png",
        )
    )
    for csv, root, message, names in cases:
        result = invoke(
            runner, "eval", "--checkpoint", trained["run"], "--data", csv, "--images", root, "--device", "cpu"
        )
        assert result.exit_code == 2, result.output
        assert message in result.stderr and names in result.stderr and "Traceback" not in result.output
    result = invoke(
        runner, "eval", "--checkpoint", tmp_path / "none.ckpt", "--data", csv, "--images", root, "--device", "cpu"
    )
    assert result.exit_code == 2 and "checkpoint not found" in result.stderr
    result = invoke(runner, "eval", "--data", csv, "--images", root)
    assert result.exit_code == 2 and "give --checkpoint" in result.stderr
