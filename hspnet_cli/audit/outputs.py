"""What ``hspnet audit`` writes: ``issues.csv``, the report, and Label Studio tasks with the fix pre-ticked.

For ``--out issues.csv`` (each file written to a temporary name, then renamed):

* ``issues.csv``: ``key,label,given,probability,quality,kind``, one row per flagged (image,
  label) entry, surest first (lowest cleanlab label quality); ``given`` is ``positive``,
  ``negative`` or ``unknown``;
* ``issues.audit.json``: counts by kind, the probabilities' origin, the out-of-sample check;
* with ``--to label-studio``: ``issues.tasks.json`` (one task per flagged image, surest
  first, its labels with the suggested fix applied pre-ticked: wrong positives unticked,
  missing ones ticked; the model's probabilities in the header) and its labeling config,
  written by :func:`hspnet_cli.labeltools.writers.write_label_studio`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.audit.issues import Findings
from hspnet_cli.core.io_utils import atomic_write, write_text_atomic
from hspnet_cli.data.labelset import POSITIVE, LabelSet

ISSUES_HEADER = ["key", "label", "given", "probability", "quality", "kind"]
GIVEN_WORDS = {1: "positive", 0: "unknown", -1: "negative"}


def side_files(out: Path) -> dict[str, Path]:
    return {
        "issues": out,
        "report": out.with_name(f"{out.stem}.audit.json"),
        "tasks": out.with_name(f"{out.stem}.tasks.json"),
    }


def write_issues(out: Path, labels: LabelSet, found: Findings) -> None:
    with atomic_write(out, encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(ISSUES_HEADER)
        for r, c, g, p, q, kind in zip(
            found.rows, found.cols, found.given, found.probability, found.quality, found.kinds
        ):
            writer.writerow(
                [
                    labels.images[r],
                    labels.label_names[c],
                    GIVEN_WORDS[int(g)],
                    f"{float(p):.4f}",
                    f"{float(q):.4f}",
                    kind,
                ]
            )


def fixed_labels(labels: LabelSet, found: Findings, row: int) -> list[int]:
    """The image's positives with the suggested fix applied (label indices, in label order)."""
    mine = found.rows == row
    drop = set(found.cols[mine & (found.given == POSITIVE)].tolist())
    add = set(found.cols[mine & (found.given != POSITIVE)].tolist())
    keep = set(np.flatnonzero(labels.matrix[row] == POSITIVE).tolist()) - drop
    return sorted(keep | add)


def write_tasks(
    files: dict[str, Path],
    labels: LabelSet,
    probs: np.ndarray,
    found: Findings,
    refs: Any,
    groups: dict[str, list[str]],
    model_version: str,
    claims_only: bool,
) -> dict[str, str]:
    """Label Studio tasks of the flagged images (see the module docstring)."""
    from hspnet_cli.labeltools.rows import TagRow
    from hspnet_cli.labeltools.writers import write_label_studio

    group_of = {label: g for g, members in groups.items() for label in members}

    def rows():
        for r in found.flagged_images(claims_only=claims_only):
            fix = fixed_labels(labels, found, int(r))
            names = [labels.label_names[c] for c in fix]
            yield TagRow(
                labels.images[r],
                names,
                [round(float(probs[r, c]), 4) for c in fix],
                [group_of.get(n, "") for n in names],
                labels.origins[r],
            )

    written = write_label_studio(files["tasks"], rows(), refs, labels.label_names, groups, model_version)
    return {role: str(path) for role, path in written.items()}


def write_report(path: Path, facts: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(facts, indent=2) + "\n")
