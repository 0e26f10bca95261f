"""The labels log ``hspnet annotate`` writes, read back as single-positive annotations.

The log is JSON Lines and append-only. Its first line is a header naming the format::

    {"format": "hspnet-annotate", "version": 1, "taxonomy": "demo", "labels": [...], ...}

and every later line is one event, numbered by ``seq`` (1, 2, ...):

* ``{"seq": 3, "event": "answer", "image": "a/b.png", "label": "cat", "rank": 2, ...}`` the
  annotator named one label they see (``rank``: the suggester's 1-based rank of that label,
  null without a suggester);
* ``{"seq": 4, "event": "none", "image": ...}`` no label of the taxonomy fits;
* ``{"seq": 5, "event": "skip", "image": ...}`` passed over without an answer;
* ``{"seq": 6, "event": "undo", "undoes": 3, ...}`` takes event 3 back (undo is an event of
  its own, so it is as durable as the answer it cancels).

Answer events also carry ``annotator``, ``seconds`` (time the image was on screen) and
``time`` (UTC, ISO 8601). An image's state is its last event that was not undone.

Read as annotations (``hspnet split labels.jsonl -t TAX``): each answered image has its one
positive and every other label *unknown* (0), never negative: the annotator named one label
they saw, and said nothing about the others. Images answered "no label fits" are kept as rows
without a positive, every label unknown: a single-positive split drops and counts them like
any image without a positive (the annotator looked at a handful of suggestions, not at every
label, so they are not evidence of negatives). Skipped and undone images are not annotations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, UNKNOWN, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations

LOG_FORMAT = "hspnet-annotate"
LOG_VERSION = 1
ANSWER_EVENTS = ("answer", "none", "skip")


def is_annotate_header(line: str) -> bool:
    """True when ``line`` (a log's first line) is the header of an ``hspnet annotate`` log."""
    return f'"{LOG_FORMAT}"' in line and line.lstrip().startswith("{")


@dataclass
class LogState:
    """What a log says after replaying every event.

    Attributes:
        header: The header object (first line).
        current: Image -> its effective event (the last one not undone), with ``line`` added.
        events: Every event by ``seq`` (answers and undos), for undo checks.
        last_seq: The highest ``seq`` in the file (0 when it holds only the header).
        torn_tail: Bytes offset where an incomplete last line starts (a write cut off by a
            kill before it was acknowledged), or None when the file ends cleanly.
    """

    header: dict[str, Any]
    current: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_seq: int = 0
    torn_tail: int | None = None

    def apply(self, event: dict[str, Any], where: str = "") -> None:
        """Fold one event into the state.

        Raises:
            UserError: An event that is malformed or undoes something it cannot (``where`` names it).
        """
        kind = event.get("event")
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq:
            raise UserError(
                f'{where}: event without a new increasing "seq" number; the log was edited by '
                "hand: restore it or remove the lines from here on"
            )
        if kind in ANSWER_EVENTS:
            image = event.get("image")
            if not isinstance(image, str) or not image:
                raise UserError(f'{where}: {kind} event without an "image"')
            if kind == "answer" and not isinstance(event.get("label"), str):
                raise UserError(f'{where}: answer event without a "label"')
            event["previous"] = self.current.get(image, {}).get("seq")
            self.current[image] = event
        elif kind == "undo":
            target = self.events.get(event.get("undoes"))  # type: ignore[arg-type]
            if target is None or target.get("event") not in ANSWER_EVENTS:
                raise UserError(f"{where}: undo of event {event.get('undoes')!r}, which is not an answer in this log")
            image = target["image"]
            if self.current.get(image) is not target:
                raise UserError(f"{where}: undo of event {target['seq']}, which is not the image's latest answer")
            previous = self.events.get(target.get("previous"))  # type: ignore[arg-type]
            if previous is None:
                del self.current[image]
            else:
                self.current[image] = previous
        else:
            raise UserError(f"{where}: unknown event {kind!r} (expected answer, none, skip or undo)")
        event["line"] = where
        self.events[seq] = event
        self.last_seq = seq


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line) for every line of ``path``."""
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, offset, raw
            offset += len(raw)


def replay_log(path: str | Path) -> LogState:
    """Replay an ``hspnet annotate`` log.

    A last line without its newline that does not parse is a write the kill cut short (it was
    never acknowledged to the page); it is reported in ``torn_tail`` instead of failing.

    Raises:
        UserError: The file is missing, not such a log, or has a malformed line (file:line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such labels file")
    state: LogState | None = None
    for number, offset, raw in _lines(path):
        where = f"{path}:{number}"
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if state is None:
                raise UserError(
                    f"{where}: not an hspnet annotate labels log (its first line is not JSON); choose "
                    "another --out file"
                ) from None
            if not raw.endswith(b"\n"):
                state.torn_tail = offset
                break
            raise UserError(f"{where}: not a JSON line ({exc}); the labels log was edited or damaged") from None
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected a JSON object")
        if state is None:
            if entry.get("format") != LOG_FORMAT:
                raise UserError(
                    f"{path}:1: not an hspnet annotate labels log (its first line is not the "
                    f'"{LOG_FORMAT}" header); choose another --out file'
                )
            if entry.get("version") != LOG_VERSION:
                raise UserError(
                    f"{path}:1: labels log version {entry.get('version')!r}; this hspnet reads version {LOG_VERSION}"
                )
            state = LogState(header=entry)
            continue
        state.apply(entry, where)
    if state is None:
        raise UserError(f"{path}: the labels log is empty (no header line)")
    return state


def read_annotate_log(path: Path) -> RawAnnotations:
    """Read a labels log as annotations: one positive per answered image, all else unknown.

    Raises:
        UserError: See :func:`replay_log`.
    """
    state = replay_log(path)
    records = []
    counts = dict.fromkeys(ANSWER_EVENTS, 0)
    for image, event in state.current.items():
        counts[event["event"]] += 1
        if event["event"] == "skip":
            continue
        values = {event["label"]: POSITIVE} if event["event"] == "answer" else {}
        records.append(
            Record(
                normalize_image_path(image, event["line"], keep_backslash=True), event["line"], values, default=UNKNOWN
            )
        )
    notes = [
        f"labels log: {counts['answer']} answered, {counts['none']} 'no label fits' (kept without a "
        f"positive), {counts['skip']} skipped (left out)"
    ]
    if state.torn_tail is not None:
        notes.append("the last line was cut off by a kill before it was acknowledged; it is ignored")
    return RawAnnotations(records, declared=None, files=[path], notes=notes)
