"""How well ``hspnet audit`` ranks injected label errors first, against random and lowest-probability orders.

Run on demand (a few minutes of CPU; the demo model is trained once and shared with
``dedup_quality.py``)::

    PYTHONPATH=. .venv/bin/python benchmarks/audit_quality.py [--work DIR] [--images 3000] [--error-rate 0.05]

1. A demo world and the ``demo`` preset trained on its first half (``quality_world.py``).
2. The second half, never trained on, fully labelled (the world's truth), with errors injected
   into ``--error-rate`` of its images (seeded), a third each: one positive swapped for a label
   of the same group that the image does not hold, one swapped for a label of another group,
   one positive dropped.
3. ``hspnet audit`` of those labels with the checkpoint (the out-of-sample check passes: the
   model's recorded training keys are the first half's), and the same findings ranked with
   ``--adjust-probabilities`` (on the same probabilities).
4. Flagged images (any ``wrong positive`` / ``missing positive`` row) in issues.csv order,
   against: random order (expected precision = error rate), plain lowest-probability order of
   the given positives (min p over an image's positives: what one would try first), the lowest
   self-confidence over every given entry (p for positives, 1 - p for negatives), and
   cleanlab's own per-image score (``get_label_quality_scores``). precision@k for k = errors/2,
   errors, 2 x errors; recall within the first errors and 2 x errors; and the precision and
   recall of the flagged set as a whole.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_world import prepare  # noqa: E402

KINDS = ("same-group swap", "other-group swap", "dropped positive")


def inject(labels, tax, rate: float, seed: int):
    """A copy of ``labels`` (full, SPML) with errors in ``rate`` of its images; (noisy, {row: kind})."""
    rng = np.random.default_rng(seed)
    m = labels.matrix.copy()
    group_of = {name: g for g, members in tax.groups.items() for name in members}
    index = {name: i for i, name in enumerate(labels.label_names)}
    candidates = [r for r in range(labels.n_images) if (m[r] == 1).any()]
    rows = rng.choice(candidates, size=round(rate * labels.n_images), replace=False)
    changed = {}
    for j, r in enumerate(sorted(rows)):
        kind = KINDS[j % 3]
        pos = np.flatnonzero(m[r] == 1)
        c = int(rng.choice(pos))
        if kind == "dropped positive":
            m[r, c] = -1
        else:
            g = group_of[labels.label_names[c]]
            pool = [
                index[n]
                for n in labels.label_names
                if m[r, index[n]] != 1 and ((group_of[n] == g) if kind == "same-group swap" else (group_of[n] != g))
            ]
            if not pool:
                kind, m[r, c] = "dropped positive", -1
            else:
                m[r, c], m[r, int(rng.choice(pool))] = -1, 1
        changed[int(r)] = kind
    return labels.with_matrix(m), changed


def precision_recall(order: list[int], errors: set[int], ks: list[int]) -> dict:
    out = {}
    for k in ks:
        top = order[:k]
        hit = sum(1 for r in top if r in errors)
        out[f"precision@{k}"] = round(hit / max(1, len(top)), 4)
        out[f"recall@{k}"] = round(hit / len(errors), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/hspnet-quality-bench"))
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-mode",
        default="single-positive",
        help="Labels of the model's training half: single-positive (the demo's) or full.",
    )
    args = parser.parse_args()

    from cleanlab.multilabel_classification import rank as ml_rank

    from hspnet_cli.audit import AuditOptions, audit_labels, read_labels
    from hspnet_cli.audit.run import audit_with_checkpoint
    from hspnet_cli.audit.scores import checkpoint_probabilities
    from hspnet_cli.data.split_io import write_split_csv

    started = time.perf_counter()
    world = prepare(args.work, args.images, args.epochs, args.seed, mode=args.train_mode)
    clean, tax = read_labels(world["held_out"], world["taxonomy"], AuditOptions(absent="negative"))
    noisy, changed = inject(clean, tax, args.error_rate, args.seed)
    noisy_file = args.work / "audit" / "noisy.csv"
    noisy_file.parent.mkdir(parents=True, exist_ok=True)
    write_split_csv(noisy_file, noisy)
    labels, _ = read_labels(noisy_file, tax, AuditOptions())
    t0 = time.perf_counter()
    issues = args.work / f"audit-{args.train_mode}" / "issues.csv"
    facts = audit_with_checkpoint(
        labels,
        world["checkpoint"],
        world["images"],
        tax,
        issues,
        AuditOptions(to="label-studio"),
        source=str(noisy_file),
    )
    audit_seconds = time.perf_counter() - t0
    keys = {k: i for i, k in enumerate(labels.images)}
    order_tool: list[int] = []
    with open(issues, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            r = keys[row["key"]]
            if row["kind"] in ("wrong positive", "missing positive") and r not in order_tool:
                order_tool.append(r)
    probs, _ = checkpoint_probabilities(world["checkpoint"], labels, world["images"], device="cpu")
    # The same audit ranked by the threshold-adjusted score (--adjust-probabilities), on the same probabilities.
    adjusted = issues.with_name("issues-adjusted.csv")
    audit_labels(labels, probs, world["images"], tax, adjusted, AuditOptions(adjust=True), facts["probabilities"])
    order_adjusted: list[int] = []
    with open(adjusted, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            r = keys[row["key"]]
            if row["kind"] in ("wrong positive", "missing positive") and r not in order_adjusted:
                order_adjusted.append(r)
    m = labels.matrix
    errors = set(changed)
    n, e = labels.n_images, len(errors)
    ks = [max(1, e // 2), e, 2 * e]
    pos_min = np.where(m == 1, probs, np.inf).min(axis=1)
    self_conf = np.where(m == 1, probs, np.where(m == -1, 1 - probs, np.inf)).min(axis=1)
    given = [list(np.flatnonzero(row == 1)) for row in m]
    cl_image = ml_rank.get_label_quality_scores(given, np.clip(probs, 1e-6, 1 - 1e-6))
    rng = np.random.default_rng(args.seed + 1)
    orders = {
        "hspnet audit (issues.csv order, claims)": order_tool,
        "hspnet audit --adjust-probabilities": order_adjusted,
        "cleanlab per-image quality (get_label_quality_scores)": list(np.argsort(cl_image, kind="stable")),
        "lowest probability of a given positive": list(np.argsort(pos_min, kind="stable")),
        "lowest self-confidence of any given entry": list(np.argsort(self_conf, kind="stable")),
    }
    results = {name: precision_recall([int(r) for r in o], errors, ks) for name, o in orders.items()}
    random_runs = [precision_recall(list(rng.permutation(n)), errors, ks) for _ in range(200)]
    results["random order (mean of 200)"] = {
        k: round(float(np.mean([r[k] for r in random_runs])), 4) for k in random_runs[0]
    }
    flagged = set(order_tool)
    by_kind = {
        kind: f"{sum(1 for r, k in changed.items() if k == kind and r in flagged)}/"
        f"{sum(1 for k in changed.values() if k == kind)}"
        for kind in KINDS
    }
    flagged_facts = {
        "flagged_images": len(flagged),
        "true_errors_flagged": len(flagged & errors),
        "precision": round(len(flagged & errors) / max(1, len(flagged)), 4),
        "recall": round(len(flagged & errors) / e, 4),
        "recall_by_kind": by_kind,
    }
    print(
        f"model: {world['checkpoint']} (demo preset on {args.train_mode} labels, val mAP {world.get('val_map', 'reused')}); audited "
        f"{n} held-out images with {e} injected errors ({args.error_rate:.0%})"
    )
    print(f"flagged set: {flagged_facts}")
    for name, r in results.items():
        print(f"{name:55s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))
    print(
        json.dumps(
            {
                "benchmark": "audit_quality",
                "train_mode": args.train_mode,
                "images": n,
                "errors": e,
                "error_rate": args.error_rate,
                "audit": {k: facts[k] for k in ("issues", "by_kind", "flagged_images")},
                "audit_seconds": round(audit_seconds, 2),
                "flagged": flagged_facts,
                "orders": results,
                "world": {k: v for k, v in world.items() if k.endswith("seconds") or k == "val_map"},
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
