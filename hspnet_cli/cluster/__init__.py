"""``hspnet tag --engine ray``: the block plan of :mod:`hspnet_cli.tagging.blocks` run as a Ray
Data pipeline (see :mod:`hspnet_cli.cluster.ray_engine`). Ray is imported only when used."""

from __future__ import annotations

from typing import Any


def run_ray(*args: Any, **kwargs: Any) -> int:
    """See :func:`hspnet_cli.cluster.ray_engine.run_ray`."""
    from hspnet_cli.cluster.ray_engine import run_ray as run

    return run(*args, **kwargs)


__all__ = ["run_ray"]
