"""Does ``hspnet select`` pay off? Label budgets chosen by select vs at random, on the demo world.

    .venv/bin/python benchmarks/select_budget.py                              # defaults below, 10-30 min
    .venv/bin/python benchmarks/select_budget.py --budgets 100,300 --seeds 0,1,2 --epochs 12
    .venv/bin/python benchmarks/select_budget.py --budgets 300 --calibrate    # thresholds fitted on the seed set

For each seed: a fresh demo world (``--images``, last fifth held out as test, the rest the
unlabelled pool) -> a *seed set* of ``--seed-size`` pool images, single positives from the
world's full annotations -> the seed model (``demo`` preset: HSPNet on the tiny random-init
``hspnet-tiny-rn``, ``--epochs``) -> ``hspnet tag`` of the pool with it (jsonl: every label's
probability) -> for each budget B: B more images chosen by ``hspnet select`` (default ``mix``,
the seed set excluded) and B chosen uniformly at random -> single positives for seed set + B
(same protocol and seed for both) -> a model trained from scratch with the same recipe ->
test mAP. Selection therefore uses the seed model, trained on labels a person gave, never the
random model's zero-shot scores (which mean nothing).

Prints one table: budget, method, test mAP per seed and the mean, plus the seed model alone
and chance (every image scored with the labels' test rates: AP = positive rate);
and for each choice, how many true positives the rarest label has among the labelled images
(what coverage is for). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _annotations(world: Path) -> tuple[str, list[str], dict[str, str]]:
    lines = (world / "annotations.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = {line.split(",", 1)[0]: line for line in lines[1:]}
    return lines[0], list(rows), rows


def _train_eval(root: Path, name: str, images: list[str], ann: tuple, world: Path, seed: int, epochs: int) -> dict:
    """Single positives for ``images``, train from scratch, test mAP."""
    from hspnet_cli.config import apply_overrides, load_preset
    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.data.split_io import read_split_csv
    from hspnet_cli.evaluation.evaluate import evaluate_scores, score_split
    from hspnet_cli.scoring.scorer import load_scorer
    from hspnet_cli.train.loop import train

    header, _, rows = ann
    labelled = root / f"{name}.csv"
    labelled.write_text(header + "".join(rows[p] for p in sorted(images)), encoding="utf-8")
    split = make_split(
        labelled,
        world / "taxonomy.yaml",
        root / f"{name}-split",
        test_path=root / "test.csv",
        options=SplitOptions(mode="single-positive", seed=seed),
    )
    config = apply_overrides(load_preset("demo"), {"train.seed": seed, "train.epochs": epochs, "train.num_workers": 0})
    start = time.perf_counter()
    train(
        root / f"{name}-split",
        world / "images",
        root / f"{name}-run",
        config,
        taxonomy=world / "taxonomy.yaml",
        device="cpu",
    )
    scorer = load_scorer(root / f"{name}-run" / "best.ckpt")
    test = read_split_csv(root / f"{name}-split" / "test.csv", scorer.taxonomy)
    logits, targets = score_split(scorer, test, world / "images")
    report = evaluate_scores(logits, targets, scorer.taxonomy)
    full = np.array(
        [
            [1 if lab in rows[p].strip().split(",", 1)[1].split(";") else 0 for lab in scorer.taxonomy.label_names]
            for p in images
        ]
    )
    return {
        "test_map": round(float(report.map), 4),
        "images": len(images),
        "rarest_label_positives": int(full.sum(axis=0).min()),
        "train_seconds": round(time.perf_counter() - start, 1),
        "single_positives": split.summary["splits"][0]["counts"]["train"]["images"],
    }


def _calibrate(scorer, root: Path, world: Path) -> Path:  # type: ignore[no-untyped-def]
    """hspnet calibrate on the seed set (its single positives; unknown counts as negative there)."""
    from hspnet_cli.data.split_io import read_split_csv
    from hspnet_cli.evaluation.calibration import calibrate
    from hspnet_cli.evaluation.evaluate import score_split, sigmoid
    from hspnet_cli.scoring.thresholds import write_thresholds

    labels = read_split_csv(root / "seed-split" / "train.csv", scorer.taxonomy)
    logits, targets = score_split(scorer, labels, world / "images")
    write_thresholds(root / "thresholds.json", calibrate(sigmoid(logits), targets, scorer.taxonomy.label_names))
    return root / "thresholds.json"


def run_seed(root: Path, seed: int, args: argparse.Namespace) -> list[dict]:
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.scoring.scorer import load_scorer
    from hspnet_cli.selection import SelectOptions, select_images, write_selection
    from hspnet_cli.tagging.run import tag_images

    world = root / "world"
    generate_demo_world(world, n_images=args.images, seed=seed, workers=2)
    ann = _annotations(world)
    header, order, rows = ann
    n_test = len(order) // 5
    pool, test = order[:-n_test], order[-n_test:]
    (root / "test.csv").write_text(header + "".join(rows[p] for p in test), encoding="utf-8")
    # a constant score has AP = the label's positive rate: the mAP of knowing nothing about the image
    names = sorted({lab for p in test for lab in rows[p].strip().split(",", 1)[1].split(";") if lab})
    chance = float(
        np.mean([np.mean([lab in rows[p].strip().split(",", 1)[1].split(";") for p in test]) for lab in names])
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 100]))
    seed_set = sorted(rng.choice(pool, args.seed_size, replace=False).tolist())
    out = [
        {
            "seed": seed,
            "budget": 0,
            "method": "chance",
            "test_map": round(chance, 4),
            "images": 0,
            "rarest_label_positives": 0,
        },
        {
            "seed": seed,
            "budget": 0,
            "method": "seed set only",
            **_train_eval(root, "seed", seed_set, ann, world, seed, args.epochs),
        },
    ]
    print(json.dumps(out[-1]), flush=True)
    (root / "pool.txt").write_text("".join(f"{p}\n" for p in pool))
    (root / "seed.txt").write_text("".join(f"{p}\n" for p in seed_set))
    scorer = load_scorer(root / "seed-run" / "best.ckpt")
    thresholds = _calibrate(scorer, root, world) if args.calibrate else None
    tag_images(
        world / "images",
        root / "tags" / "pool.jsonl",
        scorer,
        thresholds=thresholds,
        list_file=root / "pool.txt",
        fmt="jsonl",
        progress=False,
        workers=0,
    )
    rest = sorted(set(pool) - set(seed_set))
    for budget in args.budgets:
        options = SelectOptions(n=budget, strategy=args.strategy, exclude=[str(root / "seed.txt")], seed=seed)
        sel = select_images(root / "tags" / "pool.jsonl", options)
        write_selection(sel, root / f"select-{budget}.txt", overwrite=True)
        chosen = (root / f"select-{budget}.txt").read_text().splitlines()
        brng = np.random.default_rng(np.random.SeedSequence([seed, 200, budget]))
        at_random = brng.choice(rest, budget, replace=False).tolist()
        choices = [(f"select {args.strategy}", chosen)] + ([] if args.no_random else [("random", at_random)])
        for method, picks in choices:
            name = f"{method.split()[0]}-{budget}"
            out.append(
                {
                    "seed": seed,
                    "budget": budget,
                    "method": method,
                    **_train_eval(root, name, seed_set + picks, ann, world, seed, args.epochs),
                }
            )
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--budgets", default="100,300")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--strategy", default="mix")
    ap.add_argument(
        "--no-random",
        action="store_true",
        help="Leave out the random picks (same seeds give the same random picks and models as an earlier run).",
    )
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="Tag the pool with thresholds hspnet calibrate fits "
        "on the seed set (default: 0.5, which a model trained on single positives rarely reaches).",
    )
    ap.add_argument("--keep", type=Path, default=None, help="Keep everything in this folder (default: a temp dir).")
    args = ap.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: threads only spin against each other
    results: list[dict] = []
    start = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        if args.keep is not None:
            root = args.keep / f"seed-{seed}"
            root.mkdir(parents=True, exist_ok=True)
            results += run_seed(root, seed, args)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                results += run_seed(Path(tmp), seed, args)
    seeds = sorted({r["seed"] for r in results})
    print(
        f"\ntest mAP on the held-out fifth ({args.images} images, seed set {args.seed_size}, {args.epochs} epochs; "
        f"{time.perf_counter() - start:.0f} s)"
    )
    print(
        f"{'budget':>6} {'method':16} "
        + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
        + f" {'mean':>7} {'rarest label (positives)':>26}"
    )
    for budget, method in dict.fromkeys((r["budget"], r["method"]) for r in results):
        cells = {r["seed"]: r for r in results if r["budget"] == budget and r["method"] == method}
        maps = [cells[s]["test_map"] for s in seeds if s in cells]
        rare = "/".join(str(cells[s]["rarest_label_positives"]) for s in seeds if s in cells)
        print(
            f"{budget:>6} {method:16} "
            + " ".join(f"{cells[s]['test_map']:8.4f}" if s in cells else f"{'-':>8}" for s in seeds)
            + f" {np.mean(maps):7.4f} {rare:>26}"
        )
    print(
        json.dumps(
            {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "results": results}
        )
    )


if __name__ == "__main__":
    main()
