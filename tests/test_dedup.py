"""``hspnet dedup`` end to end: planted near-duplicates in fake tag outputs and a built index, the
keeper rule, the outputs, and the commands that honour the non-keepers list."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from index_helpers import random_unit, unit, write_tags
from PIL import Image
from typer.testing import CliRunner


def _world(tmp_path: Path, n: int = 300, dim: int = 32, seed: int = 0) -> dict:
    """Random unit vectors with three planted groups; images on disk for the group members.

    Group A: rows 5 (64x64), 40 (96x96: the keeper by pixels), 41 (64x64, a slightly noisy copy).
    Group B: rows 7 and 9, both 32x32: equal pixels, so the earlier path (row 7) keeps.
    Group C: rows 100 and 200 identical, no image files at all: 0 pixels each, earliest path.
    """
    rng = np.random.default_rng(seed)
    v = random_unit(n, dim, seed)
    v[40] = v[5]
    v[41] = unit(v[5:6] + 0.02 * rng.standard_normal((1, dim)))[0]
    v[9] = unit(v[7:8] + 0.01 * rng.standard_normal((1, dim)))[0]
    v[200] = v[100]
    paths = [f"img/{i:05d}.png" for i in range(n)]
    images = tmp_path / "images"
    (images / "img").mkdir(parents=True)
    for row, side in ((5, 64), (40, 96), (41, 64), (7, 32), (9, 32)):
        Image.new("RGB", (side, side), (row, 0, 0)).save(images / paths[row])
    tags = write_tags(tmp_path / "tags" / "tags.csv", v, paths, images_dir=images)
    manifest = tags.with_name("tags.manifest.json")  # the label facts select reads
    facts = json.loads(manifest.read_text())
    facts.update(labels=["dog", "cat"], groups={"animals": ["dog", "cat"]}, thresholds=[0.5, 0.5], taxonomy="t")
    manifest.write_text(json.dumps(facts))
    return {"tags": tags, "paths": paths, "images": images, "vecs": v}


def _groups(dups: Path) -> list[list[tuple[str, int]]]:
    groups: dict[int, list[tuple[str, int]]] = {}
    with open(dups, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["group", "key", "keep", "similarity", "pixels"]
    for row in rows:
        groups.setdefault(int(row["group"]), []).append((row["key"], int(row["keep"])))
    return [groups[g] for g in sorted(groups)]


def _listed(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_groups_keepers_and_outputs(runner: CliRunner, tmp_path: Path) -> None:
    w = _world(tmp_path)
    out = tmp_path / "dd" / "dups.csv"
    result = invoke(runner, "dedup", w["tags"], "--out", out, "--to", "label-studio", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["groups"] == 3 and facts["in_groups"] == 7 and facts["non_keepers"] == 4
    assert facts["keeper_rule"].startswith("most pixels")
    p = w["paths"]
    # Groups are numbered by keeper path; the keeper comes first in each.
    assert _groups(out) == [[(p[7], 1), (p[9], 0)], [(p[40], 1), (p[5], 0), (p[41], 0)], [(p[100], 1), (p[200], 0)]]
    with open(out, encoding="utf-8", newline="") as fh:
        sims = {r["key"]: float(r["similarity"]) for r in csv.DictReader(fh)}
    assert sims[p[5]] == pytest.approx(1.0, abs=1e-4) and 0.95 <= sims[p[41]] < 1.0
    assert sorted(_listed(out.with_name("dups.exclude.txt"))) == sorted([p[200], p[5], p[41], p[9]])
    report = json.loads(out.with_name("dups.dedup.json").read_text())
    assert report["groups"] == 3 and report["index"]["factory"] == "Flat"
    tasks = json.loads(out.with_name("dups.tasks.json").read_text())
    assert len(tasks) == 4
    first = next(t for t in tasks if t["data"]["hspnet_path"] == p[5])
    assert first["data"]["hspnet_keeper"] == p[40]
    assert first["predictions"][0]["result"][0]["value"]["choices"] == ["duplicate"]
    assert '<Image name="keeper"' in out.with_name("dups.tasks.labeling-config.xml").read_text()


def test_threshold_and_path_keeper(runner: CliRunner, tmp_path: Path) -> None:
    w = _world(tmp_path)
    out = tmp_path / "dups.csv"
    # Only exact copies at 0.9999: the noisy copies (41, 9) drop out of their groups.
    result = invoke(runner, "dedup", w["tags"], "--out", out, "--threshold", "0.9999", "--keeper", "path", "--json")
    assert result.exit_code == 0, result.output
    p = w["paths"]
    assert _groups(out) == [[(p[5], 1), (p[40], 0)], [(p[100], 1), (p[200], 0)]]
    assert json.loads(result.stdout)["keeper_rule"] == "earliest path"


def test_missing_images_fall_back_to_earliest_path(runner: CliRunner, tmp_path: Path) -> None:
    w = _world(tmp_path)
    import shutil

    shutil.rmtree(w["images"])
    result = invoke(runner, "dedup", w["tags"], "--out", tmp_path / "dups.csv", "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert "images folder not found" in facts["keeper_rule"]
    assert _groups(tmp_path / "dups.csv")[0][0] == (w["paths"][5], 1)  # not 40: no pixels to compare


def test_index_input_and_ivf_agree(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _world(tmp_path, n=3000)
    base = tmp_path / "flat.csv"
    assert invoke(runner, "dedup", w["tags"], "--out", base, "--json").exit_code == 0
    # The same data through an IVF index built here (the path taken above 100,000 images)...
    from hspnet_cli.dedup import graph

    monkeypatch.setattr(graph, "FLAT_MAX", 1000)
    ivf = tmp_path / "ivf.csv"
    result = invoke(runner, "dedup", w["tags"], "--out", ivf, "--json")
    assert json.loads(result.stdout)["index"]["factory"].startswith("IVF")
    assert _groups(ivf) == _groups(base)
    # ... and through an index of hspnet index build.
    index = tmp_path / "tags.faiss"
    assert invoke(runner, "index", "build", w["tags"], "--out", index).exit_code == 0
    from_index = tmp_path / "from-index.csv"
    result = invoke(runner, "dedup", index, "--out", from_index, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["input"] == "index"
    assert _groups(from_index) == _groups(base)


def test_non_keepers_are_excluded_downstream(runner: CliRunner, tmp_path: Path) -> None:
    w = _world(tmp_path)
    out = tmp_path / "dups.csv"
    assert invoke(runner, "dedup", w["tags"], "--out", out).exit_code == 0
    exclude = out.with_name("dups.exclude.txt")
    dropped = set(_listed(exclude))
    # select: none of the non-keepers is ever picked, even asking for every image.
    picks = tmp_path / "next.txt"
    result = invoke(
        runner,
        "select",
        w["tags"],
        "-n",
        "1000",
        "--strategy",
        "random",
        "--exclude",
        exclude,
        "--out",
        picks,
        "--json",
    )
    assert result.exit_code == 0, result.output
    chosen = set(_listed(picks))
    assert len(chosen) == len(w["paths"]) - len(dropped) and not chosen & dropped
    # split: the non-keepers are in no part of the split.
    ann = tmp_path / "ann.csv"
    ann.write_text("image,labels\n" + "".join(f"{p},dog\n" for p in w["paths"]), encoding="utf-8")
    tax = tmp_path / "tax.yaml"
    tax.write_text("name: t\nlabels: [dog, cat]\ngroups:\n  animals: [dog, cat]\n", encoding="utf-8")
    result = invoke(
        runner, "split", ann, "-t", tax, "-o", tmp_path / "split", "--mode", "full", "--exclude", exclude, "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["excluded"] == len(dropped)
    train = (tmp_path / "split" / "train.csv").read_text(encoding="utf-8")
    assert not any(f"\n{key}," in train for key in dropped) and f"\n{w['paths'][40]}," in train
    # annotate: the queue (with and without --order) never holds a non-keeper.
    from hspnet_cli.annotate.queue import build_order

    order_file = tmp_path / "order.txt"
    order_file.write_text(f"{w['paths'][5]}\n{w['paths'][40]}\n", encoding="utf-8")
    for kwargs in ({}, {"order_file": order_file}):
        queue = list(build_order(w["images"], exclude=(exclude,), **kwargs))
        assert not set(queue) & dropped and w["paths"][40] in queue
    assert list(build_order(w["images"], order_file, exclude=(exclude,)))[0] == w["paths"][40]


def test_bad_input_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    result = invoke(runner, "dedup", bad, "--out", tmp_path / "d.csv")
    assert result.exit_code == 2 and "neither a tags.csv" in result.stderr and "Traceback" not in result.output
    w = _world(tmp_path / "w")
    result = invoke(runner, "dedup", w["tags"], "--out", tmp_path / "d.csv", "--threshold", "1.5")
    assert result.exit_code == 2 and "--threshold 1.5" in result.stderr


def test_features_that_cannot_tell_images_apart_are_flagged(runner: CliRunner, tmp_path: Path) -> None:
    """Embeddings along about one direction (an untrained model's): the groups come with a warning."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal(32)
    flat = unit(base + 0.02 * rng.standard_normal((200, 32)) * np.r_[1.0, np.full(31, 0.01)])
    tags = write_tags(tmp_path / "t" / "tags.csv", flat)
    result = invoke(runner, "dedup", tags, "--out", tmp_path / "d.csv", "--json")
    facts = json.loads(result.stdout)
    assert facts["effective_dimensions"] < 2 and "hardly tells images apart" in facts["warning"]
    w = _world(tmp_path / "w")
    facts = json.loads(invoke(runner, "dedup", w["tags"], "--out", tmp_path / "d2.csv", "--json").stdout)
    assert facts["effective_dimensions"] > 20 and facts["warning"] is None
