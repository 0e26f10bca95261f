"""Shared fixtures: paths, a CLI runner, and real CLIP features for the VOC labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def voc_clip_features() -> np.ndarray:
    """(20, 24) features whose Gram matrix is the real RN50 similarity of the VOC labels."""
    sim = np.load(DATA / "clip-rn50-voc-similarity.npy").astype(np.float64)
    vals, vecs = np.linalg.eigh(sim)
    feats = vecs * np.sqrt(np.clip(vals, 0, None))
    assert np.abs(feats @ feats.T - sim).max() < 1e-5
    return feats[:20]


def invoke(runner: CliRunner, *args: str):
    """Run ``hspnet ARGS`` in-process and return the result (stdout and stderr kept apart)."""
    from hspnet_cli.cli import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
