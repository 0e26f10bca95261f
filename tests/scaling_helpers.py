"""Shared by the scaling-out tests (Parquet output, object storage, tar shards, Ray): a tiny
trained model exported to one file (so every process, Ray actors included, loads the same
weights), a CLI runner in a subprocess, and Parquet read-back helpers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HSPNET = [sys.executable, "-m", "hspnet_cli"]


@pytest.fixture(scope="session")
def tiny_model(demo_split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained one epoch on the demo split, exported to ``model.pt``."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train import tiny

    from hspnet_cli.scoring.export import export_model
    from hspnet_cli.train.loop import train

    out = tmp_path_factory.mktemp("scaling-model")
    train(
        demo_split["split"],
        demo_split["images"],
        out / "run",
        tiny(**{"train.epochs": 1}),
        taxonomy=demo_split["taxonomy"],
        device="cpu",
    )
    return export_model(out / "run" / "best.ckpt", out / "model.pt")


def hspnet(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (this checkout's code first on the path)."""
    full = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    return subprocess.run([*HSPNET, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout)


def read_parts(folder: Path) -> dict[str, np.ndarray]:
    """key -> probs of every row of a Parquet tag folder (asserting each key appears once)."""
    import pyarrow.dataset as ds

    table = ds.dataset(folder, format="parquet").to_table(columns=["key", "probs"])
    keys = table.column("key").to_pylist()
    assert len(keys) == len(set(keys)), "a key appears more than once"
    probs = table.column("probs").to_pylist()
    return {k: np.asarray(p, np.float32) for k, p in zip(keys, probs)}


def pack_shards(images: list[Path], out_dir: Path, per_shard: int) -> list[Path]:
    """Write ``images`` as webdataset-style tars ``000000.tar``... (``KEY.png`` + ``KEY.json``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(images), per_shard):
        path = out_dir / f"{s // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for img in images[s : s + per_shard]:
                tar.add(img, arcname=img.name)
                meta = b'{"source": "demo"}'
                info = tarfile.TarInfo(img.stem + ".json")
                info.size = len(meta)
                tar.addfile(info, io.BytesIO(meta))
        shards.append(path)
    return shards
