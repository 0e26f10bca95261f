"""What a ``hspnet tag SOURCE`` argument names: a folder, an fsspec URL prefix, or tar shards.

Rules (decisions, documented in docs/scaling.md):

* A SOURCE holding ``.tar`` after brace expansion (``shards/{000000..000099}.tar``,
  ``s3://b/shards/{0..9}.tar``, ``{a,b}``) or a single ``*.tar`` is a webdataset shard set.
* A SOURCE with ``://`` is an fsspec URL prefix (``s3://``, ``gs://``, ``file://``, ...).
* Anything else is a local folder.

Brace ranges follow bash: ``{000..012}`` keeps the zero padding of its first bound; ``{a,b}``
lists alternatives; several braces multiply (left to right).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from hspnet_cli.core.errors import UserError

_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def is_url(spec: str) -> bool:
    """True for ``scheme://...`` (an fsspec URL), False for local paths."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec) is not None


def is_tar_pattern(spec: str) -> bool:
    """True when SOURCE names tar shards (a ``.tar`` file or a brace pattern ending in ``.tar``)."""
    return spec.rstrip("/").endswith(".tar")


def expand_braces(pattern: str) -> Iterator[str]:
    """Every string ``pattern`` names, in order (see module doc).

    Raises:
        UserError: An unbalanced brace or an empty range.
    """
    start = pattern.find("{")
    if start < 0:
        if "}" in pattern:
            raise UserError(f"{pattern}: '}}' without '{{' in the shard pattern")
        yield pattern
        return
    end = pattern.find("}", start)
    if end < 0:
        raise UserError(f"{pattern}: '{{' without '}}' in the shard pattern")
    head, body, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    m = _RANGE.match(body)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        width = len(m.group(1)) if m.group(1).startswith("0") else 0
        step = 1 if hi >= lo else -1
        choices = [str(v).zfill(width) for v in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
        if len(choices) < 2:
            raise UserError(f"{pattern}: '{{{body}}}' is neither a range a..b nor a list a,b")
    for choice in choices:
        for rest in expand_braces(tail):
            yield head + choice + rest


def pattern_root(pattern: str) -> str:
    """The folder (or URL folder) a shard pattern's shards are named relative to: the text up to
    the last ``/`` before the first brace (``shards/{0..9}.tar`` -> ``shards``)."""
    cut = pattern.find("{")
    fixed = pattern if cut < 0 else pattern[:cut]
    slash = fixed.rfind("/")
    return fixed[:slash] if slash >= 0 else "."


def safe_url(url: str) -> str:
    """``url`` without a ``user:password@`` part, for messages and manifests."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)
