"""``hspnet audit`` end to end: cleanlab's findings named by the SPML encoding, out-of-sample checks
against the training keys a checkpoint records, --folds, and the Label Studio fix tasks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke
from test_train import tiny
from typer.testing import CliRunner

from hspnet_cli.data.labelset import LabelSet


@pytest.fixture(scope="module")
def trained(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of the tiny model on the demo split's training images (its val images stay unseen)."""
    from hspnet_cli.train.loop import train

    out = tmp_path_factory.mktemp("audit") / "run"
    train(
        demo_split["split"],
        demo_split["images"],
        out,
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    return {"run": out, **demo_split}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_findings_follow_the_spml_encoding() -> None:
    """A confident contradiction of a claim is an error; of an unknown entry, only a suggestion."""
    from hspnet_cli.audit.issues import find_issues

    rng = np.random.default_rng(0)
    n, c = 200, 4
    truth = rng.random((n, c)) < 0.3
    truth[~truth.any(axis=1), 0] = True
    probs = np.clip(np.where(truth, 0.85, 0.1) + rng.normal(0, 0.05, (n, c)), 0.01, 0.99)
    full = np.where(truth, 1, -1).astype(np.int8)
    full[3] = -1
    full[3, 1] = 1  # image 3: a positive it does not hold (and its own ones dropped)
    probs[3] = [0.97, 0.02, 0.96, 0.95]
    probs[3, 1] = 0.02
    truth[3] = [True, False, True, True]
    names = [f"l{j}" for j in range(c)]
    labels = LabelSet(names, [f"{i}.png" for i in range(n)], full, [f"x:{i}" for i in range(n)])
    found = find_issues(labels, probs)
    assert set(found.kinds) <= {"wrong positive", "missing positive"}  # full labels: only claims
    mine = {(int(r), int(k)): kind for r, k, kind in zip(found.rows, found.cols, found.kinds)}
    assert mine[(3, 1)] == "wrong positive" and mine[(3, 0)] == "missing positive"
    assert list(found.quality) == sorted(found.quality) and found.flagged_images()[0] == 3
    adjusted = find_issues(labels, probs, adjust=True)  # --adjust-probabilities: another score, same flags
    assert sorted(zip(adjusted.rows.tolist(), adjusted.cols.tolist())) == sorted(mine)
    assert not np.allclose(np.sort(adjusted.quality), np.sort(found.quality))
    # The same image labelled single-positive: its unknown entries can only be suggestions.
    single = np.zeros_like(full)
    single[np.arange(n), np.argmax(full == 1, axis=1)] = 1
    single[3] = 0
    single[3, 1] = 1
    found = find_issues(labels.with_matrix(single), probs)
    mine = {(int(r), int(k)): kind for r, k, kind in zip(found.rows, found.cols, found.kinds)}
    assert mine[(3, 1)] == "wrong positive" and mine[(3, 0)] == "likely missing positive"
    assert "missing positive" not in found.kinds
    assert {k for (r, _), k in mine.items() if single[r].sum() == 1 and k != "wrong positive"} == {
        "likely missing positive"
    }


def test_audit_with_checkpoint(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "issues.csv"
    result = invoke(
        runner,
        "audit",
        trained["split"] / "val.csv",
        "-t",
        trained["taxonomy"],
        "--checkpoint",
        trained["run"],
        "--images",
        trained["images"],
        "--out",
        out,
        "--to",
        "label-studio",
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["probabilities"]["record"] is True and facts["probabilities"]["overlap"] == 0
    assert facts["probabilities"]["training_images"] == 90
    rows = _rows(out)
    assert rows and list(rows[0]) == ["key", "label", "given", "probability", "quality", "kind"]
    assert [float(r["quality"]) for r in rows] == sorted(float(r["quality"]) for r in rows)
    expected = {"positive": "wrong positive", "negative": "missing positive", "unknown": "likely missing positive"}
    assert all(expected[r["given"]] == r["kind"] for r in rows)
    assert facts["issues"] == len(rows) and sum(facts["by_kind"].values()) == len(rows)
    # Tasks: one per image with a flagged claim, surest first, with the fix pre-ticked.
    tasks = json.loads(out.with_name("issues.tasks.json").read_text())
    claims = [r for r in rows if r["kind"] != "likely missing positive"]
    first_keys = list(dict.fromkeys(r["key"] for r in claims))
    assert [t["data"]["hspnet_path"] for t in tasks] == first_keys
    for t in tasks:
        ticked = set(t["predictions"][0]["result"][0]["value"]["choices"]) if t.get("predictions") else set()
        for r in claims:
            if r["key"] == t["data"]["hspnet_path"]:
                assert (r["label"] in ticked) == (r["kind"] == "missing positive")
    assert out.with_name("issues.tasks.labeling-config.xml").is_file()


def test_refuses_in_sample_images(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    result = invoke(
        runner,
        "audit",
        trained["split"] / "train.csv",
        "-t",
        trained["taxonomy"],
        "--checkpoint",
        trained["run"],
        "--images",
        trained["images"],
        "--out",
        tmp_path / "i.csv",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2 and "in-sample" in result.stderr and "--folds" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "i.csv").exists()
    # The same images named from a folder above the images are recognised too (keys rebased).
    lines = (trained["split"] / "train.csv").read_text().splitlines()
    moved = [lines[0], lines[1]] + [f"images/{line}" for line in lines[2:]]
    (tmp_path / "up.csv").write_text("\n".join(moved) + "\n")
    result = invoke(
        runner,
        "audit",
        tmp_path / "up.csv",
        "-t",
        trained["taxonomy"],
        "--checkpoint",
        trained["run"],
        "--images",
        trained["images"].parent,
        "--out",
        tmp_path / "i.csv",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2 and "in-sample" in result.stderr


def test_checkpoint_without_record(runner: CliRunner, trained: dict, tmp_path: Path) -> None:
    data = torch.load(trained["run"] / "best.ckpt", map_location="cpu", weights_only=True)
    del data["data"]["train_keys"]
    old = tmp_path / "old.ckpt"
    torch.save(data, old)
    args = [
        "audit",
        trained["split"] / "val.csv",
        "-t",
        trained["taxonomy"],
        "--checkpoint",
        old,
        "--images",
        trained["images"],
        "--out",
        tmp_path / "i.csv",
        "--device",
        "cpu",
    ]
    result = invoke(runner, *args)
    assert result.exit_code == 2 and "records no training images" in result.stderr
    assert "--allow-unknown-training-set" in result.stderr and "--folds" in result.stderr
    result = invoke(runner, *args, "--allow-unknown-training-set", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["probabilities"]["record"] is False


def test_folds(runner: CliRunner, demo_split, tmp_path: Path) -> None:
    args = [
        "audit",
        demo_split["split"] / "val.csv",
        "-t",
        demo_split["taxonomy"],
        "--folds",
        "2",
        "--images",
        demo_split["images"],
        "--out",
        tmp_path / "issues.csv",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "model.clip_model=hspnet-tiny",
        "--set",
        "model.pretrained=none",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.num_workers=0",
        "--json",
    ]
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["probabilities"]["kind"] == "folds" and facts["images"] == 30
    folds = tmp_path / "issues.folds"
    from hspnet_cli.audit.insample import training_record
    from hspnet_cli.data.keyset import member_mask

    held = [json.loads((folds / f"fold-{i}" / "fold.json").read_text())["held_out"] for i in (1, 2)]
    assert sum(held) == 30
    for i in (1, 2):  # each fold's model trained on the other fold only
        record = training_record(folds / f"fold-{i}")
        assert record is not None and record["count"] == 30 - held[i - 1]
    stamp = (folds / "fold-1" / "best.ckpt").stat().st_mtime_ns
    again = invoke(runner, *args[:-1])
    assert again.exit_code == 0 and "finished earlier, reused" in again.stdout
    assert (folds / "fold-1" / "best.ckpt").stat().st_mtime_ns == stamp
    both = invoke(runner, *args, "--checkpoint", folds / "fold-1")
    assert both.exit_code == 2 and "exactly one of" in both.stderr
    assert member_mask(np.zeros(0, np.int64), ["a"]).tolist() == [False]


def test_audit_room_only_uses_models() -> None:
    """The audit room never imports the training package (the command module orchestrates --folds)."""
    room = Path(__file__).resolve().parent.parent / "hspnet_cli" / "audit"
    import re

    imports = re.compile(r"^\s*(from|import)\s+hspnet_cli\.train\b", re.M)
    offenders = [p.name for p in room.glob("*.py") if imports.search(p.read_text(encoding="utf-8"))]
    assert offenders == [] and imports.search("    from hspnet_cli.train.folds import x\n")
