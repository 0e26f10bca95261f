"""What every reader shares: reading text with useful errors, and the raw result type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hspnet_cli.data.labelset import Record
from hspnet_cli.errors import UserError


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
        line = data[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None


def json_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, object)`` for every non-blank line of a JSON Lines file.

    Raises:
        UserError: A line that is not JSON (file:line:column) or not an object.
    """
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}:{exc.colno}: not valid JSON ({exc.msg}); write one JSON object a line") from None
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected one JSON object a line")
        yield where, entry
