"""The demo's labeling-loop stages: audit after eval, dedup after tag, Label Studio tasks and the
next images to label, each through the importable function its own command calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hspnet_cli.demo.results import StageResult


def audit_stage(
    out_dir: Path, world_dir: Path, labels: Any, logits: Any, record: Callable[[StageResult], None]
) -> None:
    """Stage audit: likely label errors in the held-out test split, which best.ckpt never trained on.

    The demo's labels are the world's truth, so every finding is the model disagreeing with a
    correct label: the stage shows the mechanics (out-of-sample check, cleanlab, issues.csv,
    Label Studio tasks), not an error rate; benchmarks/audit_quality.py injects errors. The
    probabilities are the eval stage's (the same checkpoint on the same images), not scored twice.
    """
    from hspnet_cli.audit import AuditOptions, audit_labels
    from hspnet_cli.audit.insample import check_out_of_sample
    from hspnet_cli.evaluation.evaluate import sigmoid
    from hspnet_cli.taxonomy import load_taxonomy

    start = time.perf_counter()
    options = AuditOptions(to="label-studio", local_files_root=str(out_dir))
    ckpt = out_dir / "run" / "best.ckpt"
    origin = {"kind": "checkpoint", "checkpoint": str(ckpt), **check_out_of_sample(ckpt, labels, world_dir / "images")}
    facts = audit_labels(
        labels,
        sigmoid(logits),
        world_dir / "images",
        load_taxonomy(world_dir / "taxonomy.yaml"),
        out_dir / "audit" / "issues.csv",
        options,
        origin,
        source=str(out_dir / "split" / "test.csv"),
    )
    kinds = ", ".join(f"{k} {v}" for k, v in facts["by_kind"].items()) or "none"
    record(
        StageResult(
            "audit (test split)",
            f"{facts['flagged_images']} of {facts['images']} images flagged ({kinds}); "
            f"{out_dir / 'audit' / 'issues.csv'}",
            time.perf_counter() - start,
            {
                "images": facts["images"],
                "issues": facts["issues"],
                "by_kind": facts["by_kind"],
                "flagged_images": facts["flagged_images"],
                "files": facts["files"],
            },
        )
    )


def dedup_stage(out_dir: Path, record: Callable[[StageResult], None]) -> None:
    """Stage dedup: near-duplicate groups among the tagged images (the world draws every image
    independently, so few or none are expected; benchmarks/dedup_quality.py plants copies)."""
    from hspnet_cli.dedup import DedupOptions, run_dedup

    start = time.perf_counter()
    facts = run_dedup(out_dir / "tags" / "tags.csv", out_dir / "dedup" / "dups.csv", DedupOptions()).facts
    caution = f"; caution: {facts['warning']}" if facts.get("warning") else ""
    record(
        StageResult(
            "dedup",
            f"{facts['groups']} near-duplicate groups at {facts['threshold']} "
            f"({facts['non_keepers']} images to leave out: {facts['files']['exclude']}){caution}",
            time.perf_counter() - start,
            {
                "groups": facts["groups"],
                "non_keepers": facts["non_keepers"],
                "threshold": facts["threshold"],
                "effective_dimensions": facts["effective_dimensions"],
                "warning": facts["warning"],
                "files": facts["files"],
            },
        )
    )


def label_studio_stage(out_dir: Path, record: Callable[[StageResult], None]) -> None:
    """Stage export-labels: the world's tags as Label Studio tasks with pre-ticked predictions.

    Images are referenced through Label Studio's local file serving with the demo folder as
    its document root, so the tasks open as they are (see the stage's result line).
    """
    from hspnet_cli.labeltools import export_labels

    start = time.perf_counter()
    out = out_dir / "labeling" / "tasks.json"
    facts = export_labels(out_dir / "tags" / "tags.csv", "label-studio", out, local_files_root=out_dir)
    record(
        StageResult(
            "export-labels --to label-studio",
            f"{facts['rows']} tasks, {facts['tags']} pre-ticked choices ({facts['untagged']} tasks with "
            f"none) -> {out} (+ labeling config); "
            f"serve with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={out_dir.absolute()}",
            time.perf_counter() - start,
            {
                "tasks": facts["rows"],
                "choices": facts["tags"],
                "untagged": facts["untagged"],
                "choices_per_task": round(facts["tags"] / max(facts["rows"], 1), 3),
                "thresholds": facts["thresholds"],
                "files": facts["files"],
            },
        )
    )


def select_stage(out_dir: Path, seed: int, record: Callable[[StageResult], None], n: int = 100) -> None:
    """Stage select: the next images to label, from the tags the trained model wrote.

    Test and validation images already have full labels and are excluded; what is left are the
    training images with one positive each, so the picks are the batch a reviewer should label
    fully next. Probabilities come from the tags' embeddings and the checkpoint that tagged them.
    """
    from hspnet_cli.selection import SelectOptions, select_images, write_selection

    start = time.perf_counter()
    split = out_dir / "split"
    labelled = [str(split / name) for name in ("val.csv", "test.csv") if (split / name).is_file()]
    sel = select_images(out_dir / "tags" / "tags.csv", SelectOptions(n=n, exclude=labelled, seed=seed))
    facts = write_selection(sel, out_dir / "select" / "next.txt")
    counts, unc = facts["counts"], facts["uncertainty"] or {}
    reasons = ", ".join(f"{k} {v}" for k, v in counts["by_reason"].items())
    record(
        StageResult(
            "select",
            f"{counts['picked']} of {counts['eligible']} single-positive images to label fully "
            f"next ({reasons}); mean uncertainty {unc.get('picks_mean', float('nan')):.3f} vs "
            f"{unc.get('eligible_mean', float('nan')):.3f}; {facts['files']['list']}",
            time.perf_counter() - start,
            {
                "picked": counts["picked"],
                "eligible": counts["eligible"],
                "excluded": counts["excluded"],
                "by_reason": counts["by_reason"],
                "uncertainty": unc,
                "list": facts["files"]["list"],
                "probabilities": facts["probabilities"]["kind"],
            },
        )
    )
