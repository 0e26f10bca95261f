"""Which images a tagging run covers, in which order: folder discovery, ``--list`` files, shards.

Rules:

* Discovery walks IMAGES_DIR recursively with :func:`os.scandir` (one directory listing in
  memory at a time) and keeps files whose extension, compared case-insensitively, is one the
  installed Pillow can open (:func:`image_extensions`: every registered extension whose format
  has an open plugin, about 60 with Pillow 13: jpg, png, webp, tif, bmp, gif, ppm, pgm, pbm,
  pnm, tga, psd, ico, dds, jp2, avif, ...). Left out are formats Pillow only identifies but
  cannot decode by itself (MPEG video, the BUFR/GRIB/HDF5 stubs, WMF outside Windows, EPS
  without Ghostscript), so a video or a data file is not reported as a broken image. Every
  other file is skipped and counted by extension (``skipped``), so a summary can account for
  every file of the folder.
* The key of an image is its path relative to IMAGES_DIR in POSIX form (``a/b/c.jpg``); two
  files with the same name in different folders are two items.
* Order: sorted by that key (plain code-point order of the whole relative path). The walk
  produces this order directly: the entries of each folder are sorted with a folder's key
  being ``name + "/"``, which places its descendants exactly where a global sort would.
* Symlinked folders are followed, but every real folder (device, inode) is walked at most once,
  so symlink loops end and a folder linked twice is not tagged twice (it appears under the first
  path in the order above). Symlinked files are kept; a dangling symlink with an image
  extension is kept too and is reported as a failure when read.
* A folder that cannot be listed (permissions) is skipped with a warning.
* ``--list FILE``: the list format of :mod:`hspnet_cli.tagsfile.listfile` (one path a line,
  byte-exact; blank lines and ``#`` comments ignored; a leading ``\\`` escapes a name starting
  with ``#`` or ``\\``), paths relative to IMAGES_DIR or absolute inside it; the order is the
  file's, repeated paths are kept once. Listed files are not checked here: a missing one
  becomes a failure row when read.
* Names holding a control character (line break, tab, NUL) are left out, in the walk and in
  ``--list``, and counted (:mod:`hspnet_cli.core.names`: the one rule for names).

Paths are held in a :class:`PathList` (one bytes blob plus offsets), so the only memory that
grows with the number of images is the path list itself, and DataLoader workers share it
without copy-on-write churn from per-string reference counts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.names import CONTROL_KEY, LeftOut, has_control
from hspnet_cli.tagsfile.listfile import listed_paths

log = logging.getLogger(__name__)

# Formats Pillow registers but cannot decode without a handler or program it does not ship.
_NOT_DECODABLE = {"MPEG", "BUFR", "GRIB", "HDF5", "WMF", "EPS", "PDF"}


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of every format the installed Pillow can open."""
    import shutil

    from PIL import Image

    Image.init()
    openable = set(Image.OPEN) | {"MPO"}  # MPO files are opened by the JPEG plugin
    skip = set(_NOT_DECODABLE)
    if shutil.which("gs"):
        skip.discard("EPS")
    if sys.platform == "win32":
        skip.discard("WMF")
    return frozenset(
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in openable and fmt not in skip
    )


def __getattr__(name: str) -> frozenset[str]:
    if name == "IMAGE_EXTENSIONS":  # computed on first use: importing this module must not load PIL
        return image_extensions()
    raise AttributeError(name)


def _enc(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


class PathList:
    """An immutable sequence of relative POSIX paths stored compactly (bytes blob + offsets)."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("q")
        for path in paths:
            self.append(path)

    def append(self, path: str) -> None:
        self._blob += _enc(path)
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = self._ends[index - 1] if index else 0
        return bytes(self._blob[start : self._ends[index]]).decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]

    def digest(self) -> str:
        """SHA-256 over the paths in order (a run's item list, for resume checks)."""
        h = hashlib.sha256()
        h.update(str(len(self)).encode())
        for i in range(len(self)):
            start = self._ends[i - 1] if i else 0
            h.update(b"\0")
            h.update(self._blob[start : self._ends[i]])
        return h.hexdigest()

    def select(self, indices: Iterable[int]) -> PathList:
        """A new list with the items at ``indices``, in that order."""
        return PathList(self[i] for i in indices)


def is_image_name(name: str) -> bool:
    """True when ``name`` has one of :func:`image_extensions` (any case)."""
    return os.path.splitext(name)[1].lower() in image_extensions()


def extension_key(name: str) -> str:
    """How a skipped file is counted: its lower-case extension, or ``(none)``."""
    return os.path.splitext(name)[1].lower() or "(none)"


def iter_images(root: str | Path, skipped: Counter | None = None) -> Iterator[str]:
    """Yield the relative POSIX paths of the images under ``root`` in sorted order (see module doc);
    files that are not images are counted in ``skipped`` by :func:`extension_key`.

    Raises:
        UserError: ``root`` is not a readable folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: images folder not found; pass the folder that holds the images")
    try:
        st = root.stat()
    except OSError as exc:
        raise UserError(f"{root}: cannot read the images folder ({exc})") from None
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise UserError(f"{root}: cannot list the images folder ({exc.strerror or exc})") from None
    yield from _walk(str(root), "", seen, skipped if skipped is not None else Counter())


def _walk(folder: str, prefix: str, seen: set[tuple[int, int]], skipped: Counter) -> Iterator[str]:
    entries: list[tuple[str, str, bool]] = []  # (sort key, name, is folder)
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if has_control(entry.name):
                    # The one rule for names (core.names): a line break cannot travel through our
                    # formats (a folder so named is left out whole, counted once).
                    if not skipped[CONTROL_KEY]:
                        log.warning(
                            "leaving out %r and any other name with a line break, tab or control "
                            "character; rename such files to include them",
                            prefix + entry.name,
                        )
                    skipped[CONTROL_KEY] += 1
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=True)
                except OSError:
                    is_dir = False
                if is_dir:
                    entries.append((entry.name + "/", entry.name, True))
                elif is_image_name(entry.name):
                    entries.append((entry.name, entry.name, False))
                else:
                    skipped[extension_key(entry.name)] += 1
    except OSError as exc:
        log.warning("skipping folder %s: cannot list it (%s)", folder, exc.strerror or exc)
        return
    entries.sort()
    for _key, name, is_dir in entries:
        rel = prefix + name
        if not is_dir:
            yield rel
            continue
        full = os.path.join(folder, name)
        try:
            st = os.stat(full)
        except OSError as exc:
            log.warning("skipping folder %s: %s", full, exc.strerror or exc)
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            log.info("not walking %s again: it is a folder already walked (symlink)", full)
            continue
        seen.add(ident)
        yield from _walk(full, rel + "/", seen, skipped)


def discover_images(root: str | Path, skipped: Counter | None = None) -> PathList:
    """All images under ``root`` as a :class:`PathList`, in discovery order (other files counted
    in ``skipped``, see :func:`iter_images`)."""
    return PathList(iter_images(root, skipped))


def read_path_list(list_file: str | Path, root: str | Path, left_out: LeftOut | None = None) -> PathList:
    """Paths named in ``list_file`` (see module doc), relative to ``root``, in file order.

    Raises:
        UserError: The list cannot be read, or a line points outside ``root``.
    """
    list_file, root = Path(list_file), Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: images folder not found; pass the folder the --list paths are relative to")
    out = PathList()
    seen: set[str] = set()
    left_out = left_out if left_out is not None else LeftOut(str(list_file))
    for rel in listed_paths(list_file, root, "--list", "IMAGES_DIR"):
        if not left_out.check(rel):
            continue
        if rel not in seen:
            seen.add(rel)
            out.append(rel)
    return out


def shard_items(items: PathList, index: int, count: int) -> PathList:
    """The items whose position ``p`` in ``items`` has ``p % count == index``."""
    if count == 1:
        return items
    return items.select(range(index, len(items), count))
