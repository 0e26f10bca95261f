"""Decoder chatter goes to a log file next to the output, per image, never to the terminal.

Decoding millions of files from the wild makes libraries talk: Pillow's ``UserWarning``s
("Truncated File Read", "Possibly corrupt EXIF data"), records of the ``PIL`` loggers, and C
libraries (libtiff's ``TIFFFetchNormalTag: Warning, ...``, libjpeg's "Corrupt JPEG data")
writing straight to file descriptor 2, which no Python-level redirection sees. A run over
Pillow's own test images printed 584 such lines between its progress bars.

:meth:`ChatterLog.capture` surrounds the decoding of one image (in whichever process decodes
it: a DataLoader worker, or the main process with ``--workers 0``): it records Python
warnings, ``PIL`` log records of level WARNING and above, and points fd 2 at a private
temporary file for the duration, so C-level messages land there too. Afterwards each message
becomes a line of ``STEM.decode.log``::

    <path as in tags.csv>\\t<warning|log|stderr>\\t<message, whitespace collapsed>

appended with one ``write`` per image on an ``O_APPEND`` descriptor, so workers never split
each other's lines. The terminal gets counts (:func:`count_since`). Whatever the main
process's other threads write to fd 2 during those milliseconds (a progress bar refresh with
``--workers 0``) is captured too and shows up in the log; nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hspnet_cli.tagsfile.escape import escape


class _Collect(logging.Handler):
    def __init__(self, sink: list[tuple[str, str]]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(("log", f"{record.name}: {record.getMessage()}"))


class ChatterLog:
    """Captures what decoding one image says and appends it to ``path`` (None: capture nothing)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._sink: IO[bytes] | None = None
        self._pid = -1
        self._handler = _Collect([])  # one handler, its list swapped per image (a new one costs ~10 us)

    def __getstate__(self) -> dict:  # sent to spawned workers: the temp file is per process
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def _fd2_sink(self) -> IO[bytes]:
        if self._sink is None or self._pid != os.getpid():  # a forked worker makes its own
            self._sink, self._pid = tempfile.TemporaryFile(), os.getpid()
        return self._sink

    @contextlib.contextmanager
    def capture(self, name: str) -> Iterator[None]:
        """Record everything said while the block decodes image ``name``."""
        if self.path is None:
            yield
            return
        messages: list[tuple[str, str]] = []
        sink = self._fd2_sink()
        with contextlib.suppress(Exception):
            sys.stderr.flush()  # Python-level text written before the swap stays on the terminal
        try:
            saved: int | None = os.dup(2)
        except OSError:  # no fd 2 at all (a daemon started with it closed): nothing to redirect
            saved = None
        if saved is not None:
            os.dup2(sink.fileno(), 2)
        pil = logging.getLogger("PIL")
        handler, propagate = self._handler, pil.propagate
        handler.sink = messages
        pil.addHandler(handler)
        pil.propagate = False
        catcher = warnings.catch_warnings(record=True)
        caught = catcher.__enter__()
        warnings.simplefilter("always")
        try:
            yield
        finally:
            catcher.__exit__(None, None, None)
            pil.removeHandler(handler)
            pil.propagate = propagate
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            messages[:0] = [("warning", f"{w.category.__name__}: {w.message}") for w in caught]
            messages += [("stderr", line) for line in _drain(sink) if line.strip()]
            if messages:
                self._append(name, messages)

    def _append(self, name: str, messages: list[tuple[str, str]]) -> None:
        cell = escape(name)
        text = "".join(f"{cell}\t{source}\t{' '.join(str(msg).split())}\n" for source, msg in messages)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, text.encode("utf-8", "backslashreplace"))
            finally:
                os.close(fd)
        except OSError:
            pass  # a full disk must not fail the image; the count then comes out short


def _drain(sink: IO[bytes]) -> list[str]:
    if os.fstat(sink.fileno()).st_size == 0:  # the usual case: one syscall
        return []
    sink.seek(0)
    data = sink.read()
    sink.seek(0)
    sink.truncate()
    return data.decode("utf-8", "backslashreplace").splitlines()


def log_size(path: str | os.PathLike) -> int:
    """The log's size now (0 when absent): where this invocation's lines will start."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def count_since(path: str | os.PathLike, offset: int) -> tuple[int, int]:
    """(messages, images) in the log after byte ``offset``."""
    path = Path(path)
    if not path.is_file():
        return 0, 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        lines = fh.read().splitlines()
    return len(lines), len({line.split(b"\t", 1)[0] for line in lines})
