"""Training (``hspnet train``): the loop, batches, optimiser and EMA, the distributed runtime and
per-epoch reporting. Only commands and the demo import this room."""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this room that defines it (imported on first use, so
# importing the room stays cheap: nothing heavy loads until a name is used).
_EXPORTS = {
    "EpochRecord": "results",
    "train": "loop",
    "TrainResult": "results",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
