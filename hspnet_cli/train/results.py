"""What a training run reports: one record per epoch, the best epoch so far, the run's result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hspnet_cli.train.thresholds import thresholds_line


@dataclass
class EpochRecord:
    """One line of ``metrics.jsonl``.

    Attributes:
        epoch: Epoch number, from 1.
        best_weights: ``raw`` or ``ema`` when this epoch's weights of that kind were saved as
            ``best.ckpt``; None otherwise.
    """

    epoch: int
    train_loss: float
    val_map_raw: float
    val_map_ema: float | None
    lr: float
    seconds: float
    images_per_second: float
    best: bool = False
    best_weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    """What a run achieved.

    Attributes:
        out_dir: The run folder.
        best_map: Best validation mAP (raw or EMA), NaN without a validation split.
        best_epoch: Epoch (from 1) of the best checkpoint; 0 when none was saved.
        best_source: ``raw`` or ``ema``.
        baseline_map: Validation mAP of the label-frequency baseline (every image scored by the
            training frequency of each label).
        history: Epoch records of this invocation (resumed runs: only the new epochs).
        step_losses: Loss of every optimisation step of this invocation, in order.
        is_main: False on the non-zero ranks of a torchrun job (whose figures are partial).
        threads: Intra-op CPU threads the run used.
        stopped_early: True when ``train.patience`` epochs passed without a better validation mAP.
        thresholds: The per-label thresholds fitted for the kept checkpoint by this invocation
            (:mod:`hspnet_cli.train.thresholds`), None when uncalibrated or nothing was kept.
    """

    out_dir: Path
    best_map: float
    best_epoch: int
    best_source: str
    baseline_map: float
    history: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    is_main: bool = True
    threads: int = 0
    stopped_early: bool = False
    thresholds: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "best_val_map": self.best_map,
            "best_epoch": self.best_epoch,
            "best_source": self.best_source,
            "label_frequency_baseline_map": self.baseline_map,
            "threads": self.threads,
            "stopped_early": self.stopped_early,
            "thresholds": thresholds_line(self.thresholds, self.out_dir),
            "epochs": [r.to_dict() for r in self.history],
        }


@dataclass
class Best:
    """The best epoch so far, as checkpoints store it (``best`` entry).

    Attributes:
        map: Its validation mAP (-1 before any epoch; NaN for runs without validation).
        epoch: Its number, from 1; 0 when none was saved yet.
        source: ``raw`` or ``ema``: which weights were kept.
    """

    map: float = -1.0
    epoch: int = 0
    source: str = "raw"

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "epoch": self.epoch, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Best:
        return cls(float(data["map"]), int(data["epoch"]), str(data.get("source", "raw")))
