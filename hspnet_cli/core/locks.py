"""Exclusive output locks: one writer per output, and a dead writer never blocks the next one.

Every function that writes an output (a split folder, a run folder, a tags file, an index, an
export, a thresholds file, a demo folder) holds :func:`output_lock` on it while it works. The
lock is ``fcntl.flock`` on a hidden file beside the output, ``.NAME.lock``:

* a second writer fails at once (non-blocking) with one line naming the holder: pid, host,
  start time and command line, which the holder writes into the lock file;
* the kernel drops the lock when its process dies (kill -9, OOM killer, power loss of the
  process), so a rerun after a crash is never blocked by a lock left behind;
* forked children (DataLoader workers) close their inherited copy at fork, so a worker that
  outlives a killed parent does not hold the lock; should one still hold it (forked before the
  lock was taken), a holder whose pid is gone is waited for a few seconds, not reported;
* the holder removes the lock file on release; a waiter that opened the file just before it
  was removed sees that it locked a removed file and tries again, so two processes can never
  both believe they hold it;
* one process may take the same lock again (nested calls: ``index merge`` builds its index with
  ``index build``'s function); it is released when the outermost holder finishes.

On network file systems flock is as reliable as the file system's locking (NFSv4: yes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from hspnet_cli.core.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; outputs are then unlocked
    fcntl = None  # type: ignore[assignment]

DEAD_HOLDER_WAIT_S = 10.0
_held: dict[str, list[int]] = {}  # lock file (absolute) -> [fd, depth]


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output: ``.NAME.lock`` in the output's folder."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


def _close_inherited() -> None:
    """In a forked child: close the inherited lock descriptors (the parent keeps its locks: a
    flock is released only when every descriptor of it is closed) and forget them."""
    for fd, _depth in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


def _holder_text() -> bytes:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    program = "hspnet" if program in ("__main__.py", "hspnet_cli") else program  # python -m hspnet_cli
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": " ".join([program, *sys.argv[1:]])[:300],
        }
    ).encode()


def read_holder(path: str | os.PathLike) -> dict:
    """What the lock file at ``path`` says about its holder ({} when empty or unreadable)."""
    try:
        data = json.loads(Path(path).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_gone(holder: dict) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    from hspnet_cli.core.io_utils import _pid_alive

    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    return not _pid_alive(holder["pid"])


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (just starting)"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


def _acquire(lock: Path, target: Path, what: str) -> int:
    deadline: float | None = None
    while True:
        from hspnet_cli.core.io_utils import output_errors

        with output_errors(target, what):
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(lock)
            if _pid_gone(holder):
                # Its forked children still hold the descriptor for a moment after a kill -9.
                deadline = deadline or time.monotonic() + DEAD_HOLDER_WAIT_S
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
            raise UserError(
                f"{target}: this {what} is being written by {_describe(holder)}; wait for it to "
                f"finish or write somewhere else (lock: {lock})"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed it between our open and our flock
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text(), 0)
        except OSError:
            pass  # a full disk must not stop the lock: the holder is then described as "just starting"
        return fd


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Hold the exclusive lock of output ``target`` for the duration of the block.

    Args:
        target: The output (file or folder) being written; it need not exist yet.
        what: What it is, for the message ("tags file", "run folder").

    Yields:
        The lock file's path.

    Raises:
        UserError: Another live process holds it (the message names its pid, host and command).
    """
    lock = lock_path(target)
    key = str(lock)
    if fcntl is None:
        yield lock
        return
    if key in _held:
        _held[key][1] += 1
        try:
            yield lock
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(lock, Path(target), what)
    _held[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: see the module docstring
        os.close(fd)


def is_rank_zero(env: dict[str, str] | None = None) -> bool:
    """True unless this is a non-zero rank of a torchrun launch (those share rank 0's outputs)."""
    env = os.environ if env is None else env
    return env.get("RANK", "0") in ("0", "")
