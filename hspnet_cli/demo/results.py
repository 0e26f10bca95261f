"""What the demo measured: one result per stage, and the whole summary ``--json`` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    """One stage of the demo: its name, a one-line result and the seconds it took."""

    name: str
    result: str
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoSummary:
    """Everything the demo measured; ``to_dict`` is what ``--json`` writes."""

    out_dir: Path
    stages: list[StageResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "stages": [
                {"name": s.name, "result": s.result, "seconds": round(s.seconds, 3), **s.figures} for s in self.stages
            ],
        }
