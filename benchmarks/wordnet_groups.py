"""How close ``taxonomy build --wordnet --groups N`` comes to groups a person drew.

    .venv/bin/python benchmarks/wordnet_groups.py            # all lists, about a minute on one core
    .venv/bin/python benchmarks/wordnet_groups.py --lists coco,everyday-61

For each list: the labels go through ``build_wordnet_taxonomy`` with N = the reference's group
count, and the result is compared with the reference groups by the adjusted Rand index
(sklearn's ``adjusted_rand_score``: 1 = the same partition, 0 = no better than chance). Also
counted: singleton groups made, the largest group, and the senses the builder picked for the
labels an eye checks first (octopus, mushroom, ...). Lists: the built-in taxonomies ``coco``
(supercategories), ``voc``, ``nuswide`` and ``cub``, and two everyday lists with obvious
groups kept with the tests (``tests/data/everyday-61-groups.yaml``, ``everyday-51-groups.yaml``).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LISTS = {
    "coco": "coco",
    "voc": "voc",
    "nuswide": "nuswide",
    "cub": "cub",
    "everyday-61": str(ROOT / "tests" / "data" / "everyday-61-groups.yaml"),
    "everyday-51": str(ROOT / "tests" / "data" / "everyday-51-groups.yaml"),
}
_WATCH = ("octopus", "mushroom", "unidentified flying object", "turtle", "crab", "kite", "mouse", "apple")


def measure(source: str) -> dict:
    """ARI of the WordNet build against the reference groups, with a few facts about the cut."""
    from sklearn.metrics import adjusted_rand_score

    from hspnet_cli.taxonomy import load_label_list, load_taxonomy
    from hspnet_cli.taxonomy.wordnet_build import build_wordnet_taxonomy

    ref = load_taxonomy(source)
    labels = load_label_list(source)
    start = time.perf_counter()
    built, report = build_wordnet_taxonomy(labels, n_groups=ref.num_groups)
    seconds = time.perf_counter() - start
    truth, got = ref.group_of(), built.group_of()
    sizes = sorted((len(m) for m in built.groups.values()), reverse=True)
    senses = {r.label: r.synset for r in report.labels if r.label in _WATCH}
    where = {name: got[name] for name in senses}
    return {
        "labels": len(labels),
        "groups": ref.num_groups,
        "built_groups": built.num_groups,
        "ari": round(float(adjusted_rand_score([truth[s.name] for s in labels], [got[s.name] for s in labels])), 3),
        "singletons": sum(1 for n in sizes if n == 1),
        "largest": sizes[0],
        "seconds": round(seconds, 2),
        "senses": senses,
        "group_of": where,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", default=",".join(LISTS), help="comma-separated names from: " + ", ".join(LISTS))
    parser.add_argument("--show-groups", action="store_true", help="print each built group's members")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    results = {}
    for name in [n.strip() for n in args.lists.split(",") if n.strip()]:
        results[name] = measure(LISTS[name])
        if args.show_groups:
            from hspnet_cli.taxonomy import load_label_list
            from hspnet_cli.taxonomy.wordnet_build import build_wordnet_taxonomy

            built, _ = build_wordnet_taxonomy(load_label_list(LISTS[name]), n_groups=results[name]["groups"])
            for group, members in built.groups.items():
                print(f"  {name} | {group}: {', '.join(members)}")
    table = Table(title="taxonomy build --wordnet --groups N against reference groups")
    for col in ("list", "labels", "N", "ARI", "singletons", "largest", "s", "watched labels -> group"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(
            name,
            str(r["labels"]),
            str(r["groups"]),
            f"{r['ari']:.3f}",
            str(r["singletons"]),
            str(r["largest"]),
            f"{r['seconds']:.1f}",
            "; ".join(f"{k} -> {v}" for k, v in r["group_of"].items()),
        )
    Console(width=200).print(table)
    print(json.dumps({"benchmark": "wordnet_groups", "results": results}))


if __name__ == "__main__":
    main()
