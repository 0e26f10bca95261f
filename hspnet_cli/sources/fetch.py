"""Fetching one image by the path an index or a tag output holds, when it is not a plain file:
an object under a URL prefix, or a member of a tar shard (``SHARD#MEMBER``). Used by
``hspnet search --copy-to``; credentials come from the environment as for ``hspnet tag``."""

from __future__ import annotations

import re
import tarfile

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.secrets import storage_error

# A URL prefix after a Path round trip (and maybe made absolute): /cwd/s3:/bucket/prefix.
_MANGLED_URL = re.compile(r"^(?:.*/)?([A-Za-z][A-Za-z0-9+.-]*):/(?!/)(.*)$")


def url_of(images_dir: str) -> str | None:
    """``images_dir`` as a URL when it is one (``s3://b/p``, or ``s3:/b/p`` after a Path round trip)."""
    if "://" in images_dir:
        return images_dir
    m = _MANGLED_URL.match(images_dir)
    return f"{m.group(1)}://{m.group(2)}" if m else None


def fetch_bytes(images_dir: str, path: str) -> bytes:
    """The image bytes of ``path`` (relative to ``images_dir``).

    Raises:
        UserError: One line naming the image: not found, or a storage error (secrets scrubbed).
    """
    from hspnet_cli.sources.remote import open_fs

    shard, _, member = path.partition("#")
    if "://" in shard:  # the key is the object's own URL (a URL-prefix source keys images so)
        base, where = shard, shard
    else:
        base = url_of(images_dir)
        where = f"{base}/{shard}" if base else f"{images_dir}/{shard}"
    try:
        if base:
            fs, fpath = open_fs(where, None)
            fh = fs.open(fpath, "rb")
        else:
            fh = open(where, "rb")
        with fh:
            if not member:
                return fh.read()
            with tarfile.open(fileobj=fh, mode="r|") as tar:
                for info in tar:
                    if info.name == member:
                        got = tar.extractfile(info)
                        if got is not None:
                            return got.read()
        raise UserError(f"{where}#{member}: no such member in the shard")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line naming the image
        raise storage_error(f"{where}" + (f"#{member}" if member else ""), exc) from None


def is_fetchable(images_dir: str, path: str) -> bool:
    """True when ``path`` is not a plain file under ``images_dir`` but a URL object or shard member."""
    return url_of(images_dir) is not None or "#" in path or "://" in path
