"""The escaping of text cells in tag outputs: valid UTF-8, one line a row, unambiguous lists,
no spreadsheet formulas, and every file name recoverable byte for byte.

A cell is the text with these characters written as escapes (and nothing else changed):

* ``\\`` -> ``\\\\`` (so the escapes below are unambiguous);
* a byte of the file name that is not UTF-8 -> ``\\xHH`` (HH >= 80; Python holds such names as
  ``surrogateescape`` characters U+DC80..U+DCFF, which is what :func:`unescape` gives back,
  and ``os.fsencode`` turns into the original bytes);
* control characters (U+0000..U+001F and U+007F, e.g. a newline in a file name) -> ``\\xHH``;
* in list cells (``tags``, ``groups``: names joined by ``;``) a ``;`` inside a name -> ``\\x3b``;
* a first character ``=``, ``+``, ``-``, ``@`` -> ``\\x3d``, ``\\x2b``, ``\\x2d``, ``\\x40``: a
  spreadsheet opening ``tags.csv`` would otherwise run the cell as a formula (formula injection
  through a crafted file name). Escaping keeps the cell exact for programs (they undo it with
  :func:`unescape`) where the usual ``'`` prefix would change the path.

A name needing none of these (almost every name) is written unchanged. ``\\xHH`` is always
two lower-case hex digits. Outputs written this way say ``"text_escaping": 1`` in their manifest.
"""

from __future__ import annotations

import re

TEXT_ESCAPING = 1
FORMULA_START = frozenset("=+-@")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")
_NEEDS = re.compile("[\\\\\x00-\x1f\x7f\udc80-\udcff;]")


def escape(text: str, list_item: bool = False) -> str:
    """``text`` as a cell (see the module docstring); ``list_item`` also escapes ``;``."""
    if not text:
        return text
    if _NEEDS.search(text) is None and text[0] not in FORMULA_START:
        return text
    out = []
    for i, ch in enumerate(text):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or (ch == ";" and list_item) or (i == 0 and ch in FORMULA_START):
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape(cell: str) -> str:
    """The text of a cell written by :func:`escape` (file names as ``surrogateescape`` strings)."""
    if "\\" not in cell:
        return cell

    def one(match: re.Match) -> str:
        body = match.group(1)
        if body == "\\":
            return "\\"
        code = int(body[1:], 16)
        return chr(0xDC00 + code) if code >= 0x80 else chr(code)

    return _ESCAPE.sub(one, cell)


def join_list(names: list[str]) -> str:
    """A ``;``-joined list cell of escaped names."""
    return ";".join(escape(n, list_item=True) for n in names)


def split_list(cell: str) -> list[str]:
    """The names of a list cell written by :func:`join_list` (``[]`` for an empty cell)."""
    return [unescape(part) for part in cell.split(";")] if cell else []
