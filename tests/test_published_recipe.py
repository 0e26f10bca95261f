"""The published recipe's details: GCN init, BatchNorm in epoch 1, float32 scores under autocast,
graph similarity files, early stopping, ROLE in a real run, and what a checkpoint records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, invoke
from test_train import run, tiny

from hspnet_cli.config import apply_overrides, load_preset
from hspnet_cli.core.errors import UserError
from hspnet_cli.model.checkpoint import load_checkpoint, model_from_checkpoint
from hspnet_cli.model.graph import GCN, build_graph, graph_from_similarity
from hspnet_cli.model.hspnet import cosine_logits
from hspnet_cli.model.similarity import load_similarity, order_agreement
from hspnet_cli.taxonomy import load_taxonomy

VOC_SIM = DATA / "clip-rn50-voc-similarity.npy"  # the published 24 x 24 VOC file (labels, then groups)


def test_official_preset_matches_the_published_recipe() -> None:
    official, demo = load_preset("official"), load_preset("demo")
    assert official.train.epochs == 60 and official.train.patience == 10
    assert official.train.amp == "fp16" and official.train.bn_frozen_first_epoch
    assert official.model.gcn_init == "fan_out"
    assert (demo.model.gcn_init, demo.train.bn_frozen_first_epoch) == ("fan_in", False)
    with pytest.raises(UserError, match="train.patience must be at least 1"):
        apply_overrides(official, {"train.patience": 0})
    with pytest.raises(UserError, match="model.gcn_init must be one of fan_out, fan_in"):
        apply_overrides(official, {"model.gcn_init": "xavier"})


def test_gcn_init_bounds_follow_out_features() -> None:
    torch.manual_seed(0)
    published = GCN(64, 128, layers=3, init="fan_out")  # 64 -> 128 -> 128 -> 64
    linear = GCN(64, 128, layers=3, init="fan_in")
    for layer, bound in zip(published.weights, (1 / math.sqrt(128), 1 / math.sqrt(128), 1 / math.sqrt(64))):
        w = layer.weight
        # U(-b, b) with thousands of draws: the extremes come within 2% of the bound, never past it.
        assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
    # nn.Linear's own bounds are 1/sqrt(in_features): layers 1 and 3 swapped against the above.
    assert linear.weights[0].weight.abs().max() > 1 / math.sqrt(128) * 1.05
    assert linear.weights[2].weight.abs().max() <= 1 / math.sqrt(128)


def test_near_tie_scores_rank_the_same_under_autocast() -> None:
    """Scores of one class that differ only in the 4th decimal keep their order under bf16 autocast
    (a bf16 product would map them onto a handful of values)."""
    gen = torch.Generator().manual_seed(0)
    label = torch.randn(1, 64, generator=gen)
    base = torch.randn(64, generator=gen)
    base = base - (base @ label[0]) / (label[0] @ label[0]) * label[0]  # orthogonal to the label
    # 200 images whose cosine with the label rises in steps of ~1e-4 around 0.3.
    cos = 0.3 + 1e-4 * torch.arange(200, dtype=torch.float32)
    unit_l, unit_b = label[0] / label[0].norm(), base / base.norm()
    images = cos[:, None] * unit_l + torch.sqrt(1 - cos[:, None] ** 2) * unit_b
    images = images * 3.7  # unnormalised features
    full = cosine_logits(images, label, 10.0)[:, 0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = cosine_logits(images, label, torch.tensor(10.0))[:, 0]
        naive = (10.0 * torch.nn.functional.normalize(images, dim=-1) @ torch.nn.functional.normalize(label, dim=-1).T)[
            :, 0
        ]
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, rtol=0, atol=0)
    assert torch.equal(torch.argsort(mixed), torch.arange(200)) and len(torch.unique(mixed)) == 200
    # What the fix prevents: the same product inside autocast collapses the 200 scores.
    assert len(torch.unique(naive.float())) < 50
    # eval / tag / calibrate score through a Scorer: the same under autocast as without.
    from hspnet_cli.scoring.scorer import Scorer

    scorer = Scorer(
        image_encoder=torch.nn.Identity(),
        label_features=torch.nn.functional.normalize(label, dim=-1),
        logit_scale=10.0,
        taxonomy=load_taxonomy("voc"),
        image_size=1,
        transform=lambda x: x,
        description="identity",
    )
    plain = scorer(images)[:, 0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = scorer(images)[:, 0]
    torch.testing.assert_close(under, plain, rtol=0, atol=0)
    assert torch.equal(torch.argsort(under), torch.arange(200))


def test_graph_similarity_file_gives_the_published_graphs() -> None:
    voc = load_taxonomy("voc")
    label_sim, group_sim = load_similarity(VOC_SIM, voc)
    full = np.load(VOC_SIM)
    assert label_sim.shape == (20, 20) and group_sim.shape == (4, 4)
    np.testing.assert_array_equal(label_sim, full[:20, :20])
    np.testing.assert_array_equal(group_sim, full[20:, 20:])
    graph = graph_from_similarity(label_sim, 0.75, 0.2)
    torch.testing.assert_close(graph.sum(dim=1), torch.ones(20))
    assert torch.allclose(torch.diag(graph), torch.full((20,), 0.8))
    # The same graph as one built from features with that Gram matrix (the run-time path).
    vals, vecs = np.linalg.eigh(full[:20, :20].astype(np.float64))
    feats = torch.as_tensor(vecs * np.sqrt(np.clip(vals, 0, None)), dtype=torch.float32)
    torch.testing.assert_close(build_graph(feats, 0.75, 0.2), graph, atol=1e-5, rtol=0)
    # Order check for names-less files: the true order agrees, a shuffled one does not.
    perm = np.random.default_rng(0).permutation(20)
    assert order_agreement(label_sim, full[:20, :20]) > 0.99
    assert order_agreement(label_sim[perm][:, perm], full[:20, :20]) < 0.5


def test_graph_similarity_file_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    voc, full = load_taxonomy("voc"), np.load(VOC_SIM)
    cases = {
        "missing.npy": (None, "graph similarity file not found"),
        "small.npy": (full[:10, :10], r"is 10 x 10, but taxonomy 'voc' has 20 labels and 4 groups: expected 24 x 24"),
        "rect.npy": (full[:20], r"expected a square matrix, got shape \(20, 24\)"),
        "asym.npy": (full + np.triu(np.full_like(full, 0.1), 1), "not symmetric"),
        "diag.npy": (full * 2, "not a cosine-similarity matrix"),
        "nan.npy": (np.where(np.eye(24, k=1, dtype=bool), np.nan, full), r"entry \(0, 1\) is not a finite number"),
    }
    for name, (matrix, match) in cases.items():
        if matrix is not None:
            np.save(tmp_path / name, matrix.astype(np.float32))
        with pytest.raises(UserError, match=match):
            load_similarity(tmp_path / name, voc)
    (tmp_path / "junk.npy").write_bytes(b"no array here")
    with pytest.raises(UserError, match="junk.npy: not a readable .npy/.npz file"):
        load_similarity(tmp_path / "junk.npy", voc)
    # Labels-only C x C is accepted (group graph from the backbone).
    np.save(tmp_path / "labels.npy", full[:20, :20])
    assert load_similarity(tmp_path / "labels.npy", voc)[1] is None
    # .npz with names: the order is checked, not assumed.
    names = voc.label_names + voc.group_names
    np.savez(tmp_path / "named.npz", similarity=full, names=np.array(names))
    assert load_similarity(tmp_path / "named.npz", voc)[0].shape == (20, 20)
    swapped = names[:]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    np.savez(tmp_path / "swapped.npz", similarity=full, names=np.array(swapped))
    with pytest.raises(UserError, match="row 1 is 'bird' but the taxonomy's label 1 is 'bicycle'"):
        load_similarity(tmp_path / "swapped.npz", voc)


def test_train_reads_a_similarity_file_and_the_checkpoint_keeps_its_graphs(demo_split, tmp_path: Path, runner) -> None:
    tax = load_taxonomy(demo_split["taxonomy"])
    # A similarity of the demo world's 16 labels and 4 groups, as a user's precomputed file.
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(20, 8))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    sim = (feats @ feats.T).astype(np.float32)
    np.save(tmp_path / "sim.npy", sim)
    cfg = tiny(**{"train.epochs": 1, "model.graph_similarity": str(tmp_path / "sim.npy")})
    run(demo_split, tmp_path / "run", cfg)
    best = load_checkpoint(tmp_path / "run" / "best.ckpt")
    want_label = graph_from_similarity(sim[:16, :16], 0.75, 0.2)
    want_group = graph_from_similarity(sim[16:, 16:], 0.75, 0.2)
    torch.testing.assert_close(best["model"]["label_graph"], want_label)
    torch.testing.assert_close(best["model"]["group_graph"], want_group)
    # The checkpoint rebuilds without the file (its graphs are weights).
    (tmp_path / "sim.npy").unlink()
    model = model_from_checkpoint(best)
    torch.testing.assert_close(model.label_graph, want_label)
    assert tax.num_labels == 16
    # A wrong file stops the run before anything is built, as one clear line.
    np.save(tmp_path / "bad.npy", sim[:10, :10])
    result = invoke(
        runner,
        "train",
        "--split",
        demo_split["split"],
        "--images",
        demo_split["images"],
        "--out",
        tmp_path / "bad-run",
        "-t",
        demo_split["taxonomy"],
        "--preset",
        "demo",
        "--set",
        f"model.graph_similarity={tmp_path / 'bad.npy'}",
        "--epochs",
        "1",
    )
    assert result.exit_code == 2 and "bad.npy: is 10 x 10" in result.stderr
    assert "Traceback" not in result.stderr


def test_batchnorm_is_frozen_in_the_first_epoch_only(demo_split, tmp_path: Path) -> None:
    def bn_stats(state: dict) -> torch.Tensor:
        return torch.cat([v.flatten() for k, v in state.items() if k.startswith("visual.") and "running_mean" in k])

    from hspnet_cli.model.hspnet import build_model

    cfg = tiny(**{"train.epochs": 2, "train.ema": False, "model.clip_model": "hspnet-tiny-rn"})
    torch.manual_seed(cfg.train.seed)
    initial = bn_stats(build_model(load_taxonomy(demo_split["taxonomy"]), cfg.model).state_dict())
    run(demo_split, tmp_path / "frozen", cfg, stop_after_epochs=1)
    after_first = bn_stats(load_checkpoint(tmp_path / "frozen" / "last.ckpt")["model"])
    assert torch.equal(after_first, initial)  # epoch 1: running statistics kept
    run(demo_split, tmp_path / "frozen", cfg, resume=True)
    assert not torch.equal(bn_stats(load_checkpoint(tmp_path / "frozen" / "last.ckpt")["model"]), initial)
    run(
        demo_split,
        tmp_path / "free",
        tiny(
            **{
                "train.epochs": 1,
                "train.ema": False,
                "model.clip_model": "hspnet-tiny-rn",
                "train.bn_frozen_first_epoch": False,
            }
        ),
    )
    assert not torch.equal(bn_stats(load_checkpoint(tmp_path / "free" / "last.ckpt")["model"]), initial)


def test_patience_stops_training_and_a_resume_does_not_restart_it(demo_split, tmp_path: Path, monkeypatch) -> None:
    import hspnet_cli.train.loop as loop

    # Validation mAP peaks at epoch 2, then falls: patience 2 stops after epoch 4.
    maps = iter([0.3, 0.5, 0.4, 0.45, 0.2, 0.1, 0.1, 0.1])
    monkeypatch.setattr(loop, "_evaluate", lambda *a, **k: (next(maps), None))
    cfg = tiny(**{"train.epochs": 8, "train.patience": 2, "train.ema": False})
    result = run(demo_split, tmp_path / "run", cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    assert result.stopped_early and result.best_epoch == 2 and result.summary()["stopped_early"]
    again = run(demo_split, tmp_path / "run", cfg, resume=True)
    assert again.stopped_early and again.history == []
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4


def test_role_trains_saves_its_estimates_and_resumes_exactly(demo_split, tmp_path: Path) -> None:
    cfg = tiny(
        **{
            "train.loss": "role",
            "train.loss_options": {"expected_positives": 2.0},
            "train.epochs": 2,
            "model.clip_model": "hspnet-tiny",
        }
    )
    whole = run(demo_split, tmp_path / "whole", cfg)
    last = load_checkpoint(tmp_path / "whole" / "last.ckpt")
    est = last["loss"]["estimates"]
    assert est.shape == (90, 16)
    # Trained: the estimates moved from their initialisation, observed positives stay high.
    torch.manual_seed(cfg.train.seed)
    from hspnet_cli.data.split_io import read_split_csv

    observed = torch.as_tensor(
        read_split_csv(demo_split["split"] / "train.csv", load_taxonomy(demo_split["taxonomy"])).matrix
    )
    assert torch.sigmoid(est[observed == 1]).min() > 0.9
    names = [g.get("name") for g in last["optimizer"]["param_groups"]]
    assert "role-estimates" in names
    part = run(demo_split, tmp_path / "parts", cfg, stop_after_epochs=1)
    rest = run(demo_split, tmp_path / "parts", cfg, resume=True)
    assert part.step_losses + rest.step_losses == whole.step_losses
    torch.testing.assert_close(
        load_checkpoint(tmp_path / "parts" / "last.ckpt")["loss"]["estimates"], est, rtol=0, atol=0
    )


def test_checkpoints_record_the_activation_and_old_ones_rebuild_as_built(demo_split, tmp_path: Path) -> None:
    run(demo_split, tmp_path / "run", tiny(**{"train.epochs": 1, "model.clip_model": "hspnet-tiny"}))
    best = load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert best["clip_build"] == {"quick_gelu": False}
    from hspnet_cli.model.clip_models import uses_quick_gelu

    assert not uses_quick_gelu(model_from_checkpoint(best))
    # A checkpoint that records QuickGELU is rebuilt with it (the activation is not a weight).
    best["clip_build"] = {"quick_gelu": True}
    model = model_from_checkpoint(best)
    assert uses_quick_gelu(model.visual) and uses_quick_gelu(model.text)
    # Written before the record existed: rebuilt with the config's own activation, as trained.
    del best["clip_build"]
    assert not uses_quick_gelu(model_from_checkpoint(best))


TINY_OAI = {  # a tiny ViT whose head counts follow OpenAI's rule (width / 64), as OpenAI's files do
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


def openai_style_archive(path: Path) -> dict:
    """A TorchScript archive laid out like OpenAI's released CLIP files (a scripted module whose
    state dict has OpenAI's key names), holding a tiny ViT's random weights; its architecture is
    registered with open_clip as ``hspnet-tiny-oai``."""
    from torch import nn

    from hspnet_cli.model.clip_models import open_clip_module

    (path.parent / "configs").mkdir(exist_ok=True)
    (path.parent / "configs" / "hspnet-tiny-oai.json").write_text(json.dumps(TINY_OAI))
    open_clip = open_clip_module()
    open_clip.add_model_config(path.parent / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model("hspnet-tiny-oai", pretrained=None, force_quick_gelu=True)
    state = {k: v for k, v in model.state_dict().items() if k != "attn_mask"}  # OpenAI keeps it off the state
    root = nn.Module()
    for key, value in state.items():
        *parents, name = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(name, value.clone())
    torch.jit.script(root).save(str(path))
    return state


def test_local_openai_archive_keeps_quickgelu_through_training_and_rebuild(demo_split, tmp_path: Path) -> None:
    from hspnet_cli.model.clip_models import load_clip, uses_quick_gelu
    from hspnet_cli.scoring.scorer import from_checkpoint

    state = openai_style_archive(tmp_path / "ViT-tiny.pt")
    clip = load_clip("hspnet-tiny-oai", str(tmp_path / "ViT-tiny.pt"))
    assert clip.quick_gelu and uses_quick_gelu(clip.model.visual) and uses_quick_gelu(clip.model.transformer)
    # open_clip rebuilds OpenAI archives through fp16 (their own precision): equal at that precision.
    assert torch.equal(clip.model.visual.conv1.weight, state["visual.conv1.weight"].half().float())
    run(
        demo_split,
        tmp_path / "run",
        tiny(
            **{
                "train.epochs": 1,
                "model.clip_model": "hspnet-tiny-oai",
                "model.pretrained": str(tmp_path / "ViT-tiny.pt"),
            }
        ),
    )
    best = load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert best["clip_build"] == {"quick_gelu": True} and best["frozen_text"] is not None
    # Rebuilt from the checkpoint alone (stored text tower): QuickGELU again, same label features.
    model = model_from_checkpoint(best)
    assert uses_quick_gelu(model.visual) and uses_quick_gelu(model.text)
    with torch.no_grad():
        torch.testing.assert_close(model.label_features(), best["label_features"], rtol=1e-5, atol=1e-5)
    scorer = from_checkpoint(tmp_path / "run" / "best.ckpt")
    assert uses_quick_gelu(scorer.image_encoder)


def test_best_checkpoint_of_ema_weights_holds_the_ema_weights(demo_split, tmp_path: Path, monkeypatch) -> None:
    """When the EMA wins, best.ckpt stores the EMA weights and their label features (on the CPU the
    weights once aliased the live model and were overwritten by the raw ones before writing)."""
    import hspnet_cli.train.loop as loop

    maps = iter([0.1, 0.2])  # raw, then EMA: the EMA wins
    monkeypatch.setattr(loop, "_evaluate", lambda *a, **k: (next(maps), None))
    run(demo_split, tmp_path / "run", tiny(**{"train.epochs": 1, "model.clip_model": "hspnet-tiny"}))
    best, last = (load_checkpoint(tmp_path / "run" / name) for name in ("best.ckpt", "last.ckpt"))
    assert best["best"]["source"] == "ema"
    for key, value in last["ema"].items():
        assert torch.equal(best["model"][key], value), key
    assert any(not torch.equal(last["model"][k], v) for k, v in last["ema"].items() if v.is_floating_point())
    with torch.no_grad():
        torch.testing.assert_close(
            model_from_checkpoint(best).label_features(), best["label_features"], rtol=1e-5, atol=1e-5
        )
