"""``hspnet demo run`` end to end (small world, one epoch) through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import invoke


def test_demo_run_writes_every_stage_and_summary(runner, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    summary_path = tmp_path / "summary.json"
    result = invoke(runner, "demo", "run", out, "--images", "160", "--epochs", "1", "--json", summary_path)
    assert result.exit_code == 0, result.output
    # Off a terminal (make demo > log) training prints one plain line per epoch.
    assert [line.split()[:2] for line in result.stdout.splitlines() if line.startswith("epoch ")] == [["epoch", "1/1"]]
    summary = json.loads(summary_path.read_text())
    names = [stage["name"] for stage in summary["stages"]]
    assert names == [
        "demo data",
        "taxonomy show",
        "taxonomy build --wordnet",
        "taxonomy build --kmeans",
        "split --mode single-positive",
        "train",
        "eval (test split)",
        "audit (test split)",
        "tag",
        "dedup",
        "index build",
        "search --like",
        "search --text",
        "export-labels --to label-studio",
        "select",
    ]
    train = summary["stages"][4 + 1]
    assert 0 < train["label_frequency_baseline_map"] < 1 and 0 < train["val_map"] <= 1
    assert (out / "run" / "best.ckpt").is_file() and (out / "split" / "test.csv").is_file()
    evaluation = summary["stages"][6]
    assert 0 < evaluation["test_map"] <= 1 and len(evaluation["plots"]) == 3
    assert all(Path(p).stat().st_size > 10_000 for p in evaluation["plots"])
    audit, tag, dedup, index, search, text, labeling, select = summary["stages"][7:]
    # audit: best.ckpt never trained on the 32 test images; dedup: every world image is drawn anew
    assert audit["images"] == 32 and Path(audit["files"]["issues"]).is_file()
    assert sum(audit["by_kind"].values()) == audit["issues"] and Path(audit["files"]["tasks"]).is_file()
    assert dedup["threshold"] == 0.9 and Path(dedup["files"]["exclude"]).is_file()
    assert dedup["effective_dimensions"] > 0 and ("warning" in dedup)
    # 160 images: 32 test, 26 validation excluded; 102 single-positive training images left
    assert select["picked"] == 100 and select["eligible"] == 102 and select["probabilities"] == "model"
    assert select["by_reason"] == {"coverage": 20, "uncertainty": 60, "diversity": 20}
    assert len(set((out / "select" / "next.txt").read_text().splitlines())) == 100
    assert tag["rows"] == 160 and tag["failed"] == 0 and index["count"] == 160
    assert search["query"] not in search["hits"] and len(set(search["hits"])) == 5  # --like leaves itself out
    assert len(text["precision_at_k"]) == 16 and len(text["example_hits"]) == 3
    assert 0 < text["mean_label_rate"] < 1 and 0 <= text["mean_precision_at_k"] <= 1
    labeling = summary["stages"][13]
    tasks = json.loads(Path(labeling["files"]["tasks"]).read_text())
    assert labeling["tasks"] == len(tasks) == 160 and Path(labeling["files"]["config"]).is_file()
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d=world/images/{tasks[0]['data']['hspnet_path']}"
    # Pre-annotations are cut at the thresholds training fitted on the labelled validation split.
    assert tag["thresholds"].startswith("calibrated per label") and labeling["thresholds"] == tag["thresholds"]
    assert evaluation["test_cf1_fitted"] is not None and 0 <= evaluation["test_cf1_at_0.5"] <= 1
    assert labeling["choices"] == sum(
        len(t["predictions"][0]["result"][0]["value"]["choices"]) for t in tasks if "predictions" in t
    )
    assert "hspnet demo" in result.stdout  # the summary table
    again = invoke(runner, "demo", "run", out, "--images", "160", "--epochs", "1")
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_demo_run_never_deletes_a_foreign_folder(runner, tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    result = invoke(runner, "demo", "run", tmp_path, "--overwrite", "--images", "50", "--epochs", "1")
    assert result.exit_code == 2 and "holds no earlier demo run" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "precious"
