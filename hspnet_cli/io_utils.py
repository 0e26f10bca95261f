"""Atomic output: every file the tool writes appears complete or not at all.

A run that is killed half-way must never leave a truncated CSV or YAML that a later step would
read as valid. Writers therefore write to a temporary file in the same folder (same file
system, so ``os.replace`` is atomic) and rename it over the target only when it is complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it to ``path``.

    Args:
        path: Final destination. Its parent folder is created if missing.
        mode: ``"w"`` for text or ``"wb"`` for bytes.
        encoding: Text encoding (ignored for binary mode).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and
        ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates owner-only files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json_object(path: str | os.PathLike, what: str, fix: str = "") -> dict[str, Any]:
    """Read a JSON file that must hold an object (a manifest, a sidecar, a progress record).

    Args:
        path: The file.
        what: What the file is, for messages ("tags manifest").
        fix: What the user should do, appended to every message ("rerun with --overwrite").

    Raises:
        UserError: Missing, unreadable or not a JSON object; the message names the file.
    """
    from hspnet_cli.errors import UserError

    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{tail}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc}){tail}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the {what} must be a JSON object{tail}")
    return data


def _umask() -> int:
    """The process umask (read by setting and restoring it; os has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def staging_dir(out_dir: str | os.PathLike) -> Path:
    """A new hidden folder beside ``out_dir`` to build it in, for :func:`replace_dir`.

    Its name, ``.NAME.partial-HOST-PID-*``, says which process made it, so the staging folders
    of runs that were killed (kill -9, power loss: no cleanup ran) are removed here, by the next
    run, when their process on this host is gone. Folders of live processes and of other hosts
    (a shared file system) are left alone.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    host = _host_tag()
    prefix = f".{out_dir.name}.partial-{host}-"
    for stale in out_dir.parent.glob(f"{glob.escape(prefix)}*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if stale.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out_dir.parent))


def _host_tag() -> str:
    import socket

    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's live process
        return True
    return True


def replace_dir(tmp: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Rename a finished folder ``tmp`` to ``out_dir``, replacing an empty folder or an old one.

    The caller has already checked that an existing ``out_dir`` may be replaced. The old folder
    is moved aside before the new one is renamed in, so a failure between the two renames leaves
    the old contents recoverable (in a hidden ``.NAME.old-*`` folder) rather than a mix of both.
    """
    tmp, out_dir = Path(tmp), Path(out_dir)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp folders are owner-only; outputs should not be
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
