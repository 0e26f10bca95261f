"""hspnet search: --like / --text / --image queries, --json, --copy-to, and the errors a user can fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from index_helpers import MODEL, clustered, random_unit, run, write_tags

from hspnet_cli.index.build import build_index


@pytest.fixture(scope="module")
def image_index(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """12 small images embedded by hspnet-tiny (random weights, seed 0) and indexed."""
    from PIL import Image

    from hspnet_cli.index.search import _query_taxonomy
    from hspnet_cli.scoring.scorer import zero_shot

    root = tmp_path_factory.mktemp("search")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        rel = f"sub/{i:02d}.png" if i % 2 else f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / rel)
        paths.append(rel)
    torch.manual_seed(0)
    scorer = zero_shot(_query_taxonomy(), "hspnet-tiny", None)
    batch = torch.stack([scorer.transform(Image.open(images / p).convert("RGB")) for p in paths])
    vecs = scorer.embed(batch).numpy()
    tags = write_tags(root / "tags.csv", vecs, paths, model=scorer.description, images_dir=images)
    build_index(tags, root / "tags.faiss")
    return {"root": root, "images": images, "paths": paths, "index": root / "tags.faiss", "model": scorer.description}


def test_like_returns_the_item_itself_first(tmp_path: Path) -> None:
    vecs = clustered(3000)
    write_tags(tmp_path / "t.csv", vecs)
    for factory in (None, "IVF32,Flat"):
        out = tmp_path / f"{factory or 'flat'}.faiss"
        build_index(tmp_path / "t.csv", out, factory=factory)
        result = run("search", out, "--like", "img/00042.jpg", "--k", 5, "--json", "--include-self")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["hits"][0]["path"] == "img/00042.jpg" and data["hits"][0]["id"] == 42
        assert data["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5) and len(data["hits"]) == 5
        assert [h["rank"] for h in data["hits"]] == [1, 2, 3, 4, 5]
        assert data["hits"][0]["score"] >= data["hits"][-1]["score"]


def test_text_query_with_the_clip_model_works(image_index: dict) -> None:
    result = run(
        "search",
        image_index["index"],
        "--text",
        "a dog on a beach",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--k",
        3,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3 and all(h["path"] in image_index["paths"] for h in hits)
    assert json.loads(result.stdout)["query"] == "text 'a dog on a beach' (text tower on 'a dog on a beach')"
    # Without a model option the index's own model ("zero-shot hspnet-tiny/random") is used.
    result = run("search", image_index["index"], "--text", "a cat", "--k", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "rank" in result.stdout and "score" in result.stdout


def test_text_query_with_an_export_says_it_needs_the_text_tower(image_index: dict, tmp_path: Path, monkeypatch) -> None:
    from hspnet_cli.index.search import _query_taxonomy
    from hspnet_cli.scoring import scorer as scoring

    def exported(path, device="cpu"):
        scorer = scoring.zero_shot(_query_taxonomy(), "hspnet-tiny", None)
        scorer.text_encoder, scorer.description = None, f"export {path} (ckpt of hspnet-tiny)"
        return scorer

    model = tmp_path / "model.pt"
    model.write_bytes(b"")  # --checkpoint must exist; what it holds is the stand-in's business
    monkeypatch.setattr(scoring, "load_scorer", exported)
    result = run("search", image_index["index"], "--text", "a dog", "--checkpoint", model, "--device", "cpu")
    assert result.exit_code == 2
    assert "text search needs a model with its text tower" in result.stderr
    assert f"export {model}" in result.stderr and "--clip-model/--pretrained" in result.stderr
    # The same scorer answers image queries.
    result = run(
        "search",
        image_index["index"],
        "--image",
        image_index["images"] / "sub" / "03.png",
        "--checkpoint",
        model,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output


def test_image_query_finds_the_same_image_first(image_index: dict) -> None:
    torch.manual_seed(0)  # the same random weights as the index
    query = image_index["images"] / "sub" / "05.png"
    result = run(
        "search",
        image_index["index"],
        "--image",
        query,
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--k",
        4,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["path"] == "sub/05.png" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["file"] == str(query.absolute())


def test_copy_to_copies_the_hits_with_rank_prefixes(image_index: dict, tmp_path: Path) -> None:
    out = tmp_path / "hits"
    result = run(
        "search", image_index["index"], "--like", "sub/07.png", "--k", 3, "--copy-to", out, "--json", "--include-self"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and names[0] == "01_07.png" and [n[:3] for n in names] == ["01_", "02_", "03_"]
    for hit, name in zip(data["hits"], names):
        assert (out / name).read_bytes() == (image_index["images"] / hit["path"]).read_bytes()
    assert data["copied"] == [str(out / n) for n in names]


def test_query_errors_are_one_line(image_index: dict, tmp_path: Path) -> None:
    index = image_index["index"]
    result = run("search", index)
    assert result.exit_code == 2 and "give exactly one query: --text, --image or --like" in result.stderr
    result = run("search", index, "--like", "sub/01.png", "--text", "x")
    assert result.exit_code == 2 and "(got --text, --like)" in result.stderr
    result = run("search", index, "--like", "nope.png")
    assert result.exit_code == 2 and "'nope.png' is not in index" in result.stderr
    result = run(
        "search",
        index,
        "--image",
        tmp_path / "none.png",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2 and "none.png: query image not found" in result.stderr
    result = run("search", tmp_path / "missing.faiss", "--like", "x")
    assert result.exit_code == 2 and "missing.faiss: index not found" in result.stderr
    # An index of 16-dim embeddings cannot be queried with a 32-dim model.
    write_tags(tmp_path / "d16.csv", random_unit(20, dim=16), model=MODEL)
    build_index(tmp_path / "d16.csv", tmp_path / "d16.faiss")
    result = run(
        "search",
        tmp_path / "d16.faiss",
        "--text",
        "a dog",
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2 and "makes 32-dim embeddings but index" in result.stderr and "16-dim" in result.stderr
    # Missing hit files: nothing is copied, and the message says so.
    (image_index["images"] / "sub" / "09.png").rename(tmp_path / "09.png")
    try:
        result = run("search", index, "--like", "sub/09.png", "--k", 2, "--copy-to", tmp_path / "c", "--include-self")
        assert result.exit_code == 2 and "hit file(s) are missing" in result.stderr and not (tmp_path / "c").exists()
    finally:
        (tmp_path / "09.png").rename(image_index["images"] / "sub" / "09.png")
