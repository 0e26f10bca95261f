"""Training (``hspnet train``): the loop, batches, optimiser and EMA, the distributed runtime and
per-epoch reporting. Only commands and the demo import this room."""

from __future__ import annotations

from hspnet_cli.core.lazy import lazy_exports

# Public name -> the module of this room that defines it (imported on first use).
_EXPORTS = {
    "EpochRecord": "results",
    "train": "loop",
    "TrainResult": "results",
}
__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
