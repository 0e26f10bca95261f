"""What a generated demo world holds: label counts and group co-occurrence statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.taxonomy.core import Taxonomy


@dataclass
class DemoWorldSummary:
    """What :func:`generate_demo_world` wrote.

    Attributes:
        out_dir: The world's folder.
        n_images: Number of images.
        image_size: Image side in pixels.
        seed: World seed.
        label_counts: Label name -> number of images showing it, in taxonomy order.
        mean_labels_per_image: Average number of distinct labels per image.
        within_group_cooccurrence: Mean number of images shared by two labels of the same group.
        across_group_cooccurrence: Mean number of images shared by two labels of different groups.
        cooccurrence_ratio: within / across (> 1: groups co-occur, as in real data).
        seconds: Wall time of the generation.
    """

    out_dir: Path
    n_images: int
    image_size: int
    seed: int
    label_counts: dict[str, int] = field(default_factory=dict)
    mean_labels_per_image: float = 0.0
    within_group_cooccurrence: float = 0.0
    across_group_cooccurrence: float = 0.0
    cooccurrence_ratio: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (what ``hspnet demo data --json`` prints)."""
        return {
            "out_dir": str(self.out_dir),
            "n_images": self.n_images,
            "image_size": self.image_size,
            "seed": self.seed,
            "label_counts": dict(self.label_counts),
            "mean_labels_per_image": round(self.mean_labels_per_image, 4),
            "within_group_cooccurrence": round(self.within_group_cooccurrence, 4),
            "across_group_cooccurrence": round(self.across_group_cooccurrence, 4),
            "cooccurrence_ratio": round(self.cooccurrence_ratio, 4),
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """A short human-readable report, one fact a line."""
        counts = ", ".join(f"{name} {count}" for name, count in self.label_counts.items())
        return [
            f"demo world: {self.n_images} images of {self.image_size} px (seed {self.seed}) "
            f"in {self.out_dir} ({self.seconds:.1f} s)",
            f"labels per image: {self.mean_labels_per_image:.2f} on average",
            f"label counts: {counts}",
            f"co-occurrence per label pair: within group {self.within_group_cooccurrence:.1f}, "
            f"across groups {self.across_group_cooccurrence:.1f} (ratio {self.cooccurrence_ratio:.2f})",
        ]


def cooccurrence_stats(label_sets: list[tuple[str, ...]], taxonomy: Taxonomy) -> tuple[float, float]:
    """Mean co-occurrence count of label pairs within a group and across groups.

    Args:
        label_sets: The labels of each image.
        taxonomy: Gives label order and groups.

    Returns:
        ``(within, across)``: the mean, over unordered pairs of distinct labels of the same
        group (resp. of different groups), of the number of images showing both.
    """
    y = np.zeros((len(label_sets), taxonomy.num_labels), dtype=np.float64)
    for row, labels in enumerate(label_sets):
        y[row, [taxonomy.label_index(name) for name in labels]] = 1.0
    co = y.T @ y
    group = taxonomy.group_index()
    upper = np.triu(np.ones_like(co, dtype=bool), k=1)
    same = group[:, None] == group[None, :]
    within, across = co[upper & same], co[upper & ~same]
    return (float(within.mean()) if within.size else 0.0, float(across.mean()) if across.size else 0.0)


def summarise(
    out_dir: Path, n_images: int, image_size: int, seed: int, label_sets: list[tuple[str, ...]], taxonomy: Taxonomy
) -> DemoWorldSummary:
    """Counts and co-occurrence statistics of a generated world."""
    counts = {name: 0 for name in taxonomy.label_names}
    for labels in label_sets:
        for name in labels:
            counts[name] += 1
    within, across = cooccurrence_stats(label_sets, taxonomy)
    return DemoWorldSummary(
        out_dir=out_dir,
        n_images=n_images,
        image_size=image_size,
        seed=seed,
        label_counts=counts,
        mean_labels_per_image=sum(len(s) for s in label_sets) / n_images,
        within_group_cooccurrence=within,
        across_group_cooccurrence=across,
        cooccurrence_ratio=within / across if across else math.inf,
    )
