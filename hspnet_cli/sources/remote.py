"""An fsspec URL prefix (``s3://bucket/prefix``, ``gs://...``, ``file:///...``) as a source.

Listing streams: the prefix is walked one "folder" level at a time with fsspec's listings cache
off (``use_listings_cache=False``), each level sorted like the local folder walk (a folder's
sort key is ``name/``), so the keys come out in global code-point order of their path below the
prefix, and only the :class:`PathList` holds the whole listing. Credentials come from where the
file system's library looks (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``, ``~/.aws``), plus ``--storage-options JSON``; they are never printed
(:mod:`hspnet_cli.sources.secrets`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.base import ListedSource
from hspnet_cli.sources.discover import PathList, is_image_name
from hspnet_cli.sources.secrets import storage_error
from hspnet_cli.sources.spec import safe_url


def open_fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """(file system, path inside it) for ``url``; one line naming the URL when fsspec or the
    protocol's package is missing."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise UserError(f"{safe_url(url)}: reading URLs needs fsspec: pip install 'hspnet-cli[storage]'") from None
    options = {"use_listings_cache": False, **(storage_options or {})}
    try:
        return url_to_fs(url, **options)
    except ImportError as exc:
        raise UserError(
            f"{safe_url(url)}: this protocol needs a package fsspec could not import ({exc.name or exc}); "
            "for s3:// install s3fs, for gs:// gcsfs (pip install 'hspnet-cli[storage]')"
        ) from None
    except ValueError as exc:
        del fsspec
        raise storage_error(url, exc, storage_options, "open") from None


class UrlSource(ListedSource):
    """Every image object under an fsspec URL prefix; keys are full object URLs."""

    kind = "url"

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.skipped: dict[str, int] = {}

    @property
    def fs(self) -> Any:
        # A forked DataLoader worker must not reuse the parent's client (its event loop and
        # connections belong to the parent): one client per process.
        if getattr(self, "_fs", None) is None or getattr(self, "_pid", None) != os.getpid():
            options = {**self.storage_options, "skip_instance_cache": True}
            self._fs, self._path = open_fs(self.root, options)
            self._pid = os.getpid()
        return self._fs

    def _protocol_prefix(self) -> str:
        return self.root[: self.root.index("://") + 3]

    def _list(self) -> PathList:
        fs = self.fs
        base = self._path.rstrip("/")
        items = PathList()
        try:
            if not fs.exists(base):
                raise FileNotFoundError(base)
            for rel in self._walk(fs, base, ""):
                items.append(f"{self.root}/{rel}")
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any storage library error becomes one line naming the URL
            raise storage_error(self.root, exc, self.storage_options, "list") from None
        if not len(items):
            raise UserError(
                f"{safe_url(self.root)}: no images under this prefix (nothing with an image extension"
                + (f"; skipped {sum(self.skipped.values())} other object(s))" if self.skipped else ")")
            )
        return items

    def _walk(self, fs: Any, folder: str, prefix: str) -> Iterator[str]:
        entries: list[tuple[str, str, bool]] = []
        for info in fs.ls(folder, detail=True):
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            is_dir = info.get("type") == "directory"
            if is_dir:
                entries.append((name + "/", name, True))
            elif is_image_name(name):
                entries.append((name, name, False))
            else:
                ext = os.path.splitext(name)[1].lower() or "(none)"
                self.skipped[ext] = self.skipped.get(ext, 0) + 1
        entries.sort()
        for _key, name, is_dir in entries:
            if is_dir:
                yield from self._walk(fs, f"{folder}/{name}", f"{prefix}{name}/")
            else:
                yield prefix + name
        del entries

    def read_key(self, key: str) -> bytes:
        fs = self.fs
        path = self._path.rstrip("/") + key[len(self.root) :]
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported per image as a read failure, scrubbed
            raise OSError(0, str(storage_error(key, exc, self.storage_options))) from None
