"""The whole loop on the demo world: images -> one click each in a browser -> HSPNet -> tags for everything.

A scripted headless Chromium plays the annotator: for every image the page shows, it names one
of the image's true labels (the world's ground truth, a seeded choice among them), by clicking
the label or, when it is among the suggestions or recent labels, by pressing its number key.

    python examples/annotate/loop.py OUT [--images 400] [--annotate 200] [--epochs 10] [--round2 40]

1. ``hspnet demo data``: a world of ``--images`` images with known labels.
2. ``hspnet annotate --order first.txt --only-listed``: the first ``--annotate`` images are labelled
   in the browser (no suggester yet: labels are shown by group); the rest is held out as test.
3. ``hspnet split labels.jsonl``: one positive per image, every other label unknown.
4. ``hspnet train`` (demo preset, tiny random-init model) and ``hspnet eval`` on the held-out images.
5. ``hspnet tag`` every image of the world with the trained checkpoint.
6. Round 2: ``hspnet annotate --checkpoint RUN`` on ``--round2`` more images: the trained model's
   suggestions come first, and the log records the rank of the label the annotator chose.
   A screenshot of this page is written to ``OUT/annotate-page.png``.

Needs Debian's ``chromium`` + ``chromium-driver`` and ``selenium`` (``make test`` installs them).
Prints a JSON summary (also written to ``OUT/loop-summary.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,900",
]


STAGE_SECONDS: dict[str, float] = {}


def hspnet(*args: object) -> str:
    """Run one hspnet command as a user would; return its stdout (its wall time goes to STAGE_SECONDS)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hspnet_cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"hspnet {' '.join(map(str, args[:2]))} failed ({done.returncode}): {done.stderr.strip()}")
    STAGE_SECONDS[str(args[0])] = round(STAGE_SECONDS.get(str(args[0]), 0) + time.monotonic() - start, 1)
    return done.stdout


def browser(profile: Path):  # type: ignore[no-untyped-def]
    """Headless Debian Chromium through selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise SystemExit("needs Debian's Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROME_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def annotate_round(
    out: Path, args: list[object], truth: dict[str, list[str]], rng: random.Random, screenshot: Path | None = None
) -> dict:
    """Serve ``hspnet annotate ARGS``, answer every image from the ground truth, stop the server."""
    from selenium.webdriver.common.by import By

    start = time.monotonic()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hspnet_cli",
            "annotate",
            *map(str, args),
            "--port",
            "0",
            "--json",
            "--annotator",
            "scripted",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    text = ""
    while not text.rstrip().endswith("}"):
        line = server.stdout.readline()
        if not line:
            raise SystemExit("hspnet annotate did not start")
        text += line
    url = json.loads(text)["url"]
    page = browser(out / "chromium-profile")
    answered = keyed = 0
    try:
        page.get(url)
        body = page.find_element(By.TAG_NAME, "body")
        shown = None
        while True:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                data = page.execute_script("return document.body.dataset")
                if data.get("state") == "done" or (data.get("state") == "ready" and data.get("image") != shown):
                    break
                time.sleep(0.02)
            else:
                raise SystemExit(f"the page stopped at {data}")
            if data["state"] == "done":
                break
            shown = data["image"]
            if screenshot is not None and answered == 3:
                page.save_screenshot(str(screenshot))
            choices = [c.text for c in page.find_elements(By.CSS_SELECTOR, ".choice .name")]
            label = rng.choice(truth[shown])
            on_keys = [name for name in choices if name in truth[shown]]
            if on_keys:  # a true label on a number key: press it, as a person would
                label = on_keys[0]
                body.send_keys(str(choices.index(label) + 1))
                keyed += 1
            else:
                page.find_element(By.CSS_SELECTOR, f".chip[data-label='{label}']").click()
            answered += 1
        while page.execute_script("return document.body.dataset.pending") != "0":
            time.sleep(0.05)
        timings = [t["ms"] for t in page.execute_script("return window.hspnetTimings")]
    finally:
        page.quit()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    STAGE_SECONDS["annotate"] = round(STAGE_SECONDS.get("annotate", 0) + time.monotonic() - start, 1)
    return {
        "answered": answered,
        "by_number_key": keyed,
        "answer_to_next_image_ms_median": round(statistics.median(timings), 1) if timings else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--annotate", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--round2", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    out: Path = opts.out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(opts.seed)
    world = out / "world"
    if not (world / "annotations.csv").exists():
        hspnet("demo", "data", world, "--images", opts.images, "--seed", opts.seed)
    with open(world / "annotations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = {row["image"]: [n for n in row["labels"].split(";") if n] for row in rows}
    labelled = [img for img in sorted(truth) if truth[img]]
    first, second = labelled[: opts.annotate], labelled[opts.annotate : opts.annotate + opts.round2]
    held_out = [img for img in sorted(truth) if img not in set(first) | set(second)]
    (out / "first.txt").write_text("# round 1\n" + "\n".join(first) + "\n")
    (out / "second.txt").write_text("# round 2\n" + "\n".join(second) + "\n")
    with open(out / "test.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "labels"])
        writer.writerows([img, ";".join(truth[img])] for img in held_out)

    taxonomy, images, log = world / "taxonomy.yaml", world / "images", out / "labels.jsonl"
    summary: dict = {"world_images": len(truth), "held_out_test_images": len(held_out)}
    summary["round1"] = annotate_round(
        out, [images, "-t", taxonomy, "-o", log, "--order", out / "first.txt", "--only-listed"], truth, rng
    )
    hspnet(
        "split",
        log,
        "-t",
        taxonomy,
        "-o",
        out / "split",
        "--val-fraction",
        "0.2",
        "--test",
        out / "test.csv",
        "--overwrite",
    )
    trained = json.loads(
        hspnet(
            "train",
            "--split",
            out / "split",
            "--images",
            images,
            "--out",
            out / "run",
            "--preset",
            "demo",
            "--epochs",
            opts.epochs,
            "--workers",
            "0",
            "--overwrite",
            "--json",
        )
    )
    test = json.loads(
        hspnet(
            "eval", "--checkpoint", out / "run", "--data", out / "split" / "test.csv", "--images", images, "--json", "-"
        )
    )
    hspnet(
        "tag",
        images,
        "--out",
        out / "tags" / "tags.csv",
        "--checkpoint",
        out / "run",
        "--workers",
        "0",
        "--overwrite",
        "--top-k",
        "3",
    )
    summary["train"] = {
        "best_val_map": trained.get("best_val_map", trained.get("best", {})),
        "test_map": test.get("mAP", test.get("map")),
    }
    summary["tagged_rows"] = sum(1 for _ in open(out / "tags" / "tags.csv")) - 1
    if second:
        summary["round2"] = annotate_round(
            out,
            [
                images,
                "-t",
                taxonomy,
                "-o",
                log,
                "--order",
                out / "second.txt",
                "--only-listed",
                "--checkpoint",
                out / "run" / "best.ckpt",
                "--device",
                "cpu",
            ],
            truth,
            rng,
            out / "annotate-page.png",
        )
        events = [json.loads(line) for line in log.read_text().splitlines()[1:]]
        ranked = [e for e in events if e.get("rank") is not None]
        ranks = [e["rank"] for e in ranked]
        summary["round2"]["chosen_label_rank_median"] = statistics.median(ranks) if ranks else None
        summary["round2"]["chosen_label_in_top3"] = round(sum(r <= 3 for r in ranks) / len(ranks), 3) if ranks else None
        # What a suggester ranking labels at random would give: P(one of an image's t true labels in the top 3).
        n = len(json.loads(log.read_text().splitlines()[0])["labels"])
        chance = [1 - math.comb(n - len(truth[e["image"]]), 3) / math.comb(n, 3) for e in ranked]
        summary["round2"]["in_top3_if_suggestions_were_random"] = round(statistics.mean(chance), 3) if chance else None
    summary["seconds"] = STAGE_SECONDS
    (out / "loop-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
