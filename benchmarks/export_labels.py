"""``hspnet export-labels`` and the label-tool readers at scale: time and peak memory.

Run: ``.venv/bin/python benchmarks/export_labels.py [--rows 200000]``

A fake tag output of N rows (16 labels, 1-4 tags a row, paths in 1,000 folders; written with
hspnet's own row writer) is exported to every tool; then each written file (and a Label Studio
JSON export of the tasks, every one answered) is read back with ``read_annotations`` as
``hspnet split`` does. Each step runs in a fresh process so its peak RSS is its own. Prints
one line per step and ends with JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = r"""
import json, sys, time
from pathlib import Path
start = time.perf_counter()
kind, root, arg = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if kind == "export":
    from hspnet_cli.labeltools import export_labels
    out = {"label-studio": root / "ls" / "tasks.json", "cvat": root / "cvat.xml", "hf": root / "images" / "metadata.jsonl",
           "fiftyone": root / "fo"}[arg]
    export_labels(root / "tags.csv", arg, out, image_sizes=False, overwrite=True)
else:
    from hspnet_cli.data.readers import read_annotations
    from hspnet_cli.taxonomy import load_taxonomy
    labels, _ = read_annotations(root / arg, load_taxonomy(root / "taxonomy.yaml"))
    assert labels.n_images > 0
# VmHWM, not ru_maxrss: Linux carries a forked parent's peak into ru_maxrss across exec.
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": round(peak)}))
"""


def make_output(root: Path, rows: int) -> None:
    import numpy as np

    from hspnet_cli.tagsfile.factory import write_tag_output

    labels = [f"label{i}" for i in range(16)]
    groups = {f"group{g}": labels[g * 4 : (g + 1) * 4] for g in range(4)}
    rng = np.random.default_rng(0)
    blocks = range(0, rows, 100_000)
    (root / "images").mkdir()
    write_tag_output(
        root / "tags.csv",
        [f"f{i % 1000:03d}/img_{i:08d}.jpg" for i in range(rows)],
        (rng.random((min(100_000, rows - s), 16), dtype=np.float32) * 0.95 for s in blocks),
        (np.zeros((min(100_000, rows - s), 1), np.float32) for s in blocks),
        labels=labels,
        groups=groups,
        thresholds=0.9,
        images_dir=root / "images",
        scorer="bench",
    )
    (root / "taxonomy.yaml").write_text(f"name: bench\nlabels: {labels}\ngroups: {json.dumps(groups)}\n")


def ls_export(root: Path) -> None:
    """A Label Studio JSON export of the written tasks, each answered with its predicted choices."""
    tasks = json.loads((root / "ls" / "tasks.json").read_text())
    for i, task in enumerate(tasks):
        choices = task["predictions"][0]["result"][0]["value"]["choices"] if task.get("predictions") else []
        task.update(
            id=i + 1,
            annotations=[
                {
                    "id": i + 1,
                    "was_cancelled": False,
                    "updated_at": "2026-12-01",
                    "result": [{"type": "choices", "from_name": "labels", "value": {"choices": choices}}],
                }
            ],
        )
    (root / "ls-export.json").write_text(json.dumps(tasks, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    results = {"rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_output(root, args.rows)
        steps = [("export", t) for t in ("label-studio", "cvat", "hf", "fiftyone")]
        steps += [("read", f) for f in ("tags.csv", "cvat.xml", "images/metadata.jsonl", "fo", "ls-export.json")]
        for kind, arg in steps:
            if arg == "ls-export.json":
                ls_export(root)
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", STEP, kind, str(root), arg], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            facts = json.loads(done.stdout.strip().splitlines()[-1])
            facts["rows_per_second"] = round(args.rows / max(facts["seconds"], 1e-9))
            results[f"{kind} {arg}"] = facts
            print(
                f"{kind:6s} {arg:24s} {facts['seconds']:8.2f} s  {facts['rows_per_second']:>9,} rows/s  "
                f"peak {facts['peak_rss_mib']:,} MiB  (process {time.perf_counter() - t:.1f} s)",
                flush=True,
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
