"""The labels log on disk: append-only, every event flushed and fsync'ed before it is acknowledged.

Format and replay rules live with the reader (:mod:`hspnet_cli.data.readers.annotate_log`), so
what ``hspnet split`` reads is exactly what this writes. One process writes a log at a time (an
exclusive ``flock`` on ``LOG.lock``); a second ``hspnet annotate`` on the same file is refused
instead of interleaving lines.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import statistics
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write
from hspnet_cli.data.readers.annotate_log import LOG_FORMAT, LOG_VERSION, LogState, is_annotate_header, replay_log
from hspnet_cli.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def labels_digest(names: list[str]) -> str:
    """A short digest of a label order (a log written for other labels is refused)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LabelStore:
    """Appends annotation events to the log and keeps the replayed state in memory.

    Thread-safe: every method takes the store's lock, so answers from several tabs are
    written one whole line at a time, in ``seq`` order.
    """

    def __init__(self, path: str | Path, taxonomy: Taxonomy, images_dir: str | Path) -> None:
        self.path = Path(path)
        self.taxonomy = taxonomy
        self.lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                first = fh.readline(1 << 20).decode("utf-8", "replace")
            if not is_annotate_header(first):  # refuse before leaving a lock file beside the user's file
                raise UserError(
                    f'{self.path}:1: not an hspnet annotate labels log (no "{LOG_FORMAT}" header); '
                    "choose another --out file"
                )
        self._lock_fh = open(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise UserError(
                f"{self.path}: another hspnet annotate is writing this labels file; stop it first, "
                "or open its URL (several annotators can share one server)"
            ) from None
        try:
            self._open(images_dir)
        except BaseException:
            self._lock_fh.close()
            raise

    def _open(self, images_dir: str | Path) -> None:
        """Replay an existing log (dropping a torn last line) or start one with its header."""
        taxonomy = self.taxonomy
        digest = labels_digest(taxonomy.label_names)
        if self.path.exists() and self.path.stat().st_size > 0:
            self.state = replay_log(self.path)
            if self.state.header.get("labels_digest") != digest:
                raise UserError(
                    f"{self.path}: this labels log was written for other labels (taxonomy "
                    f"'{self.state.header.get('taxonomy')}'); pass the same taxonomy or another --out"
                )
            if self.state.torn_tail is not None:
                # Cut off mid-line by a kill: never acknowledged, so dropping it loses no answer.
                log.warning("%s: dropping an incomplete last line (a write cut off by a kill)", self.path)
                with open(self.path, "r+b") as fh:
                    fh.truncate(self.state.torn_tail)
                    os.fsync(fh.fileno())
                self.state.torn_tail = None
            self._end_last_line()
            self._fh = open(self.path, "ab", buffering=0)
        else:
            header = {
                "format": LOG_FORMAT,
                "version": LOG_VERSION,
                "taxonomy": taxonomy.name,
                "labels_digest": digest,
                "labels": list(taxonomy.label_names),
                "images_dir": os.path.abspath(images_dir),
                "created": utc_now(),
                "hspnet_version": __version__,
            }
            self.state = LogState(header=header)
            with atomic_write(self.path) as fh:  # a log either has its whole header or does not exist
                fh.write(json.dumps(header, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._fh = open(self.path, "ab", buffering=0)

    def _end_last_line(self) -> None:
        """Give a last line that lacks its newline one (an editor or a copy dropped it, or a whole
        event was written but not its ``\\n``), so the next event starts a line of its own
        instead of being glued onto it (which would make the log unreadable)."""
        with open(self.path, "r+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                log.warning("%s: the last line had no line end; adding it before appending", self.path)
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())

    def _append(self, obj: dict[str, Any]) -> None:
        """Write one line and make it durable before returning (flush + fsync).

        A write that fails part way (a full disk) is cut back off, so the log never keeps half a
        line that the next event would be glued onto.
        """
        data = (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
        fd = self._fh.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # unbuffered: a short write is continued, a failed one leaves no buffered rest
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the reader drops a torn last line; the error below is what the page hears
            raise

    def close(self) -> None:
        """Close the log and release the writer lock."""
        with self.lock:
            self._fh.close()
            self._lock_fh.close()

    def is_done(self, image: str) -> bool:
        """True when ``image`` has an effective answer, 'none' or skip."""
        return image in self.state.current

    def record(
        self,
        kind: str,
        image: str,
        *,
        label: str | None = None,
        annotator: str = "",
        seconds: float | None = None,
        rank: int | None = None,
        client: str = "",
    ) -> dict[str, Any]:
        """Append an answer (``answer``), ``none`` or ``skip`` event and return it (as written).

        Raises:
            UserError: An unknown label or event kind.
        """
        if kind not in ("answer", "none", "skip"):
            raise UserError(f"unknown answer kind {kind!r}; expected answer, none or skip")
        if kind == "answer" and label not in self.taxonomy.label_names:
            raise UserError(f"label {label!r} is not in taxonomy '{self.taxonomy.name}'")
        with self.lock:
            event: dict[str, Any] = {"seq": self.state.last_seq + 1, "event": kind, "image": image}
            if kind == "answer":
                event["label"] = label
            event.update(
                {
                    "rank": rank if kind == "answer" else None,
                    "annotator": annotator,
                    "seconds": None if seconds is None else round(float(seconds), 3),
                    "client": client,
                    "time": utc_now(),
                }
            )
            self._append(event)
            written = dict(event)
            self.state.apply(event, f"{self.path}:seq {event['seq']}")
            return written

    def undo(self, seq: int, annotator: str = "", client: str = "") -> dict[str, Any]:
        """Append an undo of event ``seq`` and return the undone event.

        Raises:
            UserError: ``seq`` is not an answer, or the image was answered again since.
        """
        with self.lock:
            target = self.state.events.get(seq)
            if target is None or target.get("event") not in ("answer", "none", "skip"):
                raise UserError(f"event {seq} is not an answer in {self.path}; nothing to undo")
            if self.state.current.get(target["image"]) is not target:
                raise UserError(f"event {seq} was already undone or replaced by a later answer")
            event = {
                "seq": self.state.last_seq + 1,
                "event": "undo",
                "undoes": seq,
                "annotator": annotator,
                "client": client,
                "time": utc_now(),
            }
            self._append(event)
            self.state.apply(event, f"{self.path}:seq {event['seq']}")
            return target

    def status(self, total: int) -> dict[str, Any]:
        """Counts over the whole log for the status view: labelled, median seconds, labels used, annotators.

        ``total`` is passed through (the size of the server's queue, which may be a part of the log's images).
        """
        with self.lock:
            events = list(self.state.current.values())
        kinds = Counter(e["event"] for e in events)
        # finite only: a log written before seconds were checked may hold NaN, which no JSON answer can carry
        seconds = [
            e["seconds"]
            for e in events
            if e["event"] != "skip"
            and isinstance(e.get("seconds"), (int, float))
            and not isinstance(e["seconds"], bool)
            and math.isfinite(e["seconds"])
        ]
        used = Counter(e["label"] for e in events if e["event"] == "answer")
        ranks = [e["rank"] for e in events if e["event"] == "answer" and isinstance(e.get("rank"), int)]
        return {
            "total": total,
            "labelled": kinds["answer"] + kinds["none"],
            "answered": kinds["answer"],
            "none_fits": kinds["none"],
            "skipped": kinds["skip"],
            "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
            "suggestion_top1": round(sum(r == 1 for r in ranks) / len(ranks), 3) if ranks else None,
            "labels_used": dict(used.most_common()),
            "annotators": dict(Counter(e.get("annotator") or "?" for e in events if e["event"] != "skip")),
            "log": str(self.path),
            "time": time.time(),
        }
