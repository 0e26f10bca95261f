"""Real ``hspnet tag`` outputs of a trained checkpoint: text search with the models hspnet makes
(a training checkpoint answers label names with the learned label features and free text with
its stored text tower; an export answers label names only), and sharded runs merged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from index_helpers import run
from test_train import tiny

from hspnet_cli.index.build import build_index
from hspnet_cli.scoring.scorer import from_checkpoint
from hspnet_cli.tagging.run import tag_images


@pytest.fixture(scope="module")
def tagged(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of HSPNet on the demo split; every demo image tagged (jsonl: every label's
    probability) and indexed with its best checkpoint."""
    from hspnet_cli.train.loop import train

    root = tmp_path_factory.mktemp("search-models")
    train(
        demo_split["split"],
        demo_split["images"],
        root / "run",
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    ckpt = root / "run" / "best.ckpt"
    tag_images(demo_split["images"], root / "tags.jsonl", from_checkpoint(ckpt), fmt="jsonl", progress=False)
    build_index(root / "tags.jsonl", root / "tags.faiss")
    rows = [json.loads(line) for line in (root / "tags.jsonl").read_text().splitlines()]
    return {"ckpt": ckpt, "index": root / "tags.faiss", "rows": rows, "root": root}


def test_a_label_name_finds_the_images_the_model_scores_highest_for_it(tagged: dict) -> None:
    result = run(
        "search",
        tagged["index"],
        "--text",
        "Star",
        "--checkpoint",
        tagged["ckpt"],
        "--k",
        8,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "label 'star'" in data["query"]
    # The model's logit for "star" is <embedding, T*_star> scaled: the hits are its top 8.
    scorer = from_checkpoint(tagged["ckpt"])
    emb = np.fromfile(tagged["root"] / "tags.emb.f32", dtype="<f4").reshape(len(tagged["rows"]), -1)
    star = scorer.label_features[scorer.taxonomy.label_names.index("star")].numpy()
    top = {tagged["rows"][i]["path"] for i in np.argsort(-(emb @ star), kind="stable")[:8]}
    assert {h["path"] for h in data["hits"]} == top


def test_free_text_goes_through_the_checkpoints_text_tower(tagged: dict) -> None:
    scorer = from_checkpoint(tagged["ckpt"])
    stored = torch.load(tagged["ckpt"], weights_only=True)["frozen_text"]
    assert "token_embedding.weight" in stored  # random tower: stored whole
    texts = ["a star and a heart", "a photo of a circle."]
    feats = scorer.text_encoder(texts)
    assert feats.shape == (2, scorer.label_features.shape[1])
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))
    result = run(
        "search",
        tagged["index"],
        "--text",
        "a star and a heart",
        "--checkpoint",
        tagged["ckpt"],
        "--k",
        3,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "text tower on 'a star and a heart'" in data["query"] and len(data["hits"]) == 3
    # --no-label-match sends a label name through the tower too: other query vector, other note.
    result = run(
        "search",
        tagged["index"],
        "--text",
        "star",
        "--checkpoint",
        tagged["ckpt"],
        "--json",
        "--no-label-match",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0 and "text tower on 'a photo of a star.'" in json.loads(result.stdout)["query"]


def test_an_export_answers_label_names_but_not_free_text(tagged: dict, tmp_path: Path) -> None:
    from hspnet_cli.scoring.export import export_model

    model = export_model(tagged["ckpt"], tmp_path / "model.pt")
    result = run("search", tagged["index"], "--text", "circle", "--checkpoint", model, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "label 'circle'" in json.loads(result.stdout)["query"]
    result = run("search", tagged["index"], "--text", "a red circle", "--checkpoint", model, "--device", "cpu")
    assert result.exit_code == 2 and "text search needs a model with its text tower" in result.stderr


def test_a_checkpoint_without_a_stored_token_embedding_still_scores(tagged: dict, tmp_path: Path) -> None:
    data = torch.load(tagged["ckpt"], weights_only=True)
    del data["frozen_text"]["token_embedding.weight"]  # as checkpoints of hspnet <= 0.1 were
    old = tmp_path / "old.ckpt"
    torch.save(data, old)
    scorer, new = from_checkpoint(old), from_checkpoint(tagged["ckpt"])
    assert scorer.text_encoder is None
    images = torch.rand(2, 3, scorer.image_size, scorer.image_size)
    torch.testing.assert_close(scorer(images), new(images))
    assert np.isfinite(scorer(images).numpy()).all()


def test_shards_of_a_jsonl_run_merge_into_the_unsharded_output(tagged: dict, demo_split) -> None:
    from hspnet_cli.index.merge import merge_shards
    from hspnet_cli.tagsfile.writer import OutputPaths

    root, scorer = tagged["root"], from_checkpoint(tagged["ckpt"])
    for i in range(2):
        tag_images(
            demo_split["images"], root / "sh" / "tags.jsonl", scorer, fmt="jsonl", shard=f"{i}/2", progress=False
        )
    shards = [root / "sh" / f"tags.shard-{i}-of-2.jsonl" for i in range(2)]
    facts = merge_shards(root / "merged" / "tags.jsonl", shards[::-1])
    assert facts["count"] == len(tagged["rows"]) and facts["shards"] == 2
    merged = [json.loads(line) for line in (root / "merged" / "tags.jsonl").read_text().splitlines()]
    whole = sorted(tagged["rows"], key=lambda r: r["path"])
    assert [r["path"] for r in merged] == [r["path"] for r in whole]
    order = np.argsort([r["path"] for r in tagged["rows"]], kind="stable")
    emb_whole = np.fromfile(root / "tags.emb.f32", dtype="<f4").reshape(len(order), -1)[order]
    emb_merged = np.fromfile(OutputPaths.for_out(root / "merged" / "tags.jsonl").emb, dtype="<f4")
    np.testing.assert_allclose(emb_merged.reshape(emb_whole.shape), emb_whole, atol=1e-5)
    manifest = json.loads(OutputPaths.for_out(root / "merged" / "tags.jsonl").manifest.read_text())
    assert manifest["fingerprint"]["format"] == "jsonl" and manifest["counts"]["rows"] == len(order)
    assert manifest["model"]["scorer"] == scorer.description
    # A shard of another threshold is not mergeable: its tags columns would disagree.
    tag_images(
        demo_split["images"],
        root / "other" / "tags.jsonl",
        scorer,
        fmt="jsonl",
        shard="1/2",
        threshold=0.9,
        progress=False,
    )
    with pytest.raises(Exception, match="its thresholds setting differs"):
        merge_shards(root / "bad" / "tags.jsonl", [shards[0], root / "other" / "tags.shard-1-of-2.jsonl"])


def test_text_fingerprint_leaves_the_token_embedding_out(tagged: dict) -> None:
    """Checkpoints of a published tower store only this fingerprint; it must not change with the
    token embedding the tower now keeps (older checkpoints still check)."""
    from hspnet_cli.model.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(tagged["ckpt"]))
    before = model.text_fingerprint()
    with torch.no_grad():
        model.text.token_embedding.weight.add_(1.0)
    assert model.text_fingerprint() == before
    with torch.no_grad():
        model.text.ln_final.weight.add_(1.0)
    assert model.text_fingerprint() != before
