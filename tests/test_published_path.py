"""The path almost every real user runs: ``--clip-model RN50 --pretrained openai`` (and ViT-B-32/openai).

Published weights cannot be downloaded here, so random weights of the right shapes are laid out
exactly where open_clip looks for a published tag (the Hugging Face cache: ``HF_HOME/hub/
models--timm--resnet50_clip.openai/snapshots/<rev>/open_clip_model.safetensors`` plus
``refs/main``), and the real commands run offline (``HF_HUB_OFFLINE=1``) in a second process:
they load these files exactly as they would load the real ones. What is checked is the loading
path (architecture, activation of both towers, weights from the cache) and that train, eval,
tag and taxonomy build run on it; the weights are random, so no accuracy is claimed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPOS = {"RN50": "timm/resnet50_clip.openai", "ViT-B-32": "timm/vit_base_patch32_clip_224.openai"}
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def published_hf_home(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A Hugging Face cache holding random RN50 and ViT-B-32 weights under the openai tags'
    repository ids (as open_clip's pretrained table names them), made once per session."""
    import open_clip
    import torch
    from open_clip.pretrained import get_pretrained_cfg
    from safetensors.torch import save_file

    home = tmp_path_factory.mktemp("hf-home")
    probes = {}
    for model_name, repo in REPOS.items():
        # The table must still send the tag to this repository, or the test would prove nothing.
        assert get_pretrained_cfg(model_name, "openai")["hf_hub"].rstrip("/") == repo
        torch.manual_seed(0)
        model = open_clip.create_model(model_name, pretrained=None)
        # fp16 halves the files (RN50 200 MB, ViT-B-32 300 MB); loading casts to the model's fp32.
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        first = next(iter(state))
        probes[model_name] = [first, float(state[first].float().flatten()[:64].sum())]
        folder = home / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "snapshots" / REVISION).mkdir(parents=True)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(REVISION)
        save_file(state, str(folder / "snapshots" / REVISION / "open_clip_model.safetensors"))
        del model, state
    return {"home": home, "probes": probes}


def drive(hf_home: Path, steps: list[dict], work: Path) -> list[dict]:
    """Run ``steps`` in a second process, offline, against ``hf_home``."""
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(HERE.parent),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    (work / "steps.json").write_text(json.dumps(steps))
    proc = subprocess.run(
        [sys.executable, str(HERE / "published_path_driver.py"), str(work / "steps.json"), str(work / "out.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "out.json").read_text())
    for r in results:
        assert r["exit_code"] == 0, f"{r['step']} failed:\n{r.get('stderr', '')}{r.get('error', '')}"
    return results


def test_published_tags_load_with_quickgelu_in_both_towers(published_hf_home, tmp_path: Path) -> None:
    results = drive(
        published_hf_home["home"], [{"load": ["RN50", "openai"]}, {"load": ["ViT-B-32", "openai"]}], tmp_path
    )
    rn50, vit = (r["builds"][0] for r in results)
    # Weights came from the cache files (not a random initialisation).
    assert rn50["probe"][0] == published_hf_home["probes"]["RN50"][0]
    assert rn50["probe"][1] == pytest.approx(published_hf_home["probes"]["RN50"][1], rel=1e-6)
    assert vit["probe"][1] == pytest.approx(published_hf_home["probes"]["ViT-B-32"][1], rel=1e-6)
    # RN50: the text transformer has QuickGELU (open_clip's plain RN50 would give GELU); the
    # image tower is a ResNet whose only activation is ReLU.
    assert rn50["quick_gelu"] and rn50["text"] == ["QuickGELU"] and rn50["visual"] == ["ReLU"]
    # ViT-B-32: both transformers QuickGELU, no GELU anywhere.
    assert vit["quick_gelu"] and vit["text"] == ["QuickGELU"] and vit["visual"] == ["QuickGELU"]


def test_real_commands_on_rn50_openai(published_hf_home, tmp_path: Path) -> None:
    """One training step, eval --zero-shot, tag --zero-shot, taxonomy build --kmeans and eval of
    the trained checkpoint, all on RN50/openai at its own 224 px, each building QuickGELU."""
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.taxonomy import load_taxonomy

    world = tmp_path / "world"
    generate_demo_world(world, n_images=4, seed=0)
    tax = world / "taxonomy.yaml"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(load_taxonomy(tax).label_names) + "\n")
    images, split, run = world / "images", tmp_path / "split", tmp_path / "run"
    steps = [
        {"cli": ["split", str(world / "annotations.csv"), "-t", str(tax), "-o", str(split), "--val-fraction", "0.5"]},
        {
            "cli": [
                "train",
                "--split",
                str(split),
                "--images",
                str(images),
                "--out",
                str(run),
                "-t",
                str(tax),
                "--clip-model",
                "RN50",
                "--pretrained",
                "openai",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--workers",
                "0",
                "--device",
                "cpu",
                "--json",
            ]
        },
        {
            "cli": [
                "eval",
                "--checkpoint",
                str(run),
                "--data",
                str(split / "val.csv"),
                "--images",
                str(images),
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "trained.json"),
            ]
        },
        {
            "cli": [
                "eval",
                "--zero-shot",
                "-t",
                str(tax),
                "--clip-model",
                "RN50",
                "--pretrained",
                "openai",
                "--data",
                str(split / "val.csv"),
                "--images",
                str(images),
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "zero.json"),
            ]
        },
        {
            "cli": [
                "tag",
                str(images),
                "--out",
                str(tmp_path / "tags.csv"),
                "--zero-shot",
                "-t",
                str(tax),
                "--clip-model",
                "RN50",
                "--pretrained",
                "openai",
                "--workers",
                "0",
                "--device",
                "cpu",
                "--batch-size",
                "2",
            ]
        },
        {
            "cli": [
                "taxonomy",
                "build",
                "--kmeans",
                str(labels),
                "-k",
                "3",
                "-o",
                str(tmp_path / "km.yaml"),
                "--clip-model",
                "RN50",
                "--pretrained",
                "openai",
            ]
        },
    ]
    results = drive(published_hf_home["home"], steps, tmp_path)
    print({r["step"]["cli"][0]: round(r["seconds"], 1) for r in results})
    for r in results[1:]:
        assert r["builds"], f"{r['step']['cli'][0]} built no CLIP model"
        for b in r["builds"]:
            assert b["text"] == ["QuickGELU"], (r["step"]["cli"][:2], b)
    trained = [b for r in results[1:3] for b in r["builds"]]
    # train and the checkpoint's eval: the published tag (eval rebuilds from the recorded build).
    assert all((b["model"], b["pretrained"]) == ("RN50", "openai") for b in trained)
    summary = json.loads(results[1]["stdout"])
    assert len(summary["epochs"]) == 1 and summary["epochs"][0]["train_loss"] == summary["epochs"][0]["train_loss"]
    import torch

    best = torch.load(run / "best.ckpt", weights_only=True, map_location="cpu")
    assert best["clip_build"] == {"quick_gelu": True} and best["frozen_text"] is None
    assert json.loads((tmp_path / "zero.json").read_text())["images"] == 2
    rows = (tmp_path / "tags.csv").read_text().splitlines()
    assert rows[0].startswith("path,") and len(rows) == 1 + 4
    assert "group_features" in (tmp_path / "km.yaml").read_text()
