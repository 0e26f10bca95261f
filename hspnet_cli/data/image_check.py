"""``--check-images``: do a split's images exist under their folder, and open?

Nothing outside the images folder is ever opened: the annotation readers already refuse paths
that climb out (``../``), and here a symlink (or a symlinked folder) that leads out of the real
folder counts as bad rather than being followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hspnet_cli.core.errors import UserError

_SHOWN = 10  # bad images named in the error; the rest are counted


def _real_inside(path: str, real_root: str) -> str | None:
    """The real path of ``path`` when it lies inside ``real_root``, else None."""
    real = os.path.realpath(path)
    return real if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep) else None


def check_images(entries: list[tuple[str, str]], root: Path, deep: bool = False) -> None:
    """Check that every image exists under ``root`` (with ``deep``, that PIL can verify it).

    Nothing outside ``root`` is opened or reported on: a path that is a symlink (or runs
    through a symlinked folder) to a place outside the real ``root`` counts as bad. The paths
    themselves were already refused at read time if they climb out (``../``).

    Args:
        entries: ``(image path, origin)`` pairs.
        root: The images folder the paths are relative to.
        deep: Also open each image and run PIL's ``verify()`` (slow: reads every file).

    Raises:
        UserError: Listing the first missing, outside or broken images (with where they are listed) and the count.
    """
    if not root.is_dir():
        raise UserError(f"{root}: no such images folder (--check-images)")
    real_root = os.path.realpath(root)
    folders: dict[str, str | None] = {"": real_root}  # folder -> its real path inside root, None if outside
    bad: list[tuple[str, str, str]] = []
    real: list[tuple[str, str, str]] = []
    for image, origin in entries:
        head, name = os.path.split(image)
        if head not in folders:
            folders[head] = _real_inside(os.path.join(root, head), real_root)
        folder = folders[head]
        target = None if folder is None else os.path.join(folder, name)
        if target is not None and os.path.islink(target):
            target = _real_inside(target, real_root)
        if target is None:
            bad.append((image, origin, f"a link to a file outside {root}"))
        elif not os.path.isfile(target):
            bad.append((image, origin, "missing"))
        else:
            real.append((image, origin, target))
    if not bad and deep:
        from PIL import Image

        for image, origin, target in real:
            try:
                with Image.open(target) as handle:
                    handle.verify()
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken file
                bad.append((image, origin, f"unreadable: {str(exc)[:200]}"))
    if bad:
        shown = "; ".join(f"{image} ({why}, {origin})" for image, origin, why in bad[:_SHOWN])
        more = f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise UserError(
            f"{len(bad)} of {len(entries)} image(s) under {root} are missing or broken: "
            f"{shown}{more}; fix the annotation paths or pass the right images folder"
        )
