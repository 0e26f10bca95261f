"""The one rule for file names: which names the tools carry, decided where images are found.

Rule (refuse with a count, the same everywhere):

* A name holding a **control character** (U+0000..U+001F, U+007F: a line break, a tab, NUL) is
  left out where images are discovered (``hspnet tag``'s folder walk and ``--list``,
  ``hspnet annotate``'s folder walk and ``--order``) and counted, with a warning naming one of
  them. Every format we write is one line a record, and the split CSV that training reads is
  plain UTF-8 CSV, so such a name could be tagged and labelled but never trained on; leaving it
  out at the door means every log and export our tools write is one ``hspnet split`` reads.
* A name that is **not valid UTF-8** (Python holds it as ``surrogateescape`` characters) is
  tagged, indexed and searched (those outputs escape it byte for byte, see
  :mod:`hspnet_cli.tagsfile.escape`), but the labeling loop's formats are UTF-8 text read by
  browsers and labeling tools: ``hspnet annotate`` leaves such names out with a count,
  ``export-labels`` refuses them with the row named, and ``hspnet split`` refuses them with a
  one-line message (the split CSV is UTF-8).
* A name holding a **backslash** is a legal POSIX name and travels exactly through tags, lists,
  the annotate log, Label Studio and the split CSV; CVAT, FiftyOne and Hugging Face's
  imagefolder read it as a folder separator, so ``export-labels`` refuses it for those tools
  (row named), and ``hspnet annotate`` (whose image URLs refuse backslashes) leaves it out with
  a count.

Rename the files to include them.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections import Counter

log = logging.getLogger(__name__)

CONTROL = re.compile("[\x00-\x1f\x7f]")
NOT_UTF8 = re.compile("[\udc80-\udcff]")
# How a name left out is counted among a run's skipped files (beside the skipped extensions).
CONTROL_KEY = "(name with a line break, tab or control character)"
NOT_UTF8_KEY = "(name that is not UTF-8)"
BACKSLASH_KEY = "(name with a backslash)"


def has_control(name: str) -> bool:
    """True when ``name`` holds a control character (line break, tab, NUL...)."""
    return CONTROL.search(name) is not None


def is_utf8(name: str) -> bool:
    """True when ``name`` (a ``surrogateescape`` string) is valid UTF-8."""
    return NOT_UTF8.search(name) is None


def name_problem(name: str, utf8: bool = False, backslash: bool = False) -> str | None:
    """Why ``name`` is left out, as a :data:`CONTROL_KEY` / :data:`NOT_UTF8_KEY` /
    :data:`BACKSLASH_KEY` key, or None.

    Args:
        name: A relative image path (a ``surrogateescape`` string).
        utf8: Also refuse names that are not valid UTF-8 (the labeling loop's rule).
        backslash: Also refuse names holding a backslash (where they would be read as a folder
            separator: the annotate server's image URLs refuse them).
    """
    if has_control(name):
        return CONTROL_KEY
    if utf8 and not is_utf8(name):
        return NOT_UTF8_KEY
    if backslash and "\\" in name:
        return BACKSLASH_KEY
    return None


class LeftOut:
    """Counts the names left out by the rule and warns once per reason, naming the first one."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.counts: Counter = Counter()

    def check(self, name: str, utf8: bool = False, backslash: bool = False) -> bool:
        """True when ``name`` is kept; otherwise count it (and warn the first time for its reason)."""
        problem = name_problem(name, utf8, backslash)
        if problem is None:
            return True
        if not self.counts[problem]:
            log.warning(
                "%s: leaving out %r and any other %s; rename such files to include them",
                self.where,
                name,
                problem.strip("()"),
            )
        self.counts[problem] += 1
        return False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """``2 name(s) with a line break...`` for summaries ('' when nothing was left out)."""
        return "; ".join(
            f"{n} {key.strip('()').replace('name ', 'name(s) ', 1)} left out" for key, n in sorted(self.counts.items())
        )


def contained_path(path: str) -> str | None:
    """``path`` (relative, ``/``-separated) normalised lexically, or None when it leaves its root.

    The one containment check of the package: annotation readers and ``tag --list`` both use
    it. ``a/./b``, ``a//b`` and ``a/x/../b`` become ``a/b``; a path that climbs above its root
    (``../x``, ``a/../../x``) or names the root itself (``.``, ``a/..``) gives None. The check is
    lexical (no file system access): what a symlink inside the root points to is checked where
    files are opened (:func:`hspnet_cli.data.image_check.check_images`).
    """
    normal = posixpath.normpath(path)
    if normal in (".", "..") or normal.startswith(("../", "/")):
        return None
    return normal
