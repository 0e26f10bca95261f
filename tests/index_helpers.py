"""Helpers for the index/search tests: fake ``hspnet tag`` outputs and a CLI with the new commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from hspnet_cli.tagsfile.factory import write_tag_output

MODEL = "zero-shot hspnet-tiny/random"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered(n: int, dim: int = 32, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim)))


def write_tags(
    csv_path: Path,
    vecs: np.ndarray,
    paths: list[str] | None = None,
    model: str = MODEL,
    images_dir: Path | None = None,
    failed: list[tuple[str, str]] | None = None,
    fingerprint: dict | None = None,
) -> Path:
    """A finished tag output as hspnet tag writes it (the tags format's own factory): every image
    tagged 'dog' (group 'animals') at 0.9, with these embeddings."""
    paths = paths if paths is not None else [f"img/{i:05d}.jpg" for i in range(len(vecs))]
    write_tag_output(
        csv_path,
        paths,
        np.full((len(paths), 1), 0.9, np.float32),
        np.asarray(vecs, np.float32),
        labels=["dog"],
        groups={"animals": ["dog"]},
        images_dir=images_dir or csv_path.parent / "images",
        scorer=model,
        failures=failed or [],
        fingerprint=fingerprint,
    )
    return csv_path


def cli() -> typer.Typer:
    """The hspnet root group with the index and search commands (until cli.py registers them)."""
    from hspnet_cli.cli import _Root
    from hspnet_cli.commands import index_cmd, search_cmd

    app = typer.Typer(cls=_Root, pretty_exceptions_enable=False)
    app.add_typer(index_cmd.app, name="index")
    app.command("search")(search_cmd.search)
    return app


def run(*args) -> typer.testing.Result:  # type: ignore[name-defined]
    from typer.testing import CliRunner

    return CliRunner().invoke(cli(), [str(a) for a in args], catch_exceptions=False)
