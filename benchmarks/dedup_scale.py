"""``hspnet dedup`` on millions of synthetic embeddings: wall time, peak memory, planted-pair recall.

Run on demand (1M x 512 takes minutes on 2 cores and writes a 2 GB embedding file)::

    PYTHONPATH=. .venv/bin/python benchmarks/dedup_scale.py --n 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/dedup_scale.py --n 10000000 --work /big/disk   # 20 GB file

It writes a tag output as ``hspnet tag`` does (tags.csv, tags.emb.f32, manifest) holding ``--n``
unit vectors of width ``--dim``: clustered (``--clusters`` Gaussian centres, so IVF lists are
uneven as with real images) with ``--dup-rate`` of them replaced by a noisy copy of another
row (cosine about 0.98 to it). Then it runs the real command, ``hspnet dedup tags.csv --out
dups.csv --keeper path`` (no images exist), in a child process and reports its wall time and
peak resident memory and CPU time (``getrusage(RUSAGE_CHILDREN)``: the child's; the
generator's are not in it; on a shared machine the CPU time is the figure to compare), the index dedup chose, and the recall of the planted
pairs (a pair counts when both rows are in one group). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def generate(work: Path, n: int, dim: int, clusters: int, dup_rate: float, seed: int) -> np.ndarray:
    """Write the tag output; return the (source, copy) rows of the planted pairs."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    copies = np.sort(rng.choice(n, size=int(n * dup_rate), replace=False))
    sources = rng.integers(0, n, size=len(copies))
    clash = np.isin(sources, copies) | (sources == copies)  # a source must be an untouched row
    sources[clash] = np.setdiff1d(np.arange(n), copies)[: int(clash.sum())]
    chunk = 262_144
    emb_path = work / "tags.emb.f32"
    with open(emb_path, "wb") as fh:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            block_rng = np.random.default_rng([seed, start])
            block = centres[block_rng.integers(0, clusters, stop - start)] + block_rng.standard_normal(
                (stop - start, dim), dtype=np.float32
            )
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            block.astype("<f4").tofile(fh)
    emb = np.memmap(emb_path, dtype="<f4", mode="r+", shape=(n, dim))
    noise_rng = np.random.default_rng(seed + 1)
    for start in range(0, len(copies), chunk):
        c, s = copies[start : start + chunk], sources[start : start + chunk]
        src = np.array(emb[s])
        noisy = src + (0.2 / np.sqrt(dim)) * noise_rng.standard_normal(src.shape, dtype=np.float32)
        emb[c] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    emb.flush()
    del emb
    with open(work / "tags.csv", "w", encoding="utf-8") as fh:
        fh.write("path,tags,scores,groups\n")
        for start in range(0, n, chunk):
            fh.write("".join(f"img/{i:09d}.jpg,,,\n" for i in range(start, min(n, start + chunk))))
    (work / "tags.failed.csv").write_text("path,error\n")
    (work / "tags.manifest.json").write_text(
        json.dumps(
            {
                "format": "hspnet-tags",
                "version": 1,
                "complete": True,
                "model": {"scorer": "synthetic"},
                "embedding": {"file": "tags.emb.f32", "dim": dim},
                "files": {"tags": "tags.csv", "failed": "tags.failed.csv", "embeddings": "tags.emb.f32"},
                "fingerprint": {"format": "csv", "images_dir": str((work / "images").absolute())},
            }
        )
    )
    return np.stack([sources, copies], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--dup-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--extra", nargs="*", default=[], help="More hspnet dedup options, e.g. --nprobe 4")
    args = parser.parse_args()
    work = args.work or Path(f"/tmp/hspnet-dedup-scale-{args.n}")
    t0 = time.perf_counter()
    pairs = generate(work, args.n, args.dim, args.clusters, args.dup_rate, args.seed)
    gen_seconds = time.perf_counter() - t0
    print(
        f"generated {args.n:,} x {args.dim} ({args.n * args.dim * 4 / 1e9:.1f} GB) with {len(pairs):,} planted "
        f"pairs in {gen_seconds:.0f} s",
        flush=True,
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [
        sys.executable,
        "-m",
        "hspnet_cli",
        "dedup",
        str(work / "tags.csv"),
        "--out",
        str(work / "dups.csv"),
        "--keeper",
        "path",
        "--json",
        *args.extra,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"hspnet dedup failed ({done.returncode}): {done.stderr[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_gb = usage.ru_maxrss / 1024**2
    cpu = usage.ru_utime + usage.ru_stime  # wall time on a shared machine says little alone
    facts = json.loads(done.stdout)
    group_of: dict[str, int] = {}
    with open(work / "dups.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            group_of[row["key"]] = int(row["group"])
    key = "img/{:09d}.jpg".format
    found = sum(
        1 for s, c in pairs if group_of.get(key(s)) is not None and group_of.get(key(s)) == group_of.get(key(c))
    )
    recall = found / max(1, len(pairs))
    print(
        f"hspnet dedup: {wall:.0f} s wall ({cpu:.0f} s CPU), peak RSS {peak_gb:.2f} GB, index {facts['index']}, "
        f"{facts['groups']:,} groups ({facts['in_groups']:,} images); planted pairs found {found:,}/{len(pairs):,} "
        f"(recall {recall:.4f})"
    )
    print(
        json.dumps(
            {
                "benchmark": "dedup_scale",
                "n": args.n,
                "dim": args.dim,
                "planted_pairs": int(len(pairs)),
                "generate_seconds": round(gen_seconds, 1),
                "dedup_wall_seconds": round(wall, 1),
                "dedup_cpu_seconds": round(cpu, 1),
                "load_average": os.getloadavg(),
                "dedup_peak_rss_gb": round(peak_gb, 2),
                "index": facts["index"],
                "groups": facts["groups"],
                "in_groups": facts["in_groups"],
                "planted_recall": round(recall, 4),
                "cpu_count": os.cpu_count(),
                "extra": args.extra,
            }
        )
    )


if __name__ == "__main__":
    main()
