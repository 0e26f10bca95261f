"""Index at scale: `hspnet index build` over N x 512 synthetic float16 .npy shards.

Measures the build (wall time, peak RSS of the build process, per-phase seconds from its
sidecar), then recall@10 of the built index against exact search for 1,000 held-out queries
(the exact top 10 by a scan streamed over the shards, 65,536 rows at a time), for several
nprobe values, with search latency. The data come from benchmarks/index_scale_data.py
(clustered, low intrinsic dimension; 1M rows a shard), generated once and reused.

    python benchmarks/index_scale.py --n 1000000 --data /tmp/idx-data
    python benchmarks/index_scale.py --n 10000000 --data /tmp/idx-data     # ~10 GB of shards

Ends with one JSON line of every number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index_scale_data import generate  # noqa: E402


def exact_truth(
    files: list[Path], queries: np.ndarray, k: int, cache: Path, wait: bool = True
) -> tuple[np.ndarray, float]:
    """(q, k) exact top-k global ids over the shards, streamed; cached in ``cache``; (ids, seconds)."""
    running = cache.with_name(cache.name + ".running")
    while wait and running.exists() and not cache.is_file():  # another process (--truth-only) is computing it
        time.sleep(10)
    if cache.is_file():
        return np.load(cache), float(
            json.loads(running.read_text() or "{}").get("seconds", 0)
        ) if running.exists() else 0.0
    from hspnet_cli.index.scale_build import exact_topk_blocks

    t0 = time.perf_counter()

    def blocks():
        first = 0
        for f in files:
            arr = np.load(f, mmap_mode="r")
            for a in range(0, arr.shape[0], 65536):
                block = np.array(arr[a : a + 65536], dtype=np.float32)
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                yield first + a, block
            first += arr.shape[0]

    truth = exact_topk_blocks(queries, blocks(), k)
    np.save(cache, truth)
    return truth, time.perf_counter() - t0


def truth_only(data: Path, n: int) -> None:
    """Compute and cache the exact top 10 (to run beside the build, in another process)."""
    files = sorted(data.glob("emb-*.npy"))[: (n + 999_999) // 1_000_000]
    cache = data / f"truth-{sum(np.load(f, mmap_mode='r').shape[0] for f in files)}.npy"
    running = cache.with_name(cache.name + ".running")
    running.write_text("")
    truth, seconds = exact_truth(files, np.load(data / "queries.npy"), 10, cache, wait=False)
    running.write_text(json.dumps({"seconds": round(seconds, 1)}))
    print(f"exact top-10 over {len(files)} shards: {seconds:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--data", type=Path, required=True, help="Shard folder (generated when missing).")
    ap.add_argument("--out", type=Path, default=None, help="Index path (default DATA/index-N.faiss).")
    ap.add_argument("--factory", default="IVF1024,PQ128x8")
    ap.add_argument("--train-size", type=int, default=65536)
    ap.add_argument("--layout", default="ondisk")
    ap.add_argument("--nprobes", default="8,16,32,64,128")
    ap.add_argument("--truth-only", action="store_true", help="Only compute the exact top 10 (beside a build).")
    args = ap.parse_args()
    if args.truth_only:
        truth_only(args.data, args.n)
        return

    shard_rows = 1_000_000
    t0 = time.perf_counter()
    files = generate(args.data, ((args.n + shard_rows - 1) // shard_rows) * shard_rows, 512, shard_rows)
    files = files[: (args.n + shard_rows - 1) // shard_rows]
    gen_s = time.perf_counter() - t0
    n = sum(np.load(f, mmap_mode="r").shape[0] for f in files)
    out = args.out or args.data / f"index-{n}.faiss"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "hspnet_cli",
        "index",
        "build",
        *map(str, files),
        "--out",
        str(out),
        "--factory",
        args.factory,
        "--train-size",
        str(args.train_size),
        "--layout",
        args.layout,
        "--recall-queries",
        "0",
        "--nprobe",
        "16",
        "--json",
    ]
    print("build:", " ".join(cmd[2:]), flush=True)
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    build_s = time.perf_counter() - t1
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}): {proc.stderr[-2000:]}")
    facts = json.loads(proc.stdout)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    build_rss_mb = children.ru_maxrss / 1024
    build_cpu_s = children.ru_utime + children.ru_stime  # CPU time: comparable on a busy, shared machine
    print(
        f"built {n:,} x 512 in {build_s:.0f} s (train {facts['seconds']['train']} s, add "
        f"{facts['seconds']['add']} s); CPU {build_cpu_s:.0f} s; peak RSS {build_rss_mb:,.0f} MB; layout "
        f"{facts['layout']}",
        flush=True,
    )

    queries = np.load(args.data / "queries.npy")
    cpu0 = time.process_time()
    truth, truth_s = exact_truth(files, queries, 10, args.data / f"truth-{n}.npy")
    truth_cpu_s = time.process_time() - cpu0
    print(f"exact top-10 of {len(queries)} queries over {n:,} vectors: {truth_s:.0f} s (streamed)", flush=True)

    from hspnet_cli.index.build import set_search_params
    from hspnet_cli.index.scale_build import recall
    from hspnet_cli.index.store import load_index

    t2 = time.perf_counter()
    idx = load_index(out)
    load_s = time.perf_counter() - t2
    curve = {}
    for nprobe in [int(v) for v in args.nprobes.split(",")]:
        set_search_params(idx.index, f"nprobe={nprobe}")
        t3 = time.perf_counter()
        r = recall(idx.index, queries, truth)
        batch_ms = (time.perf_counter() - t3) * 1000 / len(queries)
        t4 = time.perf_counter()
        for q in queries[:100]:
            idx.index.search(q[None, :], 10)
        single_ms = (time.perf_counter() - t4) * 1000 / 100
        curve[nprobe] = {
            "recall_at_10": round(r, 4),
            "ms_per_query_batch": round(batch_ms, 3),
            "ms_per_query_single": round(single_ms, 3),
        }
        print(
            f"nprobe {nprobe:4d}: recall@10 {r:.4f}  {batch_ms:.2f} ms/query (batch of 1000), "
            f"{single_ms:.2f} ms (one at a time)",
            flush=True,
        )
    key = idx.paths[int(truth[0, 0])]
    sizes = {p.name: p.stat().st_size for p in out.parent.glob(f"{out.name}*") if p.is_file()}
    own_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "n": n,
        "dim": 512,
        "factory": args.factory,
        "layout": facts["layout"],
        "train_size": args.train_size,
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "build_phases_s": facts["seconds"],
        "build_peak_rss_mb": round(build_rss_mb),
        "build_cpu_s": round(build_cpu_s, 1),
        "exact_truth_s": round(truth_s, 1),
        "exact_truth_cpu_s": round(truth_cpu_s, 1),
        "load_s": round(load_s, 2),
        "recall": curve,
        "index_bytes": sizes,
        "bench_peak_rss_mb": round(own_rss_mb),
        "example_key": key,
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "nice": os.nice(0),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
