"""Evaluation pictures (``hspnet eval --plot DIR``): per-class AP, precision-recall curves, label map.

matplotlib is imported inside :func:`write_plots` with the Agg backend (no display needed), so
importing this module costs nothing. Every PNG is rendered to memory and written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.io_utils import write_bytes_atomic
from hspnet_cli.evaluation.evaluate import EvalReport


def pr_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score where recall grows, tied scores as one step.

    Drawn as ``step(where="pre")`` from (0, first precision), the area under it is the sklearn
    AP; thresholds that only add negatives are left out (they would be vertical spikes).
    """
    scores = np.asarray(scores, dtype=np.float32)
    positives = np.asarray(positives, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    ranked, ranked_pos = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(ranked_pos)[last]
    grows = np.diff(np.r_[0, tp]) > 0
    recall, precision = tp[grows] / max(1, positives.sum()), tp[grows] / (last[grows] + 1)
    return np.r_[0.0, recall], np.r_[precision[:1], precision]


def pca_2d(features: np.ndarray) -> np.ndarray:
    """(C, D) -> (C, 2): the first two principal components of the centred rows."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    out = u[:, :2] * s[:2]
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # fewer than 2 components: pad with zeros


_OFFSETS = (((4, 3), "left"), ((4, -10), "left"), ((-4, 3), "right"), ((-4, -10), "right"))


def _label_offsets(xy: np.ndarray) -> list[tuple[tuple[int, int], str]]:
    """Per point, the text offset (of four around it) farthest from the texts placed so far and
    from the other points: crowded labels spread out instead of printing over each other."""
    span = np.ptp(xy, axis=0)
    unit = xy / np.where(span > 0, span, 1.0)  # axes roughly equal in normalised units
    step = np.array([0.012, 0.02])  # ~ one offset step (points) in normalised figure units
    placed: list[np.ndarray] = []
    out = []
    for i, p in enumerate(unit):
        others = np.delete(unit, i, axis=0)
        best, best_gap = _OFFSETS[0], -1.0
        for offset, align in _OFFSETS:
            # A text's centre: beside the point, extending away on the side it is aligned to.
            centre = p + np.array(offset) * step / np.array([4, 6]) + np.array([0.04 if align == "left" else -0.04, 0])
            near = [np.linalg.norm(centre - q) for q in [*placed, *others]]
            gap = min(near) if near else 1.0
            if gap > best_gap + 1e-9:
                best, best_gap = (offset, align), gap
        placed.append(
            p + np.array(best[0]) * step / np.array([4, 6]) + np.array([0.04 if best[1] == "left" else -0.04, 0])
        )
        out.append(best)
    return out


def _group_colors(plt: Any, n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _ap_bars(plt: Any, report: EvalReport, colors: list[Any], title: str) -> Any:
    group_pos = {g: i for i, g in enumerate(report.group_names)}
    # Grouped, best first inside each group, so a weak group shows as a short block.
    order = sorted(
        range(len(report.label_names)),
        key=lambda i: (group_pos[report.label_groups[i]], -np.nan_to_num(report.per_class_ap[i], nan=-1.0)),
    )
    n = len(order)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.24 * n))
    ys = np.arange(n)
    aps = np.array([report.per_class_ap[i] for i in order])
    ax.barh(ys, np.nan_to_num(aps, nan=0.0), color=[colors[group_pos[report.label_groups[i]]] for i in order])
    for y, ap in zip(ys, aps):
        ax.text(
            0.005 if np.isnan(ap) else ap + 0.01,
            y,
            "no positives" if np.isnan(ap) else f"{ap:.2f}",
            va="center",
            fontsize=7,
            color="0.4" if np.isnan(ap) else "0.1",
        )
    ax.set_yticks(ys, [f"{report.label_names[i]} ({int(report.positives[i])})" for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"average precision ({report.variant})")
    ax.set_title(title, fontsize=10)
    mean_line = ax.axvline(report.map, color="0.3", linestyle="--", linewidth=1)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i]) for i in range(len(report.group_names))]
    ax.legend(
        [*handles, mean_line],
        [*report.group_names, f"mAP {report.map:.3f}"],
        title="group",
        fontsize=7,
        title_fontsize=8,
        loc="lower right",
        framealpha=0.9,
    )
    ax.grid(axis="x", alpha=0.3)
    return fig


def _pr_curves(
    plt: Any, report: EvalReport, logits: np.ndarray, targets: np.ndarray, colors: list[Any], title: str
) -> Any:
    ranked = report.worst_first()
    worst, best = ranked[:3], ranked[::-1][:3]
    group_pos = {g: i for i, g in enumerate(report.group_names)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, picked, name in ((axes[0], best, "best 3 classes"), (axes[1], worst, "worst 3 classes")):
        styles = ["-", "--", ":"]
        for k, c in enumerate(picked):
            recall, precision = pr_curve(logits[:, c], np.asarray(targets)[:, c] == 1)
            ax.step(
                recall,
                precision,
                where="pre",
                linestyle=styles[k],
                linewidth=2,
                color=colors[group_pos[report.label_groups[c]]],
                label=f"{report.label_names[c]} [{report.label_groups[c]}] AP {report.per_class_ap[c]:.2f} "
                f"({int(report.positives[c])} pos)",
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("precision")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _label_map(plt: Any, report: EvalReport, label_features: np.ndarray, colors: list[Any], title: str) -> Any:
    xy = pca_2d(label_features)
    group_pos = {g: i for i, g in enumerate(report.group_names)}
    fig, ax = plt.subplots(figsize=(8, 7))
    for g, name in enumerate(report.group_names):
        members = [i for i, lg in enumerate(report.label_groups) if lg == name]
        ax.scatter(xy[members, 0], xy[members, 1], s=50, color=colors[g], label=name, edgecolors="white", zorder=3)
    for i, (offset, align) in enumerate(_label_offsets(xy)):
        ax.annotate(
            report.label_names[i],
            xy[i],
            xytext=offset,
            textcoords="offset points",
            fontsize=7,
            ha=align,
            color=colors[group_pos[report.label_groups[i]]],
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.margins(0.12)
    ax.grid(alpha=0.3)
    ax.legend(title="group", fontsize=7, title_fontsize=8, loc="best", framealpha=0.9)
    return fig


def write_plots(
    out_dir: str | Path,
    report: EvalReport,
    logits: np.ndarray,
    targets: np.ndarray,
    label_features: np.ndarray | None = None,
    title: str = "",
) -> list[Path]:
    """Write ``class_ap.png``, ``pr_curves.png`` and (given features) ``label_map.png``.

    Args:
        out_dir: Folder (created if missing).
        report: The evaluation report (per-class AP, groups).
        logits: (n, C) scores the report was computed from.
        targets: (n, C) labels.
        label_features: (C, D) label features (e.g. the checkpoint's T*) for the 2-D map.
        title: A line naming the scorer and data, shown on every picture.

    Returns:
        The written paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    out_dir = Path(out_dir)
    colors = _group_colors(plt, len(report.group_names))
    written: list[Path] = []
    head = f"{title}\n" if title else ""
    figures = [
        ("class_ap.png", lambda: _ap_bars(plt, report, colors, f"{head}per-class AP by group (label (#positives))"))
    ]
    if report.worst_first():
        figures.append(("pr_curves.png", lambda: _pr_curves(plt, report, logits, targets, colors, title)))
    if label_features is not None:
        figures.append(
            (
                "label_map.png",
                lambda: _label_map(
                    plt, report, label_features, colors, f"{head}label features, first two principal components"
                ),
            )
        )
    for name, make in figures:
        fig = make()
        try:
            written.append(_save(fig, out_dir / name))
        finally:
            plt.close(fig)
    return written
