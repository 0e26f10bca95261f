"""Atomic output: every file the tool writes appears complete or not at all.

A run that is killed half-way must never leave a truncated CSV or YAML that a later step would
read as valid. Writers therefore write to a temporary file in the same folder (same file
system, so ``os.replace`` is atomic) and rename it over the target only when it is complete.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hspnet_cli.core.errors import UserError

# OSErrors about the place being written, not about our data: the user fixes them by making room,
# fixing permissions or writing elsewhere. Anything else (EIO, EBADF...) keeps its traceback.
_OUTPUT_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free space on it (df -h) or write somewhere else"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or write somewhere else"),
    errno.EACCES: ("permission denied", "make the folder writable for you or write somewhere else"),
    errno.EPERM: ("operation not permitted", "make the folder writable for you or write somewhere else"),
    errno.EROFS: ("read-only file system", "write somewhere writable"),
    errno.EFBIG: ("file too large for this file system", "write to a file system that allows large files"),
}


class OutputError(UserError):
    """An output could not be written for a reason the user can fix (full disk, permissions).

    Attributes:
        path: The file or folder being written.
        errno: The OSError's errno.
    """

    def __init__(self, message: str, path: Path, err: int, what: str = "output") -> None:
        super().__init__(message)
        self.path, self.errno, self.what = path, err, what


def output_error(exc: OSError, path: str | os.PathLike, what: str = "output", then: str = "") -> OutputError | None:
    """The one-line :class:`OutputError` for an OSError on output, or None when it is not one of
    full disk / quota / permissions / read-only (those are bugs or hardware and keep their traceback).

    Args:
        exc: The error.
        path: What was being written.
        what: What it is ("tags file", "checkpoint").
        then: What to do after fixing the cause (default: rerun the same command).
    """
    known = _OUTPUT_ERRNOS.get(exc.errno or -1)
    if known is None:
        return None
    reason, fix = known
    then = then or "then rerun the same command"
    return OutputError(f"{path}: cannot write the {what}: {reason}; {fix}, {then}", Path(path), exc.errno or 0, what)


def output_error_in_message(
    exc: BaseException, path: str | os.PathLike, what: str = "output", then: str = ""
) -> OutputError | None:
    """:func:`output_error` for libraries that report a failed write as text only (faiss:
    "... write error in F: 4051 != 256000 (No space left on device)"): the errno is recognised
    by its ``strerror`` in the message."""
    text = str(exc)
    for number in _OUTPUT_ERRNOS:
        if os.strerror(number) in text:
            return output_error(OSError(number, os.strerror(number)), path, what, then)
    return None


@contextlib.contextmanager
def output_errors(path: str | os.PathLike, what: str = "output", then: str = "") -> Iterator[None]:
    """Turn a full disk, a quota or a permission error inside the block into one :class:`OutputError`
    line naming ``path`` (see :func:`output_error`). An OutputError from a nested write keeps
    its own path and gets this block's ``then`` (what to do next), when one is given."""
    try:
        yield
    except OutputError as exc:
        if not then:
            raise
        raise output_error(OSError(exc.errno, os.strerror(exc.errno)), exc.path, exc.what, then) from None
    except OSError as exc:
        err = output_error(exc, path, what, then)
        if err is None:
            raise
        raise err from None


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

    Raises:
        OutputError: A full disk, a quota or permissions (one line naming ``path``).
    """
    path = Path(path)
    with output_errors(path):
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        err = output_error(exc, path) if isinstance(exc, OSError) else None
        if err is not None:
            raise err from None
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
        pid = stale.name[len(prefix) :].split("-", 1)[0]
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
    except PermissionError:  # someone else's live process
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
