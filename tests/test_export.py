"""``hspnet export``: small inference models whose scores equal the full model's, without the text tower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import tiny
from typer.testing import CliRunner

from hspnet_cli.core.errors import UserError
from hspnet_cli.scoring.export import export_model
from hspnet_cli.scoring.model_file import file_kind, sidecar_path
from hspnet_cli.scoring.scorer import from_checkpoint, from_exported, load_scorer
from hspnet_cli.train.loop import train

# Names only the text tower has (the ViT image tower has its own "transformer." and "positional_embedding").
TEXT_NAMES = ("text.", "token_embedding", "ln_final", "text_projection", "frozen_text", "prompts.")


@pytest.fixture(scope="module")
def trained(demo_split, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained one epoch, its checkpoint, and a batch of real preprocessed images."""
    out = tmp_path_factory.mktemp("export") / "run"
    train(
        demo_split["split"],
        demo_split["images"],
        out,
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    full = from_checkpoint(out / "best.ckpt")
    from PIL import Image

    paths = sorted(demo_split["images"].rglob("*.png"))[:5]
    images = torch.stack([full.transform(Image.open(p).convert("RGB")) for p in paths])
    return {"ckpt": out / "best.ckpt", "full": full, "images": images, "scores": full(images)}


def _thresholds(path: Path, labels: list[str], **change) -> Path:
    table = {name: 0.1 * (i % 7) for i, name in enumerate(labels)}
    path.write_text(json.dumps({"format": "hspnet-thresholds", "labels": labels, "thresholds": {**table, **change}}))
    return path


def test_export_loads_without_open_clips_private_tower_builder(trained, tmp_path: Path, monkeypatch) -> None:
    """Should open_clip drop its private _build_vision_tower, exports still load (public CLIP class)."""
    from hspnet_cli.scoring import model_file as export

    out = export_model(trained["ckpt"], tmp_path / "model.pt")
    monkeypatch.setattr(export, "_private_vision_builder", lambda: None)
    scorer = load_scorer(out)
    torch.testing.assert_close(scorer(trained["images"]), trained["scores"], rtol=0, atol=1e-5)


def test_ckpt_export_scores_equal_and_has_no_text_tower(trained, tmp_path: Path) -> None:
    labels = trained["full"].taxonomy.label_names
    out = export_model(trained["ckpt"], tmp_path / "model.pt", thresholds=_thresholds(tmp_path / "t.json", labels))
    data = torch.load(out, weights_only=True)
    assert data["format"] == "hspnet-export" and data["format_version"] == 1 and data["labels"] == labels
    assert not [k for k in [*data, *data["visual"]] if any(name in k for name in TEXT_NAMES)] and "model" not in data
    # Exactly the image tower's weights, nothing else.
    assert set(data["visual"]) == set(trained["full"].image_encoder.state_dict())
    assert data["preprocessing"]["interpolation"] == "bicubic" and data["image_size"] == 64
    # The image tower's bytes plus little else; the training checkpoint adds prompts, meta-net,
    # graphs and the (random, so stored) text tower.
    tower = sum(t.numel() * t.element_size() for t in data["visual"].values())
    assert out.stat().st_size < tower + 64 * 1024
    assert out.stat().st_size < 0.6 * trained["ckpt"].stat().st_size

    scorer = load_scorer(out)
    assert scorer.text_encoder is None and scorer.taxonomy.label_names == labels
    torch.testing.assert_close(scorer(trained["images"]), trained["scores"], rtol=0, atol=1e-5)
    assert scorer.thresholds.tolist() == pytest.approx([0.1 * (i % 7) for i in range(len(labels))])
    assert scorer.facts["config"]["model"]["clip_model"] == "hspnet-tiny"
    # Same preprocessing: the export's transform gives the tensors the full model's gives.
    from PIL import Image

    img = Image.new("RGB", (90, 70), (200, 30, 60))
    torch.testing.assert_close(scorer.transform(img), trained["full"].transform(img))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_scores_equal(trained, tmp_path: Path) -> None:
    out = export_model(trained["ckpt"], tmp_path / "model.ts", fmt="torchscript")
    assert file_kind(out) == "torchscript"
    side = json.loads(sidecar_path(out).read_text())
    assert side["kind"] == "torchscript"
    # The thresholds training fitted on the (fully labelled) validation split travel along by default.
    fitted = torch.load(trained["ckpt"], weights_only=True)["thresholds"]["thresholds"]
    assert side["thresholds"] == pytest.approx(fitted) and side["thresholds_source"].startswith("calibrated per label")
    assert side["labels"] == trained["full"].taxonomy.label_names and side["preprocessing"]["center_crop"] == 64
    module = torch.jit.load(str(out))
    with torch.no_grad():
        torch.testing.assert_close(module(trained["images"]), trained["scores"], rtol=0, atol=1e-5)
        torch.testing.assert_close(module(trained["images"][:3]), trained["scores"][:3], rtol=0, atol=1e-5)
    scorer = from_exported(out)
    assert scorer.text_encoder is None
    torch.testing.assert_close(scorer(trained["images"]), trained["scores"], rtol=0, atol=1e-5)


def test_onnx_export(trained, tmp_path: Path) -> None:
    import onnx

    out = export_model(trained["ckpt"], tmp_path / "model.onnx", fmt="onnx")
    onnx.checker.check_model(str(out))
    assert file_kind(out) == "onnx" and json.loads(sidecar_path(out).read_text())["kind"] == "onnx"
    with pytest.raises(UserError, match="ONNX exports run in onnxruntime"):
        load_scorer(out)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": trained["images"].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(logits), trained["scores"], rtol=0, atol=1e-5)


def test_onnx_without_the_package_says_how_to_install(trained, tmp_path: Path, monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_onnx(name, *args, **kw):
        if name == "onnx":
            raise ImportError("no onnx")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(UserError, match="pip install onnx"):
        export_model(trained["ckpt"], tmp_path / "m.onnx", fmt="onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_bad_inputs_are_user_errors(trained, tmp_path: Path) -> None:
    labels = trained["full"].taxonomy.label_names
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps(
            {
                "format": "hspnet-thresholds",
                "labels": labels,
                "thresholds": {**{n: 0.5 for n in labels[:-1]}, "zebra": 0.5},
            }
        )
    )
    with pytest.raises(UserError, match=r"wrong.json: made for other labels .*'zebra'"):
        export_model(trained["ckpt"], tmp_path / "m.pt", thresholds=wrong)
    with pytest.raises(UserError, match=r"thresholds are probabilities in \[0, 1\]"):
        export_model(
            trained["ckpt"],
            tmp_path / "m.pt",
            thresholds=_thresholds(tmp_path / "n.json", labels, **{labels[0]: "high"}),
        )
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(UserError, match="junk.json: not valid JSON"):
        export_model(trained["ckpt"], tmp_path / "m.pt", thresholds=tmp_path / "junk.json")
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello")
    with pytest.raises(UserError, match="notes.txt: not a readable checkpoint"):
        export_model(not_ckpt, tmp_path / "m.pt")
    with pytest.raises(UserError, match="unknown export format 'tflite'"):
        export_model(trained["ckpt"], tmp_path / "m.pt", fmt="tflite")
    with pytest.raises(UserError, match="is the checkpoint being exported"):
        export_model(trained["ckpt"], trained["ckpt"])
    first = export_model(trained["ckpt"], tmp_path / "m.pt")
    with pytest.raises(UserError, match="is an exported model already"):
        export_model(first, tmp_path / "again.pt")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_cli_export(trained, tmp_path: Path) -> None:
    import typer

    from hspnet_cli.commands.export_cmd import export

    app = typer.Typer()
    app.command()(export)
    app.command("noop")(lambda: None)  # two commands: Typer keeps the command name
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(trained["ckpt"]),
            "-o",
            str(tmp_path / "m.ts"),
            "--format",
            "torchscript",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == "torchscript" and len(summary["files"]) == 2
