"""``hspnet select`` on hand-made tag outputs whose right answer is known: uncertainty (margin
and group doubt), diversity (k-center), coverage of rare labels, exclusions, determinism, the
files it writes and its errors. The demo-world end to end run is in test_select_demo.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hspnet_cli.cli import app
from hspnet_cli.selection.kcenter import farthest_first
from hspnet_cli.tagsfile.factory import write_tag_output

LABELS = ["cat", "dog", "car", "bus", "tree"]
GROUPS = {"animals": ["cat", "dog"], "vehicles": ["car", "bus"], "plants": ["tree"]}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_jsonl_tags(
    path: Path,
    probs: np.ndarray,
    emb: np.ndarray,
    paths: list[str] | None = None,
    thresholds: list[float] | None = None,
) -> Path:
    """A tags.jsonl with every label's probability, its embeddings and manifest (the tags format's factory)."""
    paths = paths or [f"img/{i:04d}.jpg" for i in range(len(probs))]
    write_tag_output(
        path,
        paths,
        np.asarray(probs, np.float32),
        np.asarray(emb, np.float32),
        labels=LABELS,
        groups=GROUPS,
        thresholds=thresholds or 0.5,
        fmt="jsonl",
        scorer="hand-made",
        taxonomy="toy",
    )
    return path


def select(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["select", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def picks(out: Path) -> list[dict[str, str]]:
    with open(out.with_suffix(".picks.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def listed(out: Path) -> list[str]:
    return out.read_text().splitlines()


@pytest.fixture
def clusters(tmp_path: Path) -> dict:
    """100 images in 5 tight clusters of 20 (img/0000-0019 cluster 0, ...); all probabilities low."""
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((5, 16)))
    emb = unit(np.repeat(centres, 20, axis=0) + 0.02 * rng.standard_normal((100, 16)))
    probs = np.full((100, 5), 0.02, np.float32)
    return {"tags": write_jsonl_tags(tmp_path / "t" / "tags.jsonl", probs, emb), "emb": emb, "root": tmp_path}


def test_uncertainty_picks_scores_nearest_threshold_and_group_doubt_breaks_ties(tmp_path: Path) -> None:
    probs = np.full((50, 5), 0.01, np.float32)
    probs[:, 4] = 0.99  # tree: confidently present everywhere
    probs[7, 2] = 0.5  # exactly at the threshold
    probs[3, 0] = 0.45  # cat just below ...
    probs[3, 1] = 0.44  # ... and its sibling dog too: the model wavers within animals
    probs[30, 0] = 0.45  # cat just below, dog far away
    emb = unit(np.random.default_rng(1).standard_normal((50, 8)))
    tags = write_jsonl_tags(tmp_path / "tags.jsonl", probs, emb)
    out = tmp_path / "next.txt"
    assert "not calibrated" not in select(tags, "-n", 3, "-o", out, "--strategy", "uncertainty")
    assert listed(out) == ["img/0003.jpg", "img/0007.jpg", "img/0030.jpg"]
    rows = picks(out)
    assert [r["reason"] for r in rows] == ["uncertainty"] * 3
    assert rows[0]["group"] == "animals" and rows[0]["rivals"] == "cat;dog"
    assert rows[1]["label"] == "car" and float(rows[1]["prob"]) == 0.5
    assert float(rows[0]["uncertainty"]) > float(rows[2]["uncertainty"])
    assert rows[0]["predicted"] == "tree"


def test_diversity_covers_every_cluster_and_avoids_labelled_ones(clusters: dict) -> None:
    out = clusters["root"] / "div.txt"
    select(clusters["tags"], "-n", 5, "-o", out, "--strategy", "diversity")
    assert sorted(int(p[4:8]) // 20 for p in listed(out)) == [0, 1, 2, 3, 4]
    labelled = clusters["root"] / "labelled.txt"
    labelled.write_text("".join(f"img/{i:04d}.jpg\n" for i in range(40)))  # clusters 0 and 1
    select(clusters["tags"], "-n", 3, "-o", out, "--strategy", "diversity", "--exclude", labelled)
    assert sorted(int(p[4:8]) // 20 for p in listed(out)) == [2, 3, 4]
    assert all(float(r["distance"]) > 0.5 for r in picks(out))  # each a new cluster


def test_kcenter_is_greedy_farthest_point_exactly() -> None:
    emb = unit(np.random.default_rng(3).standard_normal((300, 12)))
    res = farthest_first(emb, np.arange(300), 10, np.asarray([5, 17]), dims=0)
    mind = np.min(((emb[:, None] - emb[[5, 17]][None]) ** 2).sum(-1), axis=1)
    for pick, dist in zip(res.picks, res.distances):
        mind[[5, 17]] = -1
        want = int(np.argmax(np.where(np.isin(np.arange(300), res.picks[: list(res.picks).index(pick)]), -1, mind)))
        assert pick == want and dist == pytest.approx(np.sqrt(mind[want]), abs=1e-4)
        mind = np.minimum(mind, ((emb - emb[pick]) ** 2).sum(-1))
    assert res.radius == pytest.approx(float(np.sqrt(np.delete(mind, np.r_[res.picks, [5, 17]]).max())), abs=1e-4)
    # the PCA path keeps the k-center property on data with low intrinsic dimension
    low = unit(np.random.default_rng(4).standard_normal((400, 6)) @ np.random.default_rng(5).standard_normal((6, 64)))
    assert (
        farthest_first(low, np.arange(400), 8, np.zeros(0), dims=6).picks.tolist()
        == farthest_first(low, np.arange(400), 8, np.zeros(0), dims=0).picks.tolist()
    )


def test_coverage_goes_to_labels_with_fewest_labelled_positives(tmp_path: Path) -> None:
    probs = np.full((60, 5), 0.1, np.float32)
    probs[:, 0] = np.linspace(0.2, 0.95, 60)  # cat: everywhere
    probs[40:43, 3] = [0.7, 0.8, 0.6]  # bus: rare, three images
    emb = unit(np.random.default_rng(2).standard_normal((60, 8)))
    tags = write_jsonl_tags(tmp_path / "tags.jsonl", probs, emb)
    labelled = tmp_path / "labelled.csv"  # an image,labels file: many dogs, cars, trees labelled
    labelled.write_text("image,labels\n" + "".join(f"old/{i}.jpg,dog;car;tree;cat\n" for i in range(5)))
    out = tmp_path / "next.txt"
    select(tags, "-n", 2, "-o", out, "--strategy", "coverage", "--exclude", labelled)
    rows = picks(out)
    assert [r["target"] for r in rows] == ["bus", "bus"]
    assert listed(out) == ["img/0041.jpg", "img/0040.jpg"]  # most likely buses first
    report = json.loads((tmp_path / "next.select.json").read_text())
    assert report["exclusions"][0]["kind"] == "annotations (csv)" and report["exclusions"][0]["matched"] == 0
    assert report["coverage"]["labels"]["dog"]["labelled"] == 5


def test_exclusions_from_list_split_and_annotations_never_picked(clusters: dict) -> None:
    root, tags = clusters["root"], clusters["tags"]
    (root / "a.txt").write_text(
        "# labelled last week\nimg/0000.jpg\n\n" + str(root / "t" / "images" / "img" / "0001.jpg") + "\n"
    )
    (root / "b.csv").write_text(
        "# hspnet-split v1 encoding: 1=positive 0=unknown -1=negative\n"
        "image," + ",".join(LABELS) + "\nimg/0002.jpg,1,0,0,0,0\n"
    )
    (root / "c.jsonl").write_text(json.dumps({"image": "img/0003.jpg", "labels": ["dog"]}) + "\n")
    out = root / "next.txt"
    select(
        tags,
        "-n",
        96,
        "-o",
        out,
        "--strategy",
        "random",
        "-x",
        root / "a.txt",
        "-x",
        root / "b.csv",
        "-x",
        root / "c.jsonl",
    )
    assert sorted(listed(out)) == [f"img/{i:04d}.jpg" for i in range(4, 100)]
    report = json.loads((root / "next.select.json").read_text())
    assert [s["matched"] for s in report["exclusions"]] == [2, 1, 1]
    assert report["counts"] == {"rows": 100, "excluded": 4, "eligible": 96, "picked": 96, "by_reason": {"random": 96}}
    (root / "outside.txt").write_text("img/0000.jpg\n../../elsewhere.jpg\n")
    assert "outside.txt:2" in select(tags, "-n", 3, "-o", out, "-x", root / "outside.txt", code=2)
    assert "not found" in select(tags, "-n", 3, "-o", out, "-x", root / "missing.txt", code=2)


def test_same_seed_same_files_other_seed_other_random_picks(clusters: dict) -> None:
    root, tags = clusters["root"], clusters["tags"]
    files = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        for strategy in ("mix", "random"):
            out = root / f"{name}-{strategy}.txt"
            select(tags, "-n", 12, "-o", out, "--strategy", strategy, "--seed", seed, "--pool", 50)
            files[name, strategy] = (out.read_bytes(), out.with_suffix(".picks.csv").read_bytes())
    assert files["a", "mix"] == files["b", "mix"] and files["a", "random"] == files["b", "random"]
    assert files["a", "random"] != files["c", "random"]
    assert len(set(files["a", "mix"][0].decode().splitlines())) == 12


def test_mix_quotas_add_up_and_each_pick_says_why(clusters: dict) -> None:
    out = clusters["root"] / "next.txt"
    text = select(clusters["tags"], "-n", 7, "-o", out)
    rows = picks(out)
    # 7 x (0.2, 0.6, 0.2) = 1.4, 4.2, 1.4: largest remainders, ties in stage order
    assert [r["reason"] for r in rows] == ["coverage"] * 2 + ["uncertainty"] * 4 + ["diversity"]
    assert all(r["why"] for r in rows) and len({r["path"] for r in rows}) == 7
    assert "selected 7" in text
    assert "not calibrated" in " ".join(text.split())  # every probability 0.02: nothing reaches 0.5
    select(clusters["tags"], "-n", 4, "-o", out, "--mix", "diversity=1")
    assert {r["reason"] for r in picks(out)} == {"diversity"}


def test_bad_options_and_outputs_are_one_line_errors(clusters: dict) -> None:
    root, tags = clusters["root"], clusters["tags"]
    assert "--mix" in select(tags, "-n", 3, "-o", root / "x.txt", "--mix", "luck=1", code=2)
    assert "--strategy" in select(tags, "-n", 3, "-o", root / "x.txt", "--strategy", "best", code=2)
    assert "-n" in select(tags, "-n", 0, "-o", root / "x.txt", code=2)
    mine = root / "notes.txt"
    mine.write_text("my own notes\n")
    assert "not an hspnet select output" in select(tags, "-n", 3, "-o", mine, code=2)
    assert mine.read_text() == "my own notes\n"
    select(tags, "-n", 3, "-o", mine, "--overwrite")
    everything = root / "all.txt"
    everything.write_text("".join(f"img/{i:04d}.jpg\n" for i in range(100)))
    assert "nothing to select" in select(tags, "-n", 3, "-o", root / "y.txt", "-x", everything, code=2)
    assert "tags file not found" in select(root / "nope.csv", "-n", 3, "-o", root / "y.txt", code=2)
