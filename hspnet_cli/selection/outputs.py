"""The files ``hspnet select -o OUT`` writes, each atomically (temp file + rename).

``OUT`` (e.g. ``next.txt``): one image path a line, relative to the tagged folder, in pick
order, in the list format of :mod:`hspnet_cli.tagsfile.listfile` (a name starting with ``#``
or ``\\`` gets a ``\\`` before it): the list ``hspnet tag --list``, ``--exclude`` and the
annotate server's ``--order`` read.

``STEM.picks.csv`` (``STEM`` = ``OUT`` without its suffix): one row per pick::

    rank,path,reason,why,uncertainty,label,prob,threshold,group_doubt,group,rivals,target,distance,predicted

``reason`` is the stage that chose it (coverage, uncertainty, diversity, random), ``why`` the
same in words; ``label``/``prob``/``threshold`` the label nearest its threshold; ``group``,
``rivals`` the group whose two members waver most and those two; ``target`` the rare label a
coverage pick was made for; ``distance`` the embedding distance to the nearest labelled or
earlier pick at the time of a k-center pick; ``predicted`` the labels at or above threshold.

``STEM.select.json``: the resolved options, inputs, counts, where the probabilities came from,
per-label and per-group predicted positives among the picks next to the pool's share and k-center
facts. Its presence marks ``OUT`` as a select output that a rerun may replace. The same inputs
and seed give byte-identical list, picks and report.

``STEM.timings.json``: how long reading, scoring and selecting took (apart, so the report stays
byte-identical from run to run).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_bytes_atomic, write_text_atomic
from hspnet_cli.selection.select import Selection
from hspnet_cli.tagsfile.listfile import format_list
from hspnet_cli.tagsfile.writer import ENCODING

FORMAT = "hspnet-select"
PICK_COLUMNS = (
    "rank",
    "path",
    "reason",
    "why",
    "uncertainty",
    "label",
    "prob",
    "threshold",
    "group_doubt",
    "group",
    "rivals",
    "target",
    "distance",
    "predicted",
)


def output_paths(out: str | Path) -> dict[str, Path]:
    """``list``, ``picks`` and ``report`` paths for ``-o OUT``."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix else out
    return {
        "list": out,
        "picks": Path(f"{stem}.picks.csv"),
        "report": Path(f"{stem}.select.json"),
        "timings": Path(f"{stem}.timings.json"),
    }


def check_out(out: str | Path, overwrite: bool) -> dict[str, Path]:
    """The output paths, refusing to replace a file that no earlier ``hspnet select`` wrote.

    Raises:
        UserError: ``OUT`` is a folder, or exists without the report beside it and no ``overwrite``.
    """
    paths = output_paths(out)
    if paths["list"].is_dir():
        raise UserError(f"{paths['list']}: is a folder; -o is the list file to write (e.g. next.txt)")
    if paths["list"].exists() and not paths["report"].exists() and not overwrite:
        raise UserError(
            f"{paths['list']}: exists and is not an hspnet select output ({paths['report'].name} "
            "missing); choose another -o or pass --overwrite"
        )
    return paths


def _fmt(x: float, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def pick_rows(sel: Selection, probs: np.ndarray) -> list[dict[str, Any]]:
    """One dict per pick (the picks CSV's columns), in pick order; ``probs`` are the picks' probabilities."""
    names = sel.taxonomy.label_names
    groups = sel.taxonomy.group_names
    st = sel.stats
    uncertainty = st.uncertainty
    out = []
    for rank, (row, reason, dist, target, p) in enumerate(
        zip(sel.rows, sel.reasons, sel.distances, sel.targets, probs), start=1
    ):
        lab = int(st.margin_label[row])
        g = int(st.doubt_group[row])
        rivals = [names[j] for j in st.doubt_pair[row] if j >= 0] if g >= 0 else []
        predicted = [names[j] for j in np.flatnonzero(p >= sel.thresholds)[np.argsort(-p[p >= sel.thresholds])]]
        complete = sel.source.complete
        if reason == "coverage":
            why = f"rare label '{names[target]}' (p {p[target]:.2f})"
        elif reason == "uncertainty":
            why = f"'{names[lab]}' p {p[lab]:.2f} is the label nearest its threshold {sel.thresholds[lab]:.2f}"
            if rivals:
                why += f"; wavers between {' and '.join(rivals)} ({groups[g]})"
        elif reason == "diversity":
            why = f"far from everything labelled or picked (distance {dist:.3f})"
        else:
            why = "uniform random sample"
        if reason == "uncertainty" and not math.isnan(float(dist)):
            why += f"; distance {dist:.3f} to the nearest labelled or picked"
        out.append(
            {
                "rank": rank,
                "path": sel.tags.paths[row],
                "reason": reason,
                "why": why,
                "uncertainty": _fmt(float(uncertainty[row])) if complete else "",
                "label": names[lab] if complete else "",
                "prob": _fmt(float(p[lab])) if complete else "",
                "threshold": _fmt(float(sel.thresholds[lab])) if complete else "",
                "group_doubt": _fmt(float(st.group_doubt[row])) if complete and g >= 0 else "",
                "group": groups[g] if complete and g >= 0 else "",
                "rivals": ";".join(rivals) if complete else "",
                "target": names[target] if target >= 0 else "",
                "distance": _fmt(float(dist)),
                "predicted": ";".join(predicted),
            }
        )
    return out


def _coverage_table(sel: Selection, probs: np.ndarray) -> dict[str, Any]:
    """Predicted positives per label and group among the picks, next to the pool's share."""
    names = sel.taxonomy.label_names
    above = probs >= sel.thresholds
    picks = above.sum(axis=0)
    n_pool = max(sel.tags.n, 1)
    labels = {
        name: {
            "picks": int(picks[j]),
            "pool_rate": round(float(sel.stats.label_positives[j]) / n_pool, 6),
            **(
                {"labelled": int(sel.exclusions.labelled_positives[j])}
                if sel.exclusions.labelled_positives is not None
                else {}
            ),
        }
        for j, name in enumerate(names)
    }
    groups = {}
    for g, members in sel.taxonomy.groups.items():
        idx = [sel.taxonomy.label_index(m) for m in members]
        groups[g] = int(above[:, idx].any(axis=1).sum()) if len(above) else 0
    return {
        "labels": labels,
        "groups_picked": groups,
        "labels_without_picks": [name for j, name in enumerate(names) if picks[j] == 0],
        # what the pool shows but no pick does: worth a look at the thresholds or a coverage share
        "pool_labels_without_picks": [
            name for j, name in enumerate(names) if picks[j] == 0 and sel.stats.label_positives[j] > 0
        ],
    }


def report(sel: Selection, paths: dict[str, Path], probs: np.ndarray) -> dict[str, Any]:
    """The ``STEM.select.json`` content."""
    reasons = {r: sel.reasons.count(r) for r in dict.fromkeys(sel.reasons)}
    eligible = ~sel.exclusions.mask
    unc = sel.stats.uncertainty
    complete = sel.source.complete
    return {
        "format": FORMAT,
        "version": 1,
        "package_version": __version__,
        "tags": str(sel.tags.file),
        "images_dir": str(sel.tags.images_dir),
        "model": sel.tags.model,
        "probabilities": {"kind": sel.source.kind, "detail": sel.source.detail},
        "options": {
            "n": sel.options.n,
            "strategy": sel.options.strategy,
            "mix": sel.options.mix,
            "seed": sel.options.seed,
            "exclude": list(map(str, sel.options.exclude)),
            "model": sel.options.model,
            "pool": sel.options.pool,
            "pool_factor": sel.options.pool_factor,
            "dims": sel.options.dims,
        },
        "counts": {
            "rows": sel.tags.n,
            "excluded": sel.exclusions.count,
            "eligible": int(eligible.sum()),
            "picked": len(sel.rows),
            "by_reason": reasons,
        },
        "exclusions": sel.exclusions.sources,
        "uncertainty": (
            {
                "picks_mean": round(float(unc[sel.rows].mean()), 6) if len(sel.rows) else None,
                "eligible_mean": round(float(unc[eligible].mean()), 6) if eligible.any() else None,
            }
            if complete
            else None
        ),
        "coverage": _coverage_table(sel, probs),
        **sel.facts,
        "files": {k: str(v) for k, v in paths.items()},
    }


def write_selection(sel: Selection, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write the list, the picks CSV and the report (see the module docstring); returns the report."""
    paths = check_out(out, overwrite)
    probs = sel.source.rows(sel.rows)  # read once: for a jsonl, one seek and parse per pick
    rows = pick_rows(sel, probs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PICK_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    facts = report(sel, paths, probs)
    # Timings differ run to run: they go to their own file, so the same inputs give byte-identical
    # list, picks and report.
    timings = facts.pop("seconds", None)
    # paths that are not UTF-8 round-trip byte for byte, as in the tag output
    write_bytes_atomic(paths["picks"], buf.getvalue().encode(*ENCODING))
    write_bytes_atomic(paths["list"], format_list(r["path"] for r in rows))  # the list format: '#1.png' survives
    # the report last: its presence says the other two are complete and from this run
    write_text_atomic(paths["report"], json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(paths["timings"], json.dumps({"seconds": timings}, indent=2) + "\n")
    return facts
