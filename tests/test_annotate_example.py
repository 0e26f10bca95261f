"""examples/annotate/loop.py end to end at a small size: demo world -> scripted browser answers
-> split -> train -> eval -> tag -> a second round with the trained model's suggestions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hspnet_cli.data import read_split_csv
from hspnet_cli.taxonomy import load_taxonomy

LOOP = Path(__file__).resolve().parents[1] / "examples" / "annotate" / "loop.py"


def test_the_whole_loop_from_clicks_to_tags(tmp_path: Path) -> None:
    out = tmp_path / "loop"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(LOOP.parents[2]), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(LOOP), str(out), "--images", "40", "--annotate", "20", "--epochs", "1", "--round2", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "loop-summary.json").read_text())
    assert summary["round1"]["answered"] == 20 and summary["round2"]["answered"] == 4
    assert summary["round1"]["by_number_key"] > 0
    events = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()[1:]]
    assert len(events) == 24 and all(e["event"] == "answer" for e in events)
    # Round 2 ran with the trained checkpoint: every answer carries the suggester's rank.
    assert [e["rank"] is None for e in events] == [True] * 20 + [False] * 4
    truth = {}
    for line in (out / "world" / "annotations.csv").read_text().splitlines()[1:]:
        image, labels = line.split(",")
        truth[image] = labels.split(";")
    assert all(e["label"] in truth[e["image"]] for e in events)  # answers come from the ground truth
    taxonomy = load_taxonomy(out / "world" / "taxonomy.yaml")
    train = read_split_csv(out / "split" / "train.csv", taxonomy)
    val = read_split_csv(out / "split" / "val.csv", taxonomy)
    assert sorted(train.images + val.images) == sorted(e["image"] for e in events[:20])
    assert (train.positives_per_image() == 1).all() and (train.matrix >= 0).all()
    assert summary["tagged_rows"] == 40 and 0 <= summary["train"]["test_map"] <= 1
    assert (out / "annotate-page.png").stat().st_size > 20_000
