"""What the annotate API accepts: bounded JSON bodies, every field checked for type and range.

A request that breaks these rules is answered 400 (413 for a body over :data:`MAX_BODY`) with
one line saying which field and why, and nothing is written: a malformed or hostile body can
neither reach the labels log nor make the server answer 500. Conflicts with the state of the
queue (an image leased to another tab, an answer already undone) are 409, raised elsewhere as
:class:`~hspnet_cli.core.errors.UserError`.

Rules:

* The body is a JSON object of at most :data:`MAX_BODY` bytes (an empty body is ``{}``).
  ``NaN``, ``Infinity``, numbers that overflow a float (``1e999``) and integers of more than
  18 digits are refused while parsing; so is nesting too deep to read.
* ``client``: text of 1 to :data:`MAX_CLIENT` printable characters (the page sends 24 hex
  digits); it is written with every answer, so its size is bounded.
* ``image``: text of 1 to 4096 characters; ``label``: text of at most 1000 characters, or null;
  ``kind``: ``answer``, ``none`` or ``skip``; ``annotator``: text of at most 80 characters, or
  null; ``seconds``: a finite number from 0 to one week, or null; ``want``: a whole number
  from 1 to 64; ``seq``: a whole number from 1 to 2**53.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_BODY = 64 * 1024
MAX_CLIENT = 128
MAX_SECONDS = 7 * 24 * 3600.0
_MAX_INT_DIGITS = 18


class BadRequest(Exception):
    """A request the API refuses whatever the state (answered 400, or ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _constant(name: str) -> Any:
    raise BadRequest(f"the request body holds {name}; numbers must be finite")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the request body holds the number {text[:40]}, too large to be finite")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise BadRequest(f"the request body holds a {len(text)}-digit number; numbers here are small")
    return int(text)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body (see the module docstring).

    Raises:
        BadRequest: Too large (413), not UTF-8 JSON, not an object, or a refused number.
    """
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the request body is over {MAX_BODY // 1024} KiB", status=413)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_constant, parse_float=_float, parse_int=_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # BadRequest from the hooks passes on
        what = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
        raise BadRequest(f"the request body is {what}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


def text(data: dict[str, Any], key: str, limit: int, required: bool = False, printable: bool = False) -> str | None:
    """Field ``key`` as text of at most ``limit`` characters (None when absent or null and not ``required``).

    Raises:
        BadRequest: Missing when required, not text, empty when required, too long, or (``printable``)
            holding a control character.
    """
    value = data.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing '{key}'")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be text, not {type(value).__name__}")
    if required and not value:
        raise BadRequest(f"'{key}' is empty")
    if len(value) > limit:
        raise BadRequest(f"'{key}' is over {limit} characters")
    if printable and not value.isprintable():
        raise BadRequest(f"'{key}' holds a control character")
    return value


def client(data: dict[str, Any]) -> str:
    """The tab's id (required; see the module docstring)."""
    value = text(data, "client", MAX_CLIENT, required=True, printable=True)
    assert value is not None
    return value


def whole(data: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    """Field ``key`` as a whole number in ``[low, high]`` (``default`` when absent).

    Raises:
        BadRequest: Missing without a default, not a whole number, or out of range.
    """
    value = data.get(key, default)
    if value is None:
        raise BadRequest(f"missing '{key}'")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be a whole number")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be from {low} to {high}")
    return value


def seconds(data: dict[str, Any]) -> float | None:
    """``seconds`` on screen: a finite number from 0 to a week, or None.

    Raises:
        BadRequest: Not a number or out of range.
    """
    value = data.get("seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("'seconds' must be a finite number")
    if not 0 <= value <= MAX_SECONDS:
        raise BadRequest(f"'seconds' must be from 0 to {int(MAX_SECONDS)}")
    return float(value)
