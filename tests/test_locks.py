"""Output locks: a second writer fails at once naming the holder; a killed holder never blocks.

The holders are real second processes (``python -c`` taking the lock with the package's own
function, or a real ``hspnet`` command); the second writer is every command that writes an output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import invoke

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.locks import lock_path, output_lock

HOLD = r"""
import sys, time
from hspnet_cli.core.locks import output_lock
with output_lock(sys.argv[1], "test output"):
    print("held", flush=True)
    time.sleep(120)
"""


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture
def holder():
    """Start a process holding the lock of a path; yields a starter; kills what it started."""
    started: list[subprocess.Popen] = []

    def start(target: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True, env=_env()
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held", "holder did not start"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_second_writer_fails_at_once_naming_the_holder_and_a_killed_holder_never_blocks(holder, tmp_path) -> None:
    target = tmp_path / "tags.csv"
    proc = holder(target)
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        with output_lock(target, "tags file"):
            pass
    message = str(err.value)
    assert time.monotonic() - start < 2  # fails at once, no waiting
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message and "\n" not in message
    assert message.startswith(f"{target}: this tags file is being written by")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert lock_path(target).exists()  # left behind by the kill
    start = time.monotonic()
    with output_lock(target, "tags file"):  # ... and does not block
        assert time.monotonic() - start < 2
    assert not lock_path(target).exists()  # removed on release


def test_the_lock_is_reentrant_in_one_process_and_not_held_by_forked_children(tmp_path) -> None:
    target = tmp_path / "out.faiss"
    with output_lock(target):
        with output_lock(target):  # index merge -> index build
            pass
        child = os.fork()
        if child == 0:  # a DataLoader worker, say
            time.sleep(5)
            os._exit(0)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(target)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        assert probe.returncode == 0 and probe.stdout.strip() == "held", probe.stderr
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def _commands(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each writing command -> (the output it locks, its arguments). Inputs need not exist: the
    lock is taken before anything is read, so the lock error is what the user sees."""
    missing = tmp / "missing"
    return {
        "split": (tmp / "sp", ["split", missing / "a.csv", "-t", "voc", "-o", tmp / "sp"]),
        "train": (tmp / "run", ["train", "--split", missing, "--images", missing, "--out", tmp / "run"]),
        "train --resume": (tmp / "run", ["train", "--resume", tmp / "run"]),
        "tag": (tmp / "tags.csv", ["tag", missing, "--out", tmp / "tags.csv", "--checkpoint", missing / "m.pt"]),
        "tag --shard": (
            tmp / "tags.shard-1-of-2.csv",
            ["tag", missing, "--out", tmp / "tags.csv", "--checkpoint", missing / "m.pt", "--shard", "1/2"],
        ),
        "index build": (tmp / "t.faiss", ["index", "build", missing / "t.csv", "--out", tmp / "t.faiss"]),
        "index add": (tmp / "t.faiss", ["index", "add", tmp / "t.faiss", missing / "t.csv"]),
        "index merge": (tmp / "all.csv", ["index", "merge", tmp / "all.csv", missing / "s.csv"]),
        "export": (tmp / "m.pt", ["export", "--checkpoint", missing, "-o", tmp / "m.pt"]),
        "calibrate": (
            tmp / "thr.json",
            [
                "calibrate",
                "--checkpoint",
                missing,
                "--data",
                missing / "v.csv",
                "--images",
                missing,
                "--out",
                tmp / "thr.json",
            ],
        ),
        "demo data": (tmp / "world", ["demo", "data", tmp / "world", "--images", "3"]),
        "demo run": (tmp / "demo", ["demo", "run", tmp / "demo", "--images", "10"]),
    }


@pytest.mark.parametrize("command", list(_commands(Path("/x"))))
def test_every_writing_command_refuses_a_second_writer(command: str, holder, runner, tmp_path) -> None:
    target, args = _commands(tmp_path)[command]
    proc = holder(target)
    result = invoke(runner, *args)
    assert result.exit_code == 2, result.output
    err = " ".join(result.stderr.split())
    assert f"this {'test output'}" not in err and f"pid {proc.pid} on host" in err and "Traceback" not in err
    assert err.startswith(f"error: {target}: this ") and "wait for it to finish" in err


def test_two_real_tag_runs_into_one_out(demo_split, tmp_path) -> None:
    """Two ``hspnet tag`` processes at once: one tags everything, the other fails at once (the first
    is stopped with SIGSTOP once it holds the lock, so the overlap does not depend on timing)."""
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted(demo_split["images"].glob("*.png"))[:40]:
        (images / p.name).write_bytes(p.read_bytes())
    args = [
        sys.executable,
        "-m",
        "hspnet_cli",
        "tag",
        str(images),
        "--out",
        str(tmp_path / "tags.csv"),
        "--zero-shot",
        "-t",
        str(demo_split["taxonomy"]),
        "--clip-model",
        "hspnet-tiny",
        "--pretrained",
        "none",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 60
    while not lock_path(tmp_path / "tags.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # held mid-run, whatever the machine's speed
    try:
        second = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and f"pid {first.pid} on host" in " ".join(second.stderr.split())
    assert len((tmp_path / "tags.csv").read_text().splitlines()) == 41  # header + every image once
