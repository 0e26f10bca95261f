"""``hspnet tag --engine ray`` against ``--engine local`` on this machine, on demo-world images.

Run on demand (never part of the tests):

    python benchmarks/ray_tag.py                      # 20,000 demo images, both engines, once each
    python benchmarks/ray_tag.py --images 2000        # a quicker look

What it does: generates N demo-world images (PNG, small) and a tiny model trained one epoch and
exported to one file (the actors load the same weights as the local run), then times the real
CLI (a subprocess each) writing ``--format parquet``:

* ``local``: ``--engine local --workers W`` (DataLoader workers decode, the main process scores);
* ``ray``: ``--engine ray`` with no address, so the CLI starts a local Ray on this machine's cores
  (one model actor, decode tasks on the other cores).

For each: wall time of the whole command (interpreter and model start included), the tagging
loop's images/s as the command reports it, and for Ray where the time went (the engine's
``engine_timings``: joining/starting Ray, time to the first scored rows, which is Ray start-up
plus actor start-up plus the first block's decoding, and the rest). Memory per worker: the
peak RSS of each process of the command's tree, sampled every 0.5 s from /proc (for Ray: the
driver, raylet, GCS, the model actor, each decode task worker). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(work: Path, n: int) -> tuple[Path, Path]:
    """(images folder with n demo images, exported tiny model)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_train import tiny

    from hspnet_cli.data.split import SplitOptions, make_split
    from hspnet_cli.demo.world import generate_demo_world
    from hspnet_cli.scoring.export import export_model
    from hspnet_cli.train.loop import train

    if (work / "model.pt").is_file() and len(list((work / "world" / "images").glob("*.png"))) == n:
        return work / "world" / "images", work / "model.pt"  # inputs of an earlier run (--work)
    generate_demo_world(work / "train-world", n_images=120, seed=0)
    make_split(
        work / "train-world" / "annotations.csv",
        work / "train-world" / "taxonomy.yaml",
        work / "split",
        options=SplitOptions(mode="single-positive", val_fraction=0.25, seed=0),
    )
    train(
        work / "split",
        work / "train-world" / "images",
        work / "run",
        tiny(**{"train.epochs": 1}),
        taxonomy=work / "train-world" / "taxonomy.yaml",
        device="cpu",
    )
    model = export_model(work / "run" / "best.ckpt", work / "model.pt")
    generate_demo_world(work / "world", n_images=n, seed=1)
    return work / "world" / "images", model


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, title, RSS bytes) of every process, from /proc (Linux)."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/statm") as fh:
                rss = int(fh.read().split()[1]) * page
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        first = argv[0].decode(errors="replace") if argv and argv[0] else ""
        if first.startswith("ray::"):
            title = first.split()[0]
        else:
            title = first.rsplit("/", 1)[-1] + (
                " " + argv[2].decode(errors="replace") if len(argv) > 2 and argv[1] == b"-m" else ""
            )
        table[int(entry)] = (ppid, title[:60], rss)
    return table


class TreeMemory:
    """Peak RSS per process of a process tree (by title), sampled from /proc in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = pid
        self.peak: dict[int, tuple[str, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            table = _proc_table()
            tree, frontier = {self.root}, [self.root]
            while frontier:
                parent = frontier.pop()
                for pid, (ppid, _, _) in table.items():
                    if ppid == parent and pid not in tree:
                        tree.add(pid)
                        frontier.append(pid)
            for pid in tree & set(table):
                _, title, rss = table[pid]
                old = self.peak.get(pid, (title, 0))
                self.peak[pid] = (title, max(old[1], rss))
            self.stop.wait(0.5)

    def finish(self) -> dict[str, list[float]]:
        self.stop.set()
        self.thread.join()
        by_name: dict[str, list[float]] = {}
        for name, rss in self.peak.values():
            by_name.setdefault(name, []).append(round(rss / 2**20, 1))
        return by_name


def run_cli(args: list[str]) -> tuple[dict, float, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hspnet_cli", *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    mem = TreeMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    memory = mem.finish()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"hspnet tag failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out), wall, memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1, help="local engine's DataLoader workers")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out-json", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="ray-tag-bench-"))
    t = time.perf_counter()
    images, model = make_inputs(work, a.images)
    setup = time.perf_counter() - t
    common = [
        "tag",
        str(images),
        "--checkpoint",
        str(model),
        "--format",
        "parquet",
        "--device",
        "cpu",
        "--batch-size",
        str(a.batch_size),
        "--block-size",
        str(a.block_size),
    ]
    results = {}
    for engine in ("local", "ray"):
        extra = ["--engine", engine] + (["--workers", str(a.workers)] if engine == "local" else [])
        summary, wall, memory = run_cli([*common, "--out", str(work / f"out-{engine}"), "--overwrite", *extra])
        results[engine] = {
            "wall_s": round(wall, 1),
            "loop_s": summary["seconds"],
            "images_per_second": summary["images_per_second"],
            "wall_images_per_second": round(summary["rows"] / wall, 1),
            "rows": summary["rows"],
            "engine_timings": summary.get("engine_timings", {}),
            "peak_rss_mib": memory,
        }
    ratio = results["ray"]["images_per_second"] / results["local"]["images_per_second"]
    report = {
        "images": a.images,
        "cpus": os.cpu_count(),
        "setup_s": round(setup, 1),
        "ray_over_local": round(ratio, 3),
        "ray_over_local_wall": round(results["local"]["wall_s"] / results["ray"]["wall_s"], 3),
        **results,
    }
    for engine, r in results.items():
        print(
            f"{engine:6s} wall {r['wall_s']:8.1f} s  loop {r['loop_s']:8.1f} s  {r['images_per_second']:8.1f} img/s "
            f"(loop)  {r['wall_images_per_second']:8.1f} img/s (wall)  {r['engine_timings']}"
        )
        for name, mibs in sorted(r["peak_rss_mib"].items()):
            print(f"    {name:50s} x{len(mibs):<3d} peak RSS {max(mibs):8.1f} MiB each (max)")
    print(f"ray / local (loop rate): {ratio:.3f}")
    print(json.dumps(report))
    if a.out_json:
        a.out_json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
