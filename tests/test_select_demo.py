"""``hspnet select`` end to end on the demo world: a trained checkpoint tags the images (csv and
jsonl), select chooses from either, and ``hspnet tag --list`` tags exactly the chosen images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_train import tiny
from typer.testing import CliRunner

from hspnet_cli.cli import app
from hspnet_cli.scoring.scorer import from_checkpoint
from hspnet_cli.selection.scores import open_probabilities
from hspnet_cli.tagging.run import tag_images
from hspnet_cli.tagsfile.reader import read_tags_output
from hspnet_cli.train.loop import train


def hspnet(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def tagged(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two epochs of HSPNet on the demo split; every image tagged as csv and as jsonl."""
    root = tmp_path_factory.mktemp("select-demo")
    train(
        demo_split["split"], demo_split["images"], root / "run", tiny(), taxonomy=demo_split["taxonomy"], device="cpu"
    )
    scorer = from_checkpoint(root / "run" / "best.ckpt")
    tag_images(demo_split["images"], root / "c" / "tags.csv", scorer, progress=False, workers=0)
    tag_images(demo_split["images"], root / "j" / "tags.jsonl", scorer, fmt="jsonl", progress=False, workers=0)
    return {
        "root": root,
        "ckpt": root / "run" / "best.ckpt",
        "csv": root / "c" / "tags.csv",
        "jsonl": root / "j" / "tags.jsonl",
        **demo_split,
    }


def test_csv_probabilities_recomputed_from_embeddings_equal_the_jsonl_ones(tagged: dict) -> None:
    from_csv = open_probabilities(read_tags_output(tagged["csv"]))  # the manifest names the checkpoint
    from_jsonl = open_probabilities(read_tags_output(tagged["jsonl"]))
    assert (from_csv.kind, from_jsonl.kind) == ("model", "jsonl")
    rows = np.arange(read_tags_output(tagged["csv"]).n)
    np.testing.assert_allclose(from_csv.rows(rows), from_jsonl.rows(rows), atol=6e-5)
    chunks = np.concatenate([p for _, p in from_csv.chunks(size=7)])
    np.testing.assert_allclose(chunks, from_csv.rows(rows), atol=1e-6)


def test_select_on_the_demo_world_then_tag_exactly_those_images(tagged: dict) -> None:
    root = tagged["root"]
    out = root / "next.txt"
    text = hspnet(
        "select", tagged["jsonl"], "-n", 20, "-o", out, "--exclude", tagged["split"] / "train.csv", "--seed", 3
    )
    assert "selected 20" in text
    chosen = out.read_text().splitlines()
    train_images = {
        row["image"] for row in csv.DictReader((tagged["split"] / "train.csv").read_text().splitlines()[1:])
    }
    assert len(set(chosen)) == 20 and not set(chosen) & train_images
    report = json.loads((root / "next.select.json").read_text())
    assert (
        report["counts"]["excluded"] == len(train_images) and report["exclusions"][0]["kind"] == "annotations (split)"
    )
    assert report["coverage"]["labels"]["circle"]["labelled"] > 0
    # the uncertainty stage's picks are more uncertain than the unlabelled images on average
    with open(root / "next.picks.csv", newline="") as fh:
        uncertain = [float(r["uncertainty"]) for r in csv.DictReader(fh) if r["reason"] == "uncertainty"]
    assert len(uncertain) == 12 and np.mean(uncertain) > report["uncertainty"]["eligible_mean"]
    # the list is what hspnet tag --list reads
    again = tag_images(
        tagged["images"],
        root / "next-tags.csv",
        from_checkpoint(tagged["ckpt"]),
        list_file=out,
        progress=False,
        workers=0,
    )
    assert again.rows == 20
    tagged_now = [line.split(",")[0] for line in (root / "next-tags.csv").read_text().splitlines()[1:]]
    assert tagged_now == chosen
    # same choice from the csv output (probabilities recomputed with --checkpoint)
    hspnet(
        "select",
        tagged["csv"],
        "-n",
        20,
        "-o",
        root / "csv-next.txt",
        "--exclude",
        tagged["split"] / "train.csv",
        "--seed",
        3,
        "--checkpoint",
        tagged["ckpt"],
    )
    assert (root / "csv-next.txt").read_text().splitlines()[:4] == chosen[:4]


def test_csv_without_its_model_needs_model_for_uncertainty_but_not_for_diversity(tagged: dict, tmp_path: Path) -> None:
    for name in ("tags.csv", "tags.emb.f32", "tags.failed.csv", "tags.manifest.json"):
        shutil.copy(tagged["csv"].parent / name, tmp_path / name)
    manifest = json.loads((tmp_path / "tags.manifest.json").read_text())
    manifest["model"]["scorer"] = "checkpoint /gone/best.ckpt (hspnet on hspnet-tiny)"
    (tmp_path / "tags.manifest.json").write_text(json.dumps(manifest))
    err = hspnet("select", tmp_path / "tags.csv", "-n", 5, "-o", tmp_path / "n.txt", code=2)
    assert "pass --checkpoint" in err and "Traceback" not in err
    hspnet("select", tmp_path / "tags.csv", "-n", 5, "-o", tmp_path / "n.txt", "--strategy", "coverage")
    hspnet("select", tmp_path / "tags.csv", "-n", 5, "-o", tmp_path / "n.txt", "--strategy", "diversity")
    assert len((tmp_path / "n.txt").read_text().splitlines()) == 5
    hspnet("select", tmp_path / "tags.csv", "-n", 5, "-o", tmp_path / "n.txt", "--checkpoint", tagged["ckpt"])
    # another model (one more epoch) is refused: its probabilities would not be the tagger's
    other = tmp_path / "other"
    train(
        tagged["split"],
        tagged["images"],
        other,
        tiny(**{"train.epochs": 1, "train.seed": 5}),
        taxonomy=tagged["taxonomy"],
        device="cpu",
    )
    err = hspnet("select", tmp_path / "tags.csv", "-n", 5, "-o", tmp_path / "n.txt", "--checkpoint", other, code=2)
    assert "is not the model that tagged" in err


def test_select_to_label_studio_writes_tasks_for_exactly_the_picks(tagged: dict) -> None:
    root = tagged["root"]
    out = root / "ls" / "next.txt"
    out.parent.mkdir()
    hspnet("select", tagged["csv"], "-n", 15, "-o", out, "--to", "label-studio", "--seed", 1)
    picks = out.read_text().splitlines()
    tasks = json.loads((root / "ls" / "next.tasks.json").read_text())
    assert sorted(t["data"]["hspnet_path"] for t in tasks) == sorted(picks) and len(picks) == 15
    assert (root / "ls" / "next.tasks.labeling-config.xml").is_file()
    # the same through export-labels --only, and a list naming images the tags lack is warned about
    (root / "ls" / "more.txt").write_text("\n".join(picks + ["not-tagged.png"]) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "export-labels",
            str(tagged["csv"]),
            "--to",
            "cvat",
            "-o",
            str(root / "ls" / "picks.xml"),
            "--only",
            str(root / "ls" / "more.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 image(s)" in result.output and "not in" in result.output
    assert (root / "ls" / "picks.xml").read_text().count("<image ") == 15
    hspnet("select", tagged["csv"], "-n", 5, "-o", root / "ls" / "x.txt", "--to", "hf", code=2)
