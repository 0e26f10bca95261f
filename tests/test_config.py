"""Run configs: presets as data, overrides, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hspnet_cli.config import apply_overrides, config_to_yaml, list_presets, load_config, load_preset
from hspnet_cli.core.errors import UserError


def test_presets_encode_the_paper_vs_code_differences() -> None:
    assert {"official", "paper", "demo"} <= set(list_presets())
    official, paper = load_preset("official"), load_preset("paper")
    assert (official.model.meta_input, paper.model.meta_input) == ("refined", "raw")
    assert (official.model.gcn_shared, paper.model.gcn_shared) == (True, False)
    assert (official.model.gcn_residual, paper.model.gcn_residual) == ("gamma", "add")
    assert (official.model.logit_scale, paper.model.logit_scale) == ("fixed", "learned")
    assert (official.train.augment, paper.train.augment) == ("none", "flip_crop")
    assert official.train.schedule_epochs == 80 and paper.train.schedule_epochs is None
    assert official.model.clip_model == "RN50" and official.model.pretrained == "openai"


def test_config_file_overrides_its_preset(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preset: paper\nmodel:\n  n_ctx: 8\ntrain:\n  lr: 1e-3\n  loss_options: {gamma: 1}\n")
    config = load_config(path)
    assert config.preset == "paper" and config.model.n_ctx == 8 and config.model.meta_input == "raw"
    assert config.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as text; the schema makes it a float
    assert config.train.loss_options == {"gamma": 1}
    again = apply_overrides(config, {"model.method": "spl", "train.epochs": 5, "train.schedule_epochs": None})
    assert again.model.method == "spl" and again.train.epochs == 5 and config.model.method == "hspnet"
    assert "meta_input: raw" in config_to_yaml(again)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  n_ctxx: 4\n", "unknown key(s) ['n_ctxx']"),
        ("modle:\n  n_ctx: 4\n", "unknown key(s) ['modle']"),
        ("model:\n  n_ctx: four\n", "model.n_ctx: expected int, got 'four'"),
        ("model:\n  method: coop\n", "model.method must be one of spl, spl_gcn, hcp, hspnet"),
        ("train:\n  epochs: 90\n", "train.schedule_epochs (80) must be >= train.epochs (90)"),
        ("preset: papper\n", "no preset 'papper'"),
        ("model: [1, 2]\n", "'model' must be a mapping"),
        ("model:\n  n_ctx: [4\n", "c.yaml:3: not valid YAML"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value)


def test_override_key_must_name_a_section() -> None:
    with pytest.raises(UserError, match="model.NAME or train.NAME"):
        apply_overrides(load_preset("official"), {"lr": 1.0})
