"""Label Studio exports: JSON (tasks with ``annotations``), JSON-MIN (one flat object a task) and CSV.

Both are JSON lists of tasks; each element's ``file:line`` is tracked for messages.

- Image: ``data.hspnet_path`` when present (``hspnet export-labels`` puts the tag run's key
  there, and Label Studio keeps task data as it is), else the image reference ``data.image``
  mapped back to a relative path (:func:`path_from_ref`).
- JSON: of a task's annotations, cancelled ones ("skipped") are ignored; a ``ground_truth``
  one wins, else the one updated last. Its ``choices`` results are the positives. A task
  without a usable annotation is *unlabelled*: it is left out (nobody looked at it; its
  ``predictions`` are the model's, not a person's) and counted in a note.
- JSON-MIN: each labelled task carries its answer under the Choices control's name
  (``labels`` in the config hspnet writes; any other name is found when it is the only
  answer key) as a string (one choice) or ``{"choices": [...]}``. An entry whose
  ``annotation_id`` is null or missing is a task nobody annotated: left out like above.
- CSV: JSON-MIN's columns, one task a row (several choices in one cell as
  ``{"choices": [...]}``; an empty ``annotation_id``: unlabelled).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import POSITIVE, Record, normalize_image_path
from hspnet_cli.data.readers.common import RawAnnotations, read_text

LOCAL_FILES = "/data/local-files/?d="
# Keys Label Studio's JSON-MIN export adds beside the task data and the answers.
_MIN_META = {
    "id",
    "annotator",
    "annotation_id",
    "created_at",
    "updated_at",
    "lead_time",
    "agreement",
    "drafts",
    "predictions",
    "meta",
    "file_upload",
    "inner_id",
    "total_annotations",
    "cancelled_annotations",
    "total_predictions",
    "project",
    "updated_by",
    "comment_count",
    "unresolved_comment_count",
    "last_comment_updated_at",
}
_IMAGE_KEYS = ("hspnet_path", "image")


class _JsonStream:
    """A JSON text read in chunks: a sliding buffer, absolute line numbers, file:line:col errors."""

    CHUNK = 1 << 20

    def __init__(self, path: Path, fh: Any) -> None:
        self.path, self.fh = path, fh
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.counted = 1, 0  # line number at buffer offset `counted`

    def more(self) -> bool:
        """Append the next chunk; False at the end of the file."""
        if self.eof:
            return False
        chunk = self.fh.read(self.CHUNK)
        self.eof = not chunk
        try:
            text = self.decoder.decode(chunk, final=self.eof)
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{self.path}:{self.line_at(len(self.buf))}: not UTF-8 text ({exc.reason}); save the file as UTF-8"
            ) from None
        if self.pos > self.CHUNK:  # drop what was consumed (amortised: at most once a chunk)
            self.line_at(self.pos)
            self.buf, self.counted, self.pos = self.buf[self.pos :], self.counted - self.pos, 0
        self.buf += text
        return not self.eof or bool(text)

    def line_at(self, i: int) -> int:
        if i >= self.counted:
            self.line += self.buf.count("\n", self.counted, i)
            self.counted = i
            return self.line
        return self.line - self.buf.count("\n", i, self.counted)

    def fail(self, i: int, what: str) -> UserError:
        col = i - (self.buf.rfind("\n", 0, i) + 1) + 1
        return UserError(f"{self.path}:{self.line_at(i)}:{col}: {what}")

    def peek(self) -> str:
        """The next non-blank character ('' at the end), skipping blanks."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos : self.pos + 1]


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON list with the line each starts on, read in 1 MiB chunks (a large
    export never sits in memory whole).

    Raises:
        UserError: Not a JSON list, malformed JSON or not UTF-8 (file:line:column).
    """
    decoder = json.JSONDecoder()
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        s = _JsonStream(path, fh)
        if s.peek() != "[":
            raise s.fail(s.pos, "expected a JSON list of tasks ('['), as Label Studio exports them")
        s.pos += 1
        if s.peek() == "]":
            return
        while True:
            start = s.pos
            while True:
                try:
                    obj, end = decoder.raw_decode(s.buf, start)
                    break
                except json.JSONDecodeError:
                    # An element cut by the chunk boundary: read on and decode it again.
                    if s.more():
                        start = s.pos  # more() may have moved the buffer
                        continue
                    try:
                        decoder.raw_decode(s.buf, s.pos)  # the whole rest: where the error really is
                    except json.JSONDecodeError as exc:
                        raise s.fail(exc.pos, f"not valid JSON ({exc.msg}); was the export cut short?") from None
                except (RecursionError, ValueError) as exc:  # absurd nesting; a number too long to read
                    what = (
                        "JSON nested too deeply to read"
                        if isinstance(exc, RecursionError)
                        else f"not valid JSON ({str(exc)[:100]})"
                    )
                    raise s.fail(start, f"{what}; is this a Label Studio export?") from None
            yield s.line_at(start), obj
            s.pos = end
            nxt = s.peek()
            if nxt == "]":
                return
            if nxt != ",":
                raise s.fail(s.pos, "expected ',' or ']' after a task; was the export cut short?")
            s.pos += 1
            s.peek()


def path_from_ref(ref: str, where: str) -> str:
    """A relative image path from an image reference as tools store it.

    Label Studio local files (``/data/local-files/?d=p``) give ``p``; ``http(s)://host/p`` gives
    ``p`` (scheme in any case); storage URIs (``s3://bucket/p``, ``gs://``, ``azure-blob://``)
    give the key ``p`` verbatim (the tools never decode keys); anything else is a path.
    References are ``/``-separated: a backslash is part of the name.
    """
    if ref.startswith(LOCAL_FILES):
        return normalize_image_path(unquote(ref[len(LOCAL_FILES) :]), where, keep_backslash=True)
    parsed = urlparse(ref)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return normalize_image_path(unquote(parsed.path).lstrip("/"), where, keep_backslash=True)
    if scheme and parsed.netloc and len(scheme) > 1:
        # Storage URIs: the object key verbatim after the bucket, as the tools read it ('#', '?'
        # and '%' are characters of the key, not a fragment, a query or an escape).
        key = ref.split("://", 1)[1].partition("/")[2]
        return normalize_image_path(key.lstrip("/"), where, keep_backslash=True)
    return normalize_image_path(ref, where, keep_backslash=True)


def _image(data: dict, where: str) -> str:
    for key in _IMAGE_KEYS:
        if isinstance(data.get(key), str):
            return (
                path_from_ref(data[key], where)
                if key == "image"
                else normalize_image_path(data[key], where, keep_backslash=True)
            )
    raise UserError(
        f"{where}: the task has no image (data.hspnet_path or data.image); export the tasks of an image project"
    )


def _csv_entries(path: Path) -> list[tuple[int, dict]]:
    """A Label Studio CSV export as JSON-MIN-like entries (empty cells left out; several choices
    are a JSON ``{"choices": [...]}`` cell)."""
    from hspnet_cli.data.readers.tabular import csv_rows

    rows = csv_rows(path, read_text(path))
    header = next(rows, None)
    if header is None:
        return []
    names = [c.strip() for c in header[1]]
    entries = []
    for line, cells in rows:
        if len(cells) != len(names):
            raise UserError(f"{path}:{line}: expected {len(names)} cells like the header, found {len(cells)}")
        entries.append((line, {k: v for k, v in zip(names, cells) if v != ""}))
    return entries


def _choices(value: Any, where: str) -> list[str]:
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)  # a CSV export's cell with several choices
        except (ValueError, RecursionError):
            pass
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UserError(
        f'{where}: expected chosen labels (a name, a list of names or {{"choices": [...]}}), '
        f"found {json.dumps(value)[:60]}"
    )


def _best_annotation(annotations: list) -> dict | None:
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not usable:
        return None
    truth = [a for a in usable if a.get("ground_truth")]
    pool = truth or usable
    return max(pool, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))


def _full_task(task: dict, where: str, counts: dict[str, int]) -> Record | None:
    data = task.get("data")
    if not isinstance(data, dict):
        raise UserError(f'{where}: a task without "data"; is this a Label Studio JSON export?')
    image = _image(data, where)
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise UserError(f'{where}: "annotations" must be a list')
    chosen = _best_annotation(annotations)
    if chosen is None:
        counts["unlabelled"] += 1
        return None
    counts["multi"] += sum(1 for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")) > 1
    names: list[str] = []
    results = chosen.get("result") or []
    if not isinstance(results, list):
        raise UserError(
            f'{where}: an annotation\'s "result" must be a list of results, found '
            f"{json.dumps(results)[:60]}; is this a Label Studio JSON export?"
        )
    for result in results:
        if isinstance(result, dict) and result.get("type") == "choices":
            names.extend(_choices(result.get("value"), where))
    return Record(image, where, dict.fromkeys((n.strip() for n in names if n.strip()), POSITIVE))


def _answer_key(entries: list[tuple[int, dict]]) -> str | None:
    keys: set[str] = set()
    for _, entry in entries:
        keys.update(k for k in entry if k not in _MIN_META and k not in _IMAGE_KEYS and not k.startswith("hspnet_"))
    if "labels" in keys:
        return "labels"
    with_choices = {k for _, e in entries for k in keys if isinstance(e.get(k), (dict, list))}
    if len(with_choices) == 1:
        return with_choices.pop()
    return keys.pop() if len(keys) == 1 else None


def read_label_studio(path: Path) -> RawAnnotations:
    """Read a Label Studio JSON or JSON-MIN export (see the module docstring).

    Raises:
        UserError: Not a JSON list of tasks, a task without an image, answers that are not
            label names, or (JSON-MIN) no way to tell which key holds the answers (file:line).
    """
    counts = {"unlabelled": 0, "multi": 0, "tasks": 0}
    records: list[Record] = []
    entries: list[tuple[int, dict]] = []  # JSON-MIN / CSV rows: small, and the answer key needs all of them
    if path.suffix.lower() == ".csv":
        entries = _csv_entries(path)
    else:
        full = None
        for line, obj in iter_json_array(path):
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{line}: expected a task object, found {type(obj).__name__}")
            if full is None:
                full = isinstance(obj.get("data"), dict) or "annotations" in obj
            if not full:
                entries.append((line, obj))
                continue
            # Full tasks are large (predictions, annotation history): turned into records one by one.
            counts["tasks"] += 1
            record = _full_task(obj, f"{path}:{line}", counts)
            if record is not None:
                records.append(record)
    if entries:
        key = _answer_key(entries)
        if key is None and any("annotation_id" in e for _, e in entries):
            raise UserError(
                f"{path}: cannot tell which key holds the answers in this JSON-MIN export; name the "
                "Choices control 'labels' (as hspnet export-labels does) or export as JSON"
            )
        for line, entry in entries:
            where = f"{path}:{line}"
            image = _image(entry, where)
            if entry.get("annotation_id") is None:  # a task nobody annotated: the key is null (1.23) or absent
                counts["unlabelled"] += 1
                continue
            names = _choices(entry[key], where) if key is not None and key in entry else []
            records.append(Record(image, where, dict.fromkeys((n.strip() for n in names if n.strip()), POSITIVE)))
    notes = []
    if counts["unlabelled"]:
        notes.append(
            f"{counts['unlabelled']} task(s) without an annotation left out as unlabelled "
            "(not negative); review them in Label Studio to include them"
        )
    if counts["multi"]:
        notes.append(
            f"{counts['multi']} task(s) have several annotations: the ground truth one, else the "
            "one updated last, was used"
        )
    if not records and (entries or counts["tasks"]):
        raise UserError(
            f"{path}: none of its {len(entries) or counts['tasks']} task(s) has an annotation yet; label some in "
            "Label Studio and export again"
        )
    return RawAnnotations(records, declared=None, files=[path], notes=notes)
