"""The demo world: generated multi-label images with a known hierarchy, and the demo pipeline."""

from __future__ import annotations

from typing import Any

__all__ = ["run_demo"]


def __getattr__(name: str) -> Any:
    if name == "run_demo":  # the pipeline imports torch; the package alone does not
        from hspnet_cli.demo.pipeline import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
