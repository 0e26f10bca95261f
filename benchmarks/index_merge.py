"""``hspnet index merge`` at scale: time and peak memory of joining shard outputs.

    .venv/bin/python benchmarks/index_merge.py                       # 100k and 400k rows, csv and jsonl
    .venv/bin/python benchmarks/index_merge.py --rows 1000000 --formats jsonl --dim 512

Shards are written with the tagger's own ``TagWriter`` (80 labels, random probabilities and
unit embeddings, 4 shards holding interleaved positions as ``--shard i/4`` does), then merged in a
fresh subprocess so its peak RSS (ru_maxrss) is the merge's alone, index build included (an
exact ``Flat`` index below 100k rows, ``IVF,Flat`` above, with its recall measurement).

What should hold: memory grows with the number of rows only by the path list and the row
offsets (tens of bytes a row), never by the rows themselves (a JSONL row with every label's
probability is ~1 kB), nor by the embeddings (memmapped, copied in chunks).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from hspnet_cli.index.merge import merge_shards
out, shards = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
facts = merge_shards(out, shards)
print(json.dumps({"seconds": round(time.perf_counter() - start, 2), "index_seconds": facts["build_seconds"],
                  "count": facts["count"], "factory": facts["factory"], "search_params": facts["search_params"],
                  "recall_at_10": facts["recall_at_10"],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def write_shards(root: Path, rows: int, dim: int, fmt: str, shards: int = 4, labels: int = 80) -> list[Path]:
    """``shards`` tagger outputs of ``rows`` images in total, written by the tags format's own writer."""
    from hspnet_cli.tagsfile.factory import write_tag_output

    names = [f"label{i}" for i in range(labels)]
    groups = {f"g{g}": names[g::8] for g in range(8)}
    rng = np.random.default_rng(0)
    # Clustered unit vectors (2,000 centres + noise), as image embeddings are: uniform random
    # vectors have no neighbourhoods and would make any IVF index look broken.
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    outs = []
    for s in range(shards):
        out = root / f"tags.shard-{s}-of-{shards}.{fmt}"
        positions = np.arange(s, rows, shards)
        starts = range(0, len(positions), 20000)

        def embeddings(positions=positions, starts=starts):  # type: ignore[no-untyped-def]
            for start in starts:
                n = len(positions[start : start + 20000])
                emb = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
                yield emb / np.linalg.norm(emb, axis=1, keepdims=True)

        write_tag_output(
            out,
            [f"dir{p % 1000:03d}/img{p:08d}.jpg" for p in positions],
            (rng.random((len(positions[st : st + 20000]), labels)).astype(np.float32) for st in starts),
            embeddings(),
            labels=names,
            groups=groups,
            fmt=fmt,
            top_k=5,
            images_dir=root / "images",
            scorer="bench",
            fingerprint={"shard": [s, shards]},
        )
        outs.append(out)
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,400000", help="comma-separated total row counts")
    parser.add_argument("--formats", default="csv,jsonl")
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    results = []
    for fmt in args.formats.split(","):
        for rows in (int(r) for r in args.rows.split(",")):
            with tempfile.TemporaryDirectory(prefix="hspnet-merge-bench-") as tmp:
                root = Path(tmp)
                t0 = time.perf_counter()
                shards = write_shards(root, rows, args.dim, fmt)
                written = time.perf_counter() - t0
                tags_mb = sum(p.stat().st_size for p in shards) / 2**20
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, str(root / "merged" / f"tags.{fmt}"), *map(str, shards)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                facts = json.loads(proc.stdout.strip().splitlines()[-1])
                result = {
                    "format": fmt,
                    "rows": rows,
                    "dim": args.dim,
                    "tags_file_mib": round(tags_mb, 1),
                    "shards_written_seconds": round(written, 1),
                    **facts,
                }
                print(
                    f"{fmt:5s} {rows:>9,} rows ({tags_mb:7.1f} MiB of tags): merge + index "
                    f"{facts['seconds']:6.1f} s (index {facts['index_seconds']:.1f} s), peak RSS "
                    f"{facts['peak_rss_mib']:7.1f} MiB, {facts['factory']} {facts['search_params']}, "
                    f"recall@10 {facts['recall_at_10']}",
                    flush=True,
                )
                results.append(result)
    print(json.dumps({"benchmark": "index_merge", "results": results}))


if __name__ == "__main__":
    main()
