"""Reading YAML someone else wrote: safe tags only, and bounded in size, nesting and alias expansion.

``yaml.safe_load`` never runs code, but it happily reads a 1 KB "billion laughs" file: nine
levels of nine aliases each stand for 9**9 strings. PyYAML itself shares the aliased objects,
so the blow-up comes later, in whatever walks the document (validation took minutes and
gigabytes, and its error text ran to megabytes). Every YAML hspnet reads (taxonomies, configs,
presets, ``split.yaml``, ``--set`` values) goes through :func:`load_yaml`, which refuses:

* files larger than :data:`MAX_BYTES` (read no further than that);
* nesting deeper than :data:`MAX_DEPTH` (PyYAML's composer recurses per level);
* aliases that stand for more than :data:`MAX_ALIAS_VALUES` values in all, counted as the
  document is composed, before anything is built from it; small aliases (``groups: {a: *all}``)
  still work;
* an alias inside its own anchor (a document that contains itself).

Each refusal is one line naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode

from hspnet_cli.core.errors import UserError

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_VALUES = 100_000


class BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that enforces the depth and alias bounds while composing (see module doc)."""

    source: str = "<yaml>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self._alias_values = 0

    def _refuse(self, mark: Any, problem: str) -> UserError:
        return UserError(f"{self.source}:{mark.line + 1}: {problem}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        is_alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        if is_alias:
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # its anchor is still being composed: the value would contain itself
                raise self._refuse(
                    mark, "an alias (*name) refers to itself from inside its anchor; write the values out"
                )
            self._alias_values += size
            if self._alias_values > MAX_ALIAS_VALUES:
                raise self._refuse(
                    mark,
                    f"aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values "
                    "(an alias bomb?); write the values out instead of aliasing them",
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._refuse(mark, f"nested deeper than {MAX_DEPTH} levels; hspnet files are flat")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        return node

    def dispose(self) -> None:
        super().dispose()
        self._sizes.clear()


def read_yaml_text(path: str | Path, what: str = "YAML file") -> str:
    """The text of a YAML file, refused when larger than :data:`MAX_BYTES` or not UTF-8.

    Raises:
        UserError: Missing, unreadable, too large or not UTF-8.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise UserError(
            f"{path}: larger than {MAX_BYTES // 2**20} MiB; a {what} is never that big (is it the right file?)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None


def load_yaml(text: str, source: str, loader_class: type[BoundedLoader] = BoundedLoader) -> Any:
    """Parse one YAML document safely and within the bounds above.

    Args:
        text: The document.
        source: What to call it in messages (a path, or e.g. ``--set model.n_ctx``).
        loader_class: :class:`BoundedLoader` or a subclass (the taxonomy loader keeps line numbers).

    Raises:
        UserError: Not valid YAML, an unsafe tag, or a bound exceeded; one line with file:line.
    """
    if len(text) > MAX_BYTES:
        raise UserError(f"{source}: larger than {MAX_BYTES // 2**20} MiB; refusing to parse it")
    loader = None
    try:
        loader = loader_class(text)  # the reader checks every character here
        loader.source = source
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise UserError(
            f"{source}:{line}: not valid YAML ({exc.reason} character {exc.character!r}); remove it"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = str(exc.problem or exc.context or "")[:200]
        raise UserError(f"{where}: not valid YAML ({problem}); fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({str(exc)[:200]})") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """:func:`read_yaml_text` then :func:`load_yaml`."""
    return load_yaml(read_yaml_text(path, what), str(path))
