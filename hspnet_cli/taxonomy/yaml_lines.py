"""YAML reading that remembers line numbers and refuses duplicate keys.

``yaml.safe_load`` silently keeps the last of two equal mapping keys (a group listed twice
loses its first members) and forgets where each value came from. Validation messages must
name the line to fix, so this loader, a :class:`~hspnet_cli.core.safe_yaml.BoundedLoader` (safe tags,
bounded size, depth and aliases) underneath, returns strings that carry their 1-based line
number and raises on duplicate keys. JSON taxonomies are read with :mod:`json` (exact JSON
rules, duplicate keys refused) and then, where YAML can read the same text, with this loader
for the line numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.safe_yaml import BoundedLoader, load_yaml, read_yaml_text


class LineStr(str):
    """A ``str`` that also knows the 1-based line it was read from (``line`` is 0 if unknown)."""

    line: int = 0

    def __new__(cls, value: str, line: int = 0) -> LineStr:
        obj = super().__new__(cls, value)
        obj.line = line
        return obj


def line_of(value: Any) -> int:
    """The line a loaded value came from, or 0 when it carries none."""
    return getattr(value, "line", 0)


class _LineLoader(BoundedLoader):
    """SafeLoader whose strings are :class:`LineStr` and whose mappings reject duplicate keys."""

    source: str = "<yaml>"


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> LineStr:
    return LineStr(loader.construct_scalar(node), node.start_mark.line + 1)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as exc:
            raise UserError(
                f"{loader.source}:{key_node.start_mark.line + 1}: a mapping key must be a plain value"
            ) from exc
        if key in mapping:
            first = next(k for k in mapping if k == key)
            raise UserError(
                f"{loader.source}:{key_node.start_mark.line + 1}: duplicate key '{key}' "
                f"(first at line {line_of(first)}); merge the two entries into one"
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_LineLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_with_lines(path: str | Path) -> Any:
    """Read a YAML file safely, keeping line numbers on strings.

    Args:
        path: The file to read.

    Returns:
        The document, with every string a :class:`LineStr`.

    Raises:
        UserError: The file is missing, unreadable, too large, not valid YAML, beyond the
            alias or nesting bounds, or has a duplicate key.
    """
    return load_yaml(read_yaml_text(path, "taxonomy"), str(path), _LineLoader)


def load_json_with_lines(path: str | Path) -> Any:
    """Read a JSON file (a taxonomy written as JSON), with line numbers on strings where possible.

    JSON is parsed by :mod:`json` first, so its rules and its errors (line and column) are
    JSON's own. YAML 1.1 reads almost every JSON text too, and then gives the line numbers;
    where it cannot (tab indentation, for one), the values come without them.

    Raises:
        UserError: Missing, unreadable, too large, not valid JSON, too deep, or a duplicate key.
    """
    text = read_yaml_text(path, "taxonomy")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise UserError(f"{path}: duplicate key '{key[:80]}'; merge the two entries into one")
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); fix the syntax there") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{path}: not valid JSON ({str(exc)[:100]})") from None
    try:
        return load_yaml(text, str(path), _LineLoader)
    except UserError:
        return data  # valid JSON that YAML 1.1 reads differently: right values, no line numbers
