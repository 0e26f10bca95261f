"""``hspnet demo run``: every stage that exists, end to end, on a fresh demo world.

Each stage calls the same importable function its own command calls, so the demo is a real
run of the toolkit, not a separate code path. Later stages (split, train, eval, tag, search)
join here as they are built.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hspnet_cli.errors import UserError
from hspnet_cli.io_utils import write_text_atomic

DEMO_MARKER = "demo-run.json"
TINY_MODEL = "hspnet-tiny"


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
            "stages": [{"name": s.name, "result": s.result, "seconds": round(s.seconds, 3), **s.figures}
                       for s in self.stages],
        }


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{out_dir}: is not empty; pass --overwrite to replace an earlier demo run there")
        if not (out_dir / DEMO_MARKER).exists():
            raise UserError(f"{out_dir}: is not empty and holds no earlier demo run ({DEMO_MARKER} missing); "
                            "choose an empty or new folder")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def run_demo(out_dir: str | Path, n_images: int = 600, seed: int = 0, overwrite: bool = False,
             on_stage: Callable[[StageResult], None] | None = None) -> DemoSummary:
    """Run every available stage on a freshly generated demo world.

    Args:
        out_dir: Folder for everything the demo writes (world, taxonomies, summary).
        n_images: Images in the generated world.
        seed: Seed of the world (and of seeded stages).
        overwrite: Replace an earlier demo run in ``out_dir``.
        on_stage: Called after each stage (the CLI prints progress with it).

    Returns:
        The summary; also written to ``out_dir/demo-run.json``.
    """
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.taxonomy import load_taxonomy
    from hspnet_cli.taxonomy.build import build_taxonomy
    from hspnet_cli.taxonomy.compare import compare_taxonomies

    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    summary = DemoSummary(out_dir=out_dir)

    def record(stage: StageResult) -> None:
        summary.stages.append(stage)
        if on_stage is not None:
            on_stage(stage)

    start = time.perf_counter()
    world_dir = out_dir / "world"
    world = generate_demo_world(world_dir, n_images=n_images, seed=seed)
    record(StageResult("demo data", f"{world.n_images} images, {world_dir}", time.perf_counter() - start,
                       {"images": world.n_images, "mean_labels_per_image": round(world.mean_labels_per_image, 3)}))

    start = time.perf_counter()
    truth = load_taxonomy(world_dir / "taxonomy.yaml")
    record(StageResult("taxonomy show", f"{truth.num_labels} labels in {truth.num_groups} groups",
                       time.perf_counter() - start, {"labels": truth.num_labels, "groups": truth.num_groups}))

    start = time.perf_counter()
    built = build_taxonomy(world_dir / "taxonomy.yaml", out_dir / "taxonomy.wordnet.yaml", "wordnet",
                           n_groups=truth.num_groups, reference=world_dir / "taxonomy.yaml")
    cmp = built.comparison
    assert cmp is not None
    record(StageResult("taxonomy build --wordnet", f"{built.taxonomy.num_groups} groups; vs truth ARI "
                       f"{cmp.ari:.3f} NMI {cmp.nmi:.3f}", time.perf_counter() - start,
                       {"ari": round(cmp.ari, 4), "nmi": round(cmp.nmi, 4)}))

    start = time.perf_counter()
    built = build_taxonomy(world_dir / "taxonomy.yaml", out_dir / "taxonomy.kmeans.yaml", "kmeans",
                           k=truth.num_groups, model=TINY_MODEL, pretrained="none", seed=seed,
                           reference=world_dir / "taxonomy.yaml")
    cmp = built.comparison
    assert cmp is not None
    record(StageResult("taxonomy build --kmeans", f"{built.taxonomy.num_groups} groups; vs truth ARI "
                       f"{cmp.ari:.3f} (random text encoder: no semantic signal expected)",
                       time.perf_counter() - start, {"ari": round(cmp.ari, 4), "nmi": round(cmp.nmi, 4),
                                                     "encoder": f"{TINY_MODEL}/random"}))

    write_text_atomic(out_dir / DEMO_MARKER, json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary
