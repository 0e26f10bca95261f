"""``hspnet demo run``: every stage that exists, end to end, on a fresh demo world.

Each stage calls the same importable function its own command calls, so the demo is a real
run of the toolkit, not a separate code path. Later stages (split, train, eval, tag, search)
join here as they are built.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.demo.loop_stages import audit_stage, dedup_stage, label_studio_stage, select_stage
from hspnet_cli.demo.results import DemoSummary, StageResult

DEMO_MARKER = "demo-run.json"
TINY_MODEL = "hspnet-tiny"


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{out_dir}: is not empty; pass --overwrite to replace an earlier demo run there")
        if not (out_dir / DEMO_MARKER).exists():
            raise UserError(
                f"{out_dir}: is not empty and holds no earlier demo run ({DEMO_MARKER} missing); "
                "choose an empty or new folder"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def run_demo(
    out_dir: str | Path,
    n_images: int = 2000,
    seed: int = 0,
    overwrite: bool = False,
    epochs: int | None = None,
    on_stage: Callable[[StageResult], None] | None = None,
    progress: Callable[[str, int], Any] | None = None,
) -> DemoSummary:
    """Run every available stage on a freshly generated demo world.

    Args:
        out_dir: Folder for everything the demo writes (world, taxonomies, summary).
        n_images: Images in the generated world.
        seed: Seed of the world (and of seeded stages).
        overwrite: Replace an earlier demo run in ``out_dir``.
        epochs: Training epochs (default: the ``demo`` preset's).
        on_stage: Called after each stage (the CLI prints progress with it).
        progress: Progress-bar factory passed to training (see :func:`hspnet_cli.train.loop.train`).

    Returns:
        The summary; also written to ``out_dir/demo-run.json``.
    """
    from hspnet_cli.core.locks import output_lock

    out_dir = Path(out_dir)
    with output_lock(out_dir, "demo folder"):
        return _run_demo(out_dir, n_images, seed, overwrite, epochs, on_stage, progress)


def _run_demo(
    out_dir: Path,
    n_images: int,
    seed: int,
    overwrite: bool,
    epochs: int | None,
    on_stage: Callable[[StageResult], None] | None,
    progress: Callable[[str, int], Any] | None,
) -> DemoSummary:
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.model.clip_models import label_encoder
    from hspnet_cli.taxonomy import load_taxonomy
    from hspnet_cli.taxonomy.build import build_taxonomy

    _prepare_out_dir(out_dir, overwrite)
    summary = DemoSummary(out_dir=out_dir)

    def record(stage: StageResult) -> None:
        summary.stages.append(stage)
        if on_stage is not None:
            on_stage(stage)

    start = time.perf_counter()
    world_dir = out_dir / "world"
    world = generate_demo_world(world_dir, n_images=n_images, seed=seed, workers=min(2, os.cpu_count() or 1))
    record(
        StageResult(
            "demo data",
            f"{world.n_images} images, {world_dir}",
            time.perf_counter() - start,
            {"images": world.n_images, "mean_labels_per_image": round(world.mean_labels_per_image, 3)},
        )
    )

    start = time.perf_counter()
    truth = load_taxonomy(world_dir / "taxonomy.yaml")
    record(
        StageResult(
            "taxonomy show",
            f"{truth.num_labels} labels in {truth.num_groups} groups",
            time.perf_counter() - start,
            {"labels": truth.num_labels, "groups": truth.num_groups},
        )
    )

    start = time.perf_counter()
    built = build_taxonomy(
        world_dir / "taxonomy.yaml",
        out_dir / "taxonomy.wordnet.yaml",
        "wordnet",
        n_groups=truth.num_groups,
        reference=world_dir / "taxonomy.yaml",
    )
    cmp = built.comparison
    assert cmp is not None
    record(
        StageResult(
            "taxonomy build --wordnet",
            f"{built.taxonomy.num_groups} groups; vs truth ARI {cmp.ari:.3f} NMI {cmp.nmi:.3f}",
            time.perf_counter() - start,
            {"ari": round(cmp.ari, 4), "nmi": round(cmp.nmi, 4)},
        )
    )

    start = time.perf_counter()
    built = build_taxonomy(
        world_dir / "taxonomy.yaml",
        out_dir / "taxonomy.kmeans.yaml",
        "kmeans",
        k=truth.num_groups,
        encoder=label_encoder(TINY_MODEL, "none", seed=seed),
        seed=seed,
        reference=world_dir / "taxonomy.yaml",
    )
    cmp = built.comparison
    assert cmp is not None
    record(
        StageResult(
            "taxonomy build --kmeans",
            f"{built.taxonomy.num_groups} groups; vs truth ARI "
            f"{cmp.ari:.3f} (random text encoder: no semantic signal expected)",
            time.perf_counter() - start,
            {"ari": round(cmp.ari, 4), "nmi": round(cmp.nmi, 4), "encoder": f"{TINY_MODEL}/random"},
        )
    )

    _split_and_train(out_dir, world_dir, n_images, seed, epochs, record, progress)
    label_studio_stage(out_dir, record)
    select_stage(out_dir, seed, record)
    write_text_atomic(out_dir / DEMO_MARKER, json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _split_and_train(
    out_dir: Path,
    world_dir: Path,
    n_images: int,
    seed: int,
    epochs: int | None,
    record: Callable[[StageResult], None],
    progress: Callable[[str, int], Any] | None,
) -> None:
    """Stages split (single-positive, 20% validation, a held-out test fifth) and train."""
    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.train.loop import train

    start = time.perf_counter()
    # The world's last fifth is held out as the test set: every image is drawn independently,
    # and a single images folder keeps one root for train, val and test paths.
    lines = (world_dir / "annotations.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    n_test = max(1, len(rows) // 5)
    write_text_atomic(out_dir / "trainval.csv", header + "".join(rows[:-n_test]))
    write_text_atomic(out_dir / "test.csv", header + "".join(rows[-n_test:]))
    split = make_split(
        out_dir / "trainval.csv",
        world_dir / "taxonomy.yaml",
        out_dir / "split",
        test_path=out_dir / "test.csv",
        options=SplitOptions(mode="single-positive", val_fraction=0.2, seed=seed),
    )
    counts = {name: part["images"] for name, part in split.summary["splits"][0]["counts"].items()}
    record(
        StageResult(
            "split --mode single-positive",
            ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            time.perf_counter() - start,
            {"images": counts},
        )
    )

    start = time.perf_counter()
    config = load_preset("demo")
    changes: dict[str, Any] = {"train.seed": seed}
    if epochs is not None:
        changes["train.epochs"] = epochs
    config = apply_overrides(config, changes)
    on_epoch = None
    if progress is not None:  # not --quiet: in a log (make demo > log) one plain line per epoch
        from hspnet_cli.core.console import console, say
        from hspnet_cli.train.progress import epoch_line

        if not console.is_terminal:
            on_epoch = lambda rec: say(epoch_line(rec, config.train.epochs), highlight=False, soft_wrap=True)  # noqa: E731
    result = train(
        out_dir / "split",
        world_dir / "images",
        out_dir / "run",
        config,
        taxonomy=world_dir / "taxonomy.yaml",
        device="auto",
        progress=progress,
        on_epoch=on_epoch,
    )
    record(
        StageResult(
            "train",
            f"{config.model.method} on {config.model.clip_model} (random init), {config.train.epochs} epochs: "
            f"val mAP {result.best_map:.3f} vs label-frequency baseline {result.baseline_map:.3f}",
            time.perf_counter() - start,
            {
                "val_map": round(result.best_map, 4),
                "label_frequency_baseline_map": round(result.baseline_map, 4),
                "best_epoch": result.best_epoch,
                "best_source": result.best_source,
                "epochs": config.train.epochs,
                "model": f"{config.model.clip_model}/random",
                "run_dir": str(out_dir / "run"),
            },
        )
    )
    _evaluate(out_dir, world_dir, record)


def _evaluate(out_dir: Path, world_dir: Path, record: Callable[[StageResult], None]) -> None:
    """Stage eval: the best checkpoint on the held-out test split, with its pictures."""
    from hspnet_cli.data.split_io import read_split_csv
    from hspnet_cli.evaluation.evaluate import evaluate_scores, score_split
    from hspnet_cli.evaluation.plots import write_plots
    from hspnet_cli.scoring.scorer import load_scorer

    start = time.perf_counter()
    scorer = load_scorer(out_dir / "run" / "best.ckpt")
    labels = read_split_csv(out_dir / "split" / "test.csv", scorer.taxonomy)
    logits, targets = score_split(scorer, labels, world_dir / "images")
    report = evaluate_scores(logits, targets, scorer.taxonomy)
    # F1 at 0.5 next to F1 at the thresholds training fitted on validation (what tag uses).
    fitted = (
        evaluate_scores(logits, targets, scorer.taxonomy, threshold=scorer.thresholds.cpu().numpy())
        if scorer.thresholds is not None
        else None
    )
    cf1 = {
        "test_cf1_at_0.5": round(report.at_threshold.cf1, 4),
        "test_cf1_fitted": round(fitted.at_threshold.cf1, 4) if fitted is not None else None,
    }
    write_text_atomic(out_dir / "eval" / "test-metrics.json", json.dumps(report.to_dict(), indent=2) + "\n")
    plots = write_plots(
        out_dir / "eval" / "plots",
        report,
        logits,
        targets,
        scorer.label_features.cpu().numpy(),
        title="demo: best.ckpt on the held-out test split",
    )
    record(
        StageResult(
            "eval (test split)",
            f"mAP {report.map:.3f}, group mAP {report.group_map:.3f}, "
            f"top-{report.top_k} precision {report.top_k_precision:.3f}; CF1 {cf1['test_cf1_fitted']} at the "
            f"fitted thresholds vs {cf1['test_cf1_at_0.5']} at 0.5; plots in {out_dir / 'eval' / 'plots'}",
            time.perf_counter() - start,
            {
                "test_map": round(report.map, 4),
                "test_group_map": round(report.group_map, 4),
                **cf1,
                "plots": [str(p) for p in plots],
            },
        )
    )
    audit_stage(out_dir, world_dir, labels, logits, record)
    _tag_index_search(out_dir, world_dir, scorer, record)


def _tag_index_search(out_dir: Path, world_dir: Path, scorer: Any, record: Callable[[StageResult], None]) -> None:
    """Stages tag (every world image), index build and a search by example."""
    from hspnet_cli.index.build import build_index
    from hspnet_cli.index.search import run_search
    from hspnet_cli.tagging.run import tag_images

    start = time.perf_counter()
    tagged = tag_images(world_dir / "images", out_dir / "tags" / "tags.csv", scorer, progress=False)
    record(
        StageResult(
            "tag",
            f"{tagged.rows} images tagged, {tagged.failed} failed, {tagged.images_per_second:.0f} images/s",
            time.perf_counter() - start,
            {
                "rows": tagged.rows,
                "failed": tagged.failed,
                "images_per_second": round(tagged.images_per_second, 1),
                "thresholds": tagged.threshold_source,
            },
        )
    )
    dedup_stage(out_dir, record)
    start = time.perf_counter()
    facts = build_index(out_dir / "tags" / "tags.csv", out_dir / "tags" / "tags.faiss")
    record(
        StageResult(
            "index build",
            f"{facts.get('count')} vectors, {facts.get('factory')}",
            time.perf_counter() - start,
            {"count": facts.get("count"), "factory": facts.get("factory")},
        )
    )
    start = time.perf_counter()
    first = next(iter((out_dir / "tags" / "tags.csv").read_text(encoding="utf-8").splitlines()[1:]), "").split(",")[0]
    _, hits, _ = run_search(out_dir / "tags" / "tags.faiss", like=first, k=5)
    record(
        StageResult(
            "search --like",
            f"5 nearest to {first}: " + ", ".join(h.path for h in hits),
            time.perf_counter() - start,
            {"query": first, "hits": [h.path for h in hits]},
        )
    )
    _text_search(out_dir, world_dir, scorer, record)


def _text_search(
    out_dir: Path, world_dir: Path, scorer: Any, record: Callable[[StageResult], None], k: int = 10
) -> None:
    """Stage search --text: every label name as a query, precision@k against the true labels.

    A label name is answered with the trained model's label feature (the text tower of the
    demo model is random, so free text would find nothing meaningful); the figure to compare is
    each label's share of the images, what a random pick of k images would score.
    """
    from hspnet_cli.index.search import search, text_query
    from hspnet_cli.index.store import load_index

    start = time.perf_counter()
    idx = load_index(out_dir / "tags" / "tags.faiss")
    truth: dict[str, set[str]] = {}
    with open(world_dir / "annotations.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            truth[row["image"]] = set(filter(None, row["labels"].split(";")))
    precision, base = [], []
    example: list[str] = []
    for name in scorer.taxonomy.label_names:
        hits = search(idx, text_query(idx, scorer, name)[0], k)
        precision.append(sum(name in truth.get(h.path, set()) for h in hits) / max(len(hits), 1))
        base.append(sum(name in labels for labels in truth.values()) / max(len(truth), 1))
        if not example:
            example = [h.path for h in hits[:3]]
    p_mean, b_mean = sum(precision) / len(precision), sum(base) / len(base)
    first = scorer.taxonomy.label_names[0]
    record(
        StageResult(
            "search --text",
            f"each of {len(precision)} label names: precision@{k} {p_mean:.2f} vs "
            f"{b_mean:.2f} by chance; '{first}' -> " + ", ".join(example),
            time.perf_counter() - start,
            {
                "k": k,
                "mean_precision_at_k": round(p_mean, 4),
                "mean_label_rate": round(b_mean, 4),
                "precision_at_k": {n: round(p, 4) for n, p in zip(scorer.taxonomy.label_names, precision)},
                "example_query": first,
                "example_hits": example,
            },
        )
    )
