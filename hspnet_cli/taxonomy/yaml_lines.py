"""YAML reading that remembers line numbers and refuses duplicate keys.

``yaml.safe_load`` silently keeps the last of two equal mapping keys (a group listed twice
loses its first members) and forgets where each value came from. Validation messages must
name the line to fix, so this loader, still a ``SafeLoader`` underneath, returns strings
that carry their 1-based line number and raises on duplicate keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hspnet_cli.errors import UserError


class LineStr(str):
    """A ``str`` that also knows the 1-based line it was read from (``line`` is 0 if unknown)."""

    line: int = 0

    def __new__(cls, value: str, line: int = 0) -> "LineStr":
        obj = super().__new__(cls, value)
        obj.line = line
        return obj


def line_of(value: Any) -> int:
    """The line a loaded value came from, or 0 when it carries none."""
    return getattr(value, "line", 0)


class _LineLoader(yaml.SafeLoader):
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
        UserError: The file is missing, unreadable, not valid YAML, or has a duplicate key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    loader = _LineLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: not valid YAML ({exc.problem or exc.context}); fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    finally:
        loader.dispose()
