"""``hspnet select`` at a million images: time and memory, and the k-center trade-offs.

    .venv/bin/python benchmarks/select_1m.py                          # 1M x 1024, N = 1000
    .venv/bin/python benchmarks/select_1m.py --rows 200000 --dim 512 --n 500 --skip-full-pool

Writes (once, reused while the parameters match) a synthetic ``hspnet tag`` output under
``--dir``: ``tags.csv`` (1M paths), ``tags.emb.f32`` (1M x 1024 float32 = 4 GB, unit vectors
around 2,000 cluster centres with Zipf-like sizes, so some clusters are rare) and the manifest;
80 labels whose features are 80 of the centres (temperature 10, thresholds 0.9): the
probabilities the "csv + --checkpoint" path recomputes from the embeddings.

Then measures each phase in a fresh process: wall and CPU seconds (the machine is shared, so
CPU seconds say more than wall time) and peak *anonymous* memory above the interpreter's,
sampled from ``/proc/self/status`` (``RssAnon``: what the process allocated; pages of the
memory-mapped embedding file are page cache the kernel can drop, so they are not counted):

1. ``read``: :func:`read_tags_output` of the 1M-row tags.csv (paths and row offsets);
2. ``score``: the streaming pass over every label's probability (1M x 80, chunks of 16,384),
   recomputed from the embeddings as for a tags.csv with its model; ``score_jsonl``: the same
   pass reading them from a 100,000-row tags.jsonl (rows/s);
3. ``select mix``: the whole ``select_images`` call, default strategy and pool, with 20,000
   images excluded as labelled (they start the k-center as centres);
4. ``random`` and k-center alone (``--strategy diversity``) for pools of 20k / 100k (default) / all rows, at
   ``--dims`` 64 / 128 (PCA) and exact, against N random images: the covering radius and mean
   distance to the nearest pick over an evaluation sample of 100,000 rows (exact distances,
   FAISS), and how many of the 2,000 clusters the picks hit (rare clusters are what random misses).

The machine this ran on is printed (CPU count, load); the project's numbers are in docs/labeling-loop.md.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABELS = 80
CLUSTERS = 2000


class PeakAnon:
    """Samples RssAnon every 20 ms in a thread; ``peak_mib`` after the ``with`` block."""

    def __enter__(self) -> PeakAnon:
        self.peak, self.stop = 0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def _run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, _anon_kib())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, _anon_kib())

    @property
    def peak_mib(self) -> float:
        return round(self.peak / 1024, 1)


def _anon_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_world(root: Path, rows: int, dim: int, seed: int = 0) -> dict:
    """The synthetic tag output (see the module docstring); returns its facts."""
    params = {"rows": rows, "dim": dim, "seed": seed, "clusters": CLUSTERS, "labels": LABELS, "v": 1}
    marker = root / "params.json"
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((CLUSTERS, dim))).astype(np.float32)
    weights = 1.0 / np.arange(1, CLUSTERS + 1) ** 0.9
    cluster_of = rng.choice(CLUSTERS, size=rows, p=weights / weights.sum()).astype(np.int32)
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return {"centres": centres, "cluster_of": cluster_of}
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from hspnet_cli.tagsfile.factory import write_tag_output

    labels = [f"label{j:02d}" for j in range(LABELS)]
    groups = {f"group{g}": labels[g * 8 : (g + 1) * 8] for g in range(LABELS // 8)}

    def embeddings():  # streamed: 1M x 1024 float32 is 4 GB
        for s in range(0, rows, 65536):
            ids = cluster_of[s : s + 65536]
            x = centres[ids] + rng.standard_normal((len(ids), dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
            yield _unit(x).astype(np.float32)

    # No label reaches its 0.9 threshold: the csv carries no tags, as a model that is unsure would write.
    write_tag_output(
        root / "tags.csv",
        [f"d{i // 1000:04d}/{i:08d}.jpg" for i in range(rows)],
        (np.zeros((min(65536, rows - s), LABELS), np.float32) for s in range(0, rows, 65536)),
        embeddings(),
        labels=labels,
        groups=groups,
        thresholds=0.9,
        images_dir=root / "images",
        scorer="synthetic",
        taxonomy="synthetic",
    )
    marker.write_text(json.dumps(params))
    print(f"wrote the synthetic tag output in {time.perf_counter() - t0:.0f} s", flush=True)
    return {"centres": centres, "cluster_of": cluster_of}


def coverage_quality(emb: np.ndarray, picks: np.ndarray, eval_rows: np.ndarray, cluster_of: np.ndarray) -> dict:
    from hspnet_cli.selection.kcenter import min_sq_distances

    d = np.sqrt(min_sq_distances(np.asarray(emb[eval_rows], np.float32), np.asarray(emb[np.sort(picks)], np.float32)))
    return {
        "radius": round(float(d.max()), 4),
        "mean_dist": round(float(d.mean()), 4),
        "clusters_hit": int(len(np.unique(cluster_of[picks]))),
    }


def jsonl_rate(root: Path, labels: int, rows: int = 100_000) -> dict:
    """Rows/s of the scoring pass reading every label's probability from a tags.jsonl."""
    from hspnet_cli.selection.scores import ProbSource, image_stats
    from hspnet_cli.tagsfile.reader import read_tags_output

    sub = root / "jsonl"
    sub.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    from hspnet_cli.tagsfile.factory import write_tag_output

    manifest = json.loads((root / "tags.manifest.json").read_text())
    write_tag_output(
        sub / "tags.jsonl",
        [f"{i:08d}.jpg" for i in range(rows)],
        (rng.random((rows, labels)) ** 4).astype(np.float32),
        np.zeros((rows, 4), np.float32),
        labels=manifest["labels"],
        groups=manifest["groups"],
        thresholds=0.9,
        fmt="jsonl",
        images_dir=root / "images",
        scorer="synthetic",
        taxonomy="synthetic",
    )
    tags = read_tags_output(sub / "tags.jsonl")
    start = time.perf_counter()
    image_stats(
        ProbSource(tags, "jsonl", "bench"),
        np.full(labels, 0.9, np.float32),
        [np.arange(g * 8, (g + 1) * 8) for g in range(labels // 8)],
        np.ones(rows, bool),
        200,
    )
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def run_phase(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; its anonymous memory above the interpreter's."""
    import faiss  # noqa: F401 - imported before the baseline, like numpy

    from hspnet_cli.selection.kcenter import farthest_first
    from hspnet_cli.selection.scores import ProbSource, image_stats
    from hspnet_cli.selection.select import SelectOptions, select_images
    from hspnet_cli.tagsfile.reader import read_tags_output

    world = make_world(args.dir, args.rows, args.dim)
    base = _anon_kib()
    cpu = time.process_time()
    name, extra = args.phase, {}
    with PeakAnon() as m:
        if name == "score_jsonl":
            extra = jsonl_rate(args.dir, LABELS)
        else:
            tags = read_tags_output(args.dir / "tags.csv")
            source = ProbSource(
                tags, "model", "synthetic label features", features=world["centres"][:LABELS], logit_scale=10.0
            )
        if name == "score":
            image_stats(
                source,
                np.full(LABELS, 0.9, np.float32),
                [np.arange(g * 8, g * 8 + 8) for g in range(10)],
                np.ones(tags.n, bool),
                200,
            )
            extra = {"rows_per_s": round(tags.n / (time.perf_counter() - m.t0))}
        elif name == "select_mix":
            sel = select_images(
                args.dir / "tags.csv", SelectOptions(n=args.n, exclude=[str(args.dir / "labelled.txt")]), source=source
            )
            extra = {
                "phases": {k: round(v, 1) for k, v in sel.facts["seconds"].items()},
                "kcenter": sel.facts["kcenter"],
            }
        elif name.startswith("kcenter"):
            _, pool_size, dims = name.split(":")
            pool = (
                np.arange(tags.n)
                if int(pool_size) >= tags.n
                else np.random.default_rng(4).choice(tags.n, int(pool_size), replace=False)
            )
            picks = farthest_first(tags.embeddings(), pool, args.n, np.zeros(0, np.int64), dims=int(dims)).picks
    out = {
        "seconds": round(m.seconds, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "peak_anon_mib": round((m.peak - base) / 1024, 1),
        **extra,
    }
    if name.startswith("kcenter") or name == "random":
        if name == "random":
            picks = np.random.default_rng(3).choice(args.rows, args.n, replace=False)
            out = {}
        tags = read_tags_output(args.dir / "tags.csv")
        eval_rows = np.sort(np.random.default_rng(2).choice(tags.n, min(tags.n, 100000), replace=False))
        out.update(coverage_quality(tags.embeddings(), picks, eval_rows, world["cluster_of"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "hspnet-select-bench")
    ap.add_argument("--skip-full-pool", action="store_true", help="Leave out the k-center over every row.")
    ap.add_argument("--phase", help=argparse.SUPPRESS)  # internal: one measurement in a child process
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return

    import faiss

    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, faiss threads "
        f"{faiss.omp_get_max_threads()}; memory is anonymous memory above the interpreter's, per phase "
        "in a fresh process (the memory-mapped embeddings are page cache, not counted)",
        flush=True,
    )
    make_world(args.dir, args.rows, args.dim)
    rng = np.random.default_rng(1)
    paths = [f"d{i // 1000:04d}/{i:08d}.jpg" for i in np.sort(rng.choice(args.rows, 20000, replace=False))]
    (args.dir / "labelled.txt").write_text("".join(f"{p}\n" for p in paths))
    results: dict = {
        "rows": args.rows,
        "dim": args.dim,
        "n": args.n,
        "cpus": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 1),
    }
    # exact distances over a 100k pool read 400 MB a pick (minutes at N = 1000): 20k stands for "exact"
    variants = [(20000, 0), (20000, 128), (100000, 64), (100000, 128)]
    if not args.skip_full_pool:
        variants.append((args.rows, 64))
    phases = ["read", "score", "score_jsonl", "select_mix", "random"] + [f"kcenter:{p}:{d}" for p, d in variants]
    for phase in phases:
        cmd = [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--rows",
            str(args.rows),
            "--dim",
            str(args.dim),
            "--n",
            str(args.n),
            "--dir",
            str(args.dir),
        ]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{phase:24} {json.dumps(results[phase])}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
