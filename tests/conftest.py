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


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and a second busy process makes multi-threaded
    torch ops dozens of times slower (threads spin waiting for each other): use one."""
    import os

    import torch

    torch.set_num_threads(1)
    # hspnet train's thread rule honours OMP_NUM_THREADS (also in the subprocesses tests start).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def demo_split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small demo world (120 images) split single-positive with a 25% validation split."""
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world

    root = tmp_path_factory.mktemp("demo")
    generate_demo_world(root / "world", n_images=120, seed=0)
    make_split(
        root / "world" / "annotations.csv",
        root / "world" / "taxonomy.yaml",
        root / "split",
        options=SplitOptions(mode="single-positive", val_fraction=0.25, seed=0),
    )
    return {
        "world": root / "world",
        "images": root / "world" / "images",
        "split": root / "split",
        "taxonomy": root / "world" / "taxonomy.yaml",
    }
