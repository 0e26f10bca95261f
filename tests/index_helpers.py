"""Helpers for the index/search tests: fake ``hspnet tag`` outputs and a CLI with the new commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hspnet_cli.tagsfile.writer import OutputPaths
import typer

MODEL = "zero-shot hspnet-tiny/random"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered(n: int, dim: int = 32, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim)))


def write_tags(csv_path: Path, vecs: np.ndarray, paths: list[str] | None = None, model: str = MODEL,
               images_dir: Path | None = None, failed: list[tuple[str, str]] | None = None,
               fingerprint: dict | None = None) -> Path:
    """Write tags.csv, tags.emb.f32, tags.failed.csv and tags.manifest.json as hspnet tag does
    (the manifest holds the facts the index reads, in the tagger's layout)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    out = OutputPaths.for_out(csv_path)
    paths = paths if paths is not None else [f"img/{i:05d}.jpg" for i in range(len(vecs))]
    lines = ["path,tags,scores,groups"] + [f'{p},dog,0.9,animals' for p in paths]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out.emb.write_bytes(np.asarray(vecs, dtype="<f4").tobytes())
    out.failed.write_text("path,error\n" + "".join(f"{p},{e}\n" for p, e in failed or []), encoding="utf-8")
    images = str((images_dir or csv_path.parent / "images").absolute())
    out.manifest.write_text(json.dumps({
        "format": "hspnet-tags", "version": 1, "complete": True, "model": {"scorer": model},
        "embedding": {"file": out.emb.name, "dim": int(vecs.shape[1])},
        "files": {"tags": csv_path.name, "failed": out.failed.name, "embeddings": out.emb.name},
        "fingerprint": {"scorer": model, "labels": ["dog"], "thresholds": [0.5], "top_k": 0, "format": "csv",
                        "images_dir": images, **(fingerprint or {})},
        "options": {"images_dir": images}, "counts": {"items": len(paths) + len(failed or []), "rows": len(paths),
                                                      "failed": len(failed or [])}}), encoding="utf-8")
    return csv_path


def cli() -> typer.Typer:
    """The hspnet root group with the index and search commands (until cli.py registers them)."""
    from hspnet_cli.cli import _Root
    from hspnet_cli.commands import index_cmd, search_cmd

    app = typer.Typer(cls=_Root, pretty_exceptions_enable=False)
    app.add_typer(index_cmd.app, name="index")
    app.command("search")(search_cmd.search)
    return app


def run(*args) -> "typer.testing.Result":  # type: ignore[name-defined]
    from typer.testing import CliRunner

    return CliRunner().invoke(cli(), [str(a) for a in args], catch_exceptions=False)
