"""What every reader shares: reading text and JSON with useful errors, locating a JSON value's line,
and the raw result type."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.data.labelset import Record


@dataclass
class RawAnnotations:
    """A reader's result before it is mapped onto a taxonomy.

    Attributes:
        records: One per image entry, in source order (duplicates included).
        declared: Label names the source says it annotates, or None if it only lists positives.
        files: Every file read, for the input digest in split.yaml.
        notes: Format-specific remarks for the user (e.g. how many difficult objects were seen).
    """

    records: list[Record]
    declared: list[str] | None = None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a leading byte-order mark from spreadsheet exports dropped).

    Raises:
        UserError: The file is missing, unreadable or not UTF-8.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def parse_json(text: str, path: Path, fix: str, line: int | None = None) -> Any:
    """``json.loads(text)`` with every failure as one line naming ``path`` (and ``line``, for JSON Lines).

    Raises:
        UserError: Not JSON (with line and column), nested too deeply, or a number too long to read.
    """
    where = f"{path}:{line}" if line else str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"{line or exc.lineno}:{exc.colno}"
        raise UserError(f"{path}:{at}: not valid JSON ({exc.msg}); {fix}") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply to read; {fix}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{where}: not valid JSON ({str(exc)[:100]}); {fix}") from None


def json_path(steps: Sequence[str | int]) -> str:
    """``["annotations", 3, "image_id"]`` -> ``annotations[3].image_id``."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def json_where(path: Path, text: str, steps: Sequence[str | int]) -> str:
    """``file:line: json.path`` of the value at ``steps`` in the JSON ``text`` (the line of the
    enclosing value when it is missing). Walks the text with the standard decoder: for error
    messages only."""
    return f"{path}:{_json_line(text, steps)}: {json_path(steps)}"


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _json_line(text: str, steps: Sequence[str | int]) -> int:
    """1-based line of the value at ``steps``, or of the deepest enclosing value found when a step
    is missing (a key the object lacks)."""
    pos = reached = 0
    try:
        for step in steps:
            reached = pos = _skip_ws(text, pos)
            if isinstance(step, int):
                if text[pos] != "[":
                    break
                pos += 1
                for _ in range(step):
                    _, pos = _DECODER.raw_decode(text, _skip_ws(text, pos))
                    pos = _skip_ws(text, pos)
                    if text[pos] != ",":
                        raise ValueError("short array")
                    pos += 1
                continue
            if text[pos] != "{":
                break
            pos += 1
            while True:
                pos = _skip_ws(text, pos)
                if text[pos] != '"':
                    raise ValueError("key not found")
                key, pos = json.decoder.scanstring(text, pos + 1)
                pos = _skip_ws(text, pos)
                if text[pos] != ":":
                    raise ValueError("not JSON")
                pos = _skip_ws(text, pos + 1)
                if key == step:
                    break
                _, pos = _DECODER.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if text[pos] != ",":
                    raise ValueError("key not found")
                pos += 1
        else:
            reached = _skip_ws(text, pos)
    except (IndexError, ValueError, RecursionError):
        pass
    return text.count("\n", 0, reached) + 1


def describe(value: Any) -> str:
    """A value's JSON type and a short rendering of it, for messages: ``a list ([1, 2])``."""
    kind = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    try:
        shown = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # inf/nan are fine; only absurd nesting gets here
        shown = "..."
    return f"{kind} ({shown[:60]}{'...' if len(shown) > 60 else ''})"


def json_objects(path: Path, shape: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, object)`` for every non-blank line of a JSON Lines file.

    Args:
        shape: What an object holds (``with "image" and "labels"``), for the message on a line
            that is not an object.

    Raises:
        UserError: A line that is not JSON (file:line:column) or not an object.
    """
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        entry = parse_json(line, path, "write one JSON object a line", line=number)
        if not isinstance(entry, dict):
            raise UserError(
                f"{where}: the line is {describe(entry)}; write one JSON object a line" + (f" {shape}" if shape else "")
            )
        yield where, entry
