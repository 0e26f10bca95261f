"""The image list format: one image path a line, any file name surviving a write -> read.

What ``hspnet select`` writes (``next.txt``) and what ``hspnet tag --list``, ``select
--exclude`` (a ``.txt``/``.lst``/``.list`` file), ``export-labels --only`` and ``annotate
--order`` read. One definition, here:

* UTF-8 text, ``\\n`` line ends (``\\r\\n`` read too); a file name that is not UTF-8 is written
  as its raw bytes (read back with ``surrogateescape``), so it survives byte for byte.
* A line is a path exactly as written: spaces at either end are part of the name.
* A line that is empty or only spaces is ignored.
* A line starting with ``#`` is a comment (hand-written lists may annotate themselves).
* A line starting with ``\\`` is an escaped name: that first backslash is dropped and the rest
  is the name verbatim. Writers put it before every name starting with ``#`` or ``\\`` (and
  before a name that is only spaces), and before nothing else, so ``#1.png`` is written
  ``\\#1.png`` and ``\\x.png`` is written ``\\\\x.png``; every other name is written as it is.
* A name holding a line break cannot be a line: such names are left out where images are
  discovered (:mod:`hspnet_cli.core.names`), and :func:`format_line` refuses them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.names import contained_path

ENCODING = ("utf-8", "surrogateescape")
LIST_SUFFIXES = (".txt", ".lst", ".list")


def format_line(name: str) -> str:
    """``name`` as one line of a list file (with its ``\\n``).

    Raises:
        ValueError: ``name`` holds a line break (no line can hold it).
    """
    if "\n" in name or "\r" in name:
        raise ValueError(f"image path {name!r} holds a line break; a list file cannot hold it")
    if name.startswith(("#", "\\")) or not name.strip():
        return "\\" + name + "\n"
    return name + "\n"


def format_list(names: Iterable[str]) -> bytes:
    """The bytes of a list file holding ``names`` in order."""
    return "".join(format_line(n) for n in names).encode(*ENCODING)


def parse_line(line: str) -> str | None:
    """The name on one line of a list file (line ending included or not), or None for a blank
    line or a comment."""
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    if line.startswith("\\"):
        return line[1:] if line[1:] else None
    if not line.strip() or line.startswith("#"):
        return None
    return line


def listed_paths(list_file: str | Path, root: str | Path, what: str, root_name: str) -> Iterator[str]:
    """The paths of a list file (see module doc) as relative keys under ``root``, in file order.

    Args:
        what: What the file is, for messages (``--list``).
        root_name: What ``root`` is, for messages (``IMAGES_DIR``).

    Raises:
        UserError: The file cannot be read, or a line points outside ``root`` (named by line).
    """
    try:
        fh = open(list_file, encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UserError(f"{list_file}: cannot read the {what} file ({exc.strerror or exc})") from None
    root_abs = os.path.abspath(root)
    with fh:
        for lineno, line in enumerate(fh, 1):
            # The list format (tagsfile.listfile): a path keeps its spaces byte-exact, as split does.
            text = parse_line(line)
            if text is None:
                continue
            rel = normalise_listed(text, root_abs)
            if rel is None:
                raise UserError(
                    f"{list_file}:{lineno}: '{text}' is not inside {root}; list paths relative to "
                    f"{root_name} or absolute paths inside it"
                )
            yield rel


def normalise_listed(text: str, root_abs: str) -> str | None:
    """A listed path as a relative POSIX key, or None when it leaves ``root_abs``.

    Absolute paths are made relative to ``root_abs`` first; the containment check itself is
    the one annotation readers use (:func:`hspnet_cli.core.names.contained_path`).
    """
    text = text.replace("\\", "/") if os.sep == "\\" else text
    if os.path.isabs(text):
        text = Path(os.path.relpath(os.path.normpath(text), root_abs)).as_posix()
    return contained_path(text)
