"""``hspnet taxonomy ...`` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import invoke
from typer.testing import CliRunner

from hspnet_cli.taxonomy import load_taxonomy


def test_version_and_help_list_every_group(runner: CliRunner) -> None:
    result = invoke(runner, "--version")
    assert result.exit_code == 0 and result.stdout.startswith("hspnet ")
    result = invoke(runner, "--help")
    for group in ("taxonomy", "split", "train", "eval", "calibrate", "export", "tag", "index", "search", "demo"):
        assert group in result.stdout


def test_list_and_show(runner: CliRunner) -> None:
    result = invoke(runner, "taxonomy", "list", "--json")
    assert [row["name"] for row in json.loads(result.stdout)] == ["coco", "cub", "nuswide", "voc"]
    result = invoke(runner, "taxonomy", "show", "voc")
    assert result.exit_code == 0
    assert "voc: 20 labels in 4 groups" in result.stdout and "vehicles (7)" in result.stdout
    assert "diningtable #10" in result.stdout
    shown = json.loads(invoke(runner, "taxonomy", "show", "coco", "--json").stdout)
    assert len(shown["labels"]) == 80 and len(shown["groups"]) == 12


def test_errors_are_one_line_without_traceback(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [cat, dog]\ngroups:\n  a: [cat, dgo]\n")
    result = invoke(runner, "taxonomy", "show", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3: group 'a' lists 'dgo'" in result.stderr
    assert "Traceback" not in result.output


def test_validate_with_dataset_labels(runner: CliRunner, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nunicorn\n")
    result = invoke(runner, "taxonomy", "validate", "voc", "--labels", str(labels))
    assert result.exit_code == 2 and "does not cover 1 label(s)" in result.stderr and "unicorn" in result.stderr
    labels.write_text("cat\ndog\n")
    result = invoke(runner, "taxonomy", "validate", "voc", "--labels", str(labels))
    assert result.exit_code == 0 and "18 taxonomy label(s) not in" in result.stdout and "ok" in result.stdout


def test_compare(runner: CliRunner, tmp_path: Path) -> None:
    other = tmp_path / "two.yaml"
    voc = load_taxonomy("voc")
    other.write_text("labels: [cat, dog, car, bus, sofa]\ngroups:\n  a: [cat, dog, car, bus]\n  b: [sofa]\n")
    data = json.loads(invoke(runner, "taxonomy", "compare", str(other), "voc", "--json").stdout)
    assert data["common"] == 5 and data["only_a"] == [] and len(data["only_b"]) == voc.num_labels - 5
    assert data["ari"] < 1.0
    result = invoke(runner, "taxonomy", "compare", "voc", "voc")
    assert "1.000" in result.stdout


def test_build_kmeans_from_features_writes_a_valid_taxonomy(
    runner: CliRunner, tmp_path: Path, voc_clip_features: np.ndarray
) -> None:
    feats = tmp_path / "voc.npy"
    np.save(feats, voc_clip_features.astype(np.float32))
    out = tmp_path / "voc-kmeans.yaml"
    result = invoke(
        runner,
        "taxonomy",
        "build",
        "--kmeans",
        "voc",
        "-k",
        "4",
        "--features",
        str(feats),
        "-o",
        str(out),
        "--compare",
        "voc",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["comparison"]["ari"] > 0.7
    tax = load_taxonomy(out)
    assert tax.label_names == load_taxonomy("voc").label_names
    assert tax.group_features is not None and tax.group_features.shape == (4, voc_clip_features.shape[1])
    again = invoke(runner, "taxonomy", "build", "--kmeans", "voc", "-k", "4", "--features", str(feats), "-o", str(out))
    assert again.exit_code == 2 and "already exists; pass --overwrite" in again.stderr


def test_build_kmeans_with_a_random_model_says_it_is_random(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    result = invoke(
        runner,
        "taxonomy",
        "build",
        "--kmeans",
        "voc",
        "-k",
        "3",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "randomly initialised" in result.stdout
    assert load_taxonomy(out).num_groups == 3


def test_build_option_mistakes(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "taxonomy", "build", "voc", "-o", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "exactly one of --wordnet or --kmeans" in result.stderr
    result = invoke(runner, "taxonomy", "build", "--kmeans", "voc", "--groups", "3", "-o", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "--groups and --depth belong to --wordnet" in result.stderr
    result = invoke(runner, "taxonomy", "build", "--kmeans", "voc", "-o", str(tmp_path / "x.txt"))
    assert result.exit_code == 2 and "must be a .yaml file" in result.stderr
    assert not (tmp_path / "x.yaml").exists()
