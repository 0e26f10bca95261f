"""Loading CLIP models: tiny random configs, local checkpoints, and clear errors offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hspnet_cli.core.errors import UserError
from hspnet_cli.model.clip_models import encode_texts, load_clip


def test_tiny_random_model_is_marked_random_and_encodes_unit_features() -> None:
    clip = load_clip("hspnet-tiny", "none")
    assert clip.is_random and clip.description == "hspnet-tiny/random"
    feats = encode_texts(clip, ["a photo of a cat.", "a photo of a dog.", "a photo of a car."], batch_size=2)
    assert feats.shape == (3, clip.embed_dim) == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(feats[0], feats[1])


def test_local_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = load_clip("hspnet-tiny-rn", "none")
    path = tmp_path / "tiny.pt"
    torch.save(first.model.state_dict(), path)
    again = load_clip("hspnet-tiny-rn", str(path))
    assert again.pretrained == str(path) and not again.is_random
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    texts = ["a photo of a circle."]
    np.testing.assert_allclose(encode_texts(first, texts), encode_texts(again, texts), atol=1e-6)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(load_clip("hspnet-tiny", "none").model.state_dict(), path)
    with pytest.raises(UserError, match="do not fit model hspnet-tiny-rn"):
        load_clip("hspnet-tiny-rn", str(path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable CLIP checkpoint"):
        load_clip("hspnet-tiny", str(garbage))


def test_unknown_model_and_tag() -> None:
    with pytest.raises(UserError, match="unknown model 'RN05'. Did you mean"):
        load_clip("RN05", "none")
    with pytest.raises(UserError, match="no pretrained weights 'opneai' for model RN50"):
        load_clip("RN50", "opneai")


def test_default_pretrained_weights_offline_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real default path (RN50 + openai): without network it must fail and say how to get the
    # weights, not print a traceback. The hub's offline switch makes it fail at once instead of
    # retrying for ~45 s (huggingface_hub reads HF_HUB_OFFLINE at import, so set its constant).
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="could not fetch pretrained weights 'openai' for RN50.*--pretrained FILE"):
        load_clip("RN50", "openai")
