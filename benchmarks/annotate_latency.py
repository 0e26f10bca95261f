"""hspnet annotate: time from an answer to the next image on screen, and the server's memory.

A folder of N images is made cheaply (hard links of a few demo-world images spread over
sub-folders), a real `hspnet annotate` server is started on it, and headless Chromium answers
`--answers` images by number key, as fast as the page accepts them. Printed per folder size:

* start: seconds from launching the server to its URL (folder walk included);
* answer -> next image painted (browser + server; median and 95th percentile, ms);
* answer -> saved (the server's acknowledgement: appended, flushed and fsync'ed; ms);
* server RSS after start and after the answers, and its peak (VmHWM), MiB.

    python benchmarks/annotate_latency.py --sizes 1000,100000 --answers 100 [--zero-shot]

Needs Debian's chromium + chromium-driver and selenium (make test installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from annotate_helpers import Server, start_browser, wait_for  # noqa: E402


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def make_folder(root: Path, n: int, world: Path) -> Path:
    """``n`` images under ``root`` (1,000 a sub-folder), hard links of the world's first 50."""
    sources = sorted((world / "images").iterdir())[:50]
    folder = root / f"images-{n}"
    for i in range(n):
        sub = folder / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        os.link(sources[i % len(sources)], sub / f"img{i:07d}.png")
    return folder


def measure(folder: Path, taxonomy: Path, answers: int, extra: list[str], tmp: Path) -> dict:
    from selenium.webdriver.common.by import By

    start = time.monotonic()
    server = Server(folder, taxonomy, tmp / f"{folder.name}.jsonl", *extra)
    started = time.monotonic() - start
    rss_start, _ = rss_mib(server.proc.pid)
    browser = start_browser(tmp / f"profile-{folder.name}")
    try:
        browser.get(server.url)
        body = browser.find_element(By.TAG_NAME, "body")
        # Give the number keys a label: the first answer is a click on the first chip.
        shown = wait_for(
            browser,
            lambda b: (
                b.execute_script("return document.body.dataset.state") == "ready"
                and b.execute_script("return document.body.dataset.image")
            ),
            what="first image",
        )
        browser.find_element(By.CSS_SELECTOR, ".chip").click()
        for _ in range(answers - 1):
            shown = wait_for(
                browser,
                lambda b, before=shown: (
                    (d := b.execute_script("return document.body.dataset"))["state"] == "ready"
                    and d["image"] != before
                    and d["image"]
                ),
                what="next image",
            )
            body.send_keys("1")
        wait_for(browser, lambda b: b.execute_script("return document.body.dataset.pending") == "0", 120, "saves")
        shown_ms = browser.execute_script("return window.hspnetTimings.map(t => t.ms)")
        saved_ms = browser.execute_script("return window.hspnetSaves")
        rss_end, peak = rss_mib(server.proc.pid)
    finally:
        browser.quit()
        server.stop()
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]  # noqa: E731
    return {
        "images": sum(1 for _ in folder.rglob("*.png")),
        "start_s": round(started, 1),
        "next_image_ms_median": round(statistics.median(shown_ms), 1),
        "next_image_ms_p95": round(q(shown_ms, 0.95), 1),
        "saved_ms_median": round(statistics.median(saved_ms), 1),
        "saved_ms_p95": round(q(saved_ms, 0.95), 1),
        "rss_start_mib": round(rss_start, 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_peak_mib": round(peak, 1),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--zero-shot", action="store_true", help="Suggest with the tiny random CLIP (scoring cost).")
    parser.add_argument("--json", action="store_true", help="Print only the JSON.")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    extra = (
        ["--zero-shot", "--clip-model", "hspnet-tiny", "--pretrained", "none", "--device", "cpu"]
        if opts.zero_shot
        else []
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "hspnet_cli", "-q", "demo", "data", str(tmp / "world"), "--images", "50"], check=True
        )
        rows = []
        for n in (int(s) for s in opts.sizes.split(",")):
            folder = make_folder(tmp, n, tmp / "world")
            rows.append(measure(folder, tmp / "world" / "taxonomy.yaml", opts.answers, extra, tmp))
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"hspnet annotate, {opts.answers} answers by key" + (" (zero-shot suggester)" if opts.zero_shot else "")
    )
    for key in rows[0]:
        table.add_column(key.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
    Console(width=180).print(table)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
