"""Where ``hspnet tag`` reads images from: a folder, a ``--list``, an fsspec URL prefix, or
webdataset tar shards (see :mod:`hspnet_cli.sources.base` for blocks and keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.base import (
    DEFAULT_BLOCK_SIZE,
    Block,
    FolderSource,
    OpenBlock,
    Source,
    iter_block_bytes,
    read_one,
)
from hspnet_cli.sources.spec import is_tar_pattern, is_url

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "Block",
    "OpenBlock",
    "Source",
    "iter_block_bytes",
    "read_one",
    "open_source",
    "parse_storage_options",
    "is_plain_folder",
]


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """``--storage-options JSON`` -> dict (never echoed back: it may hold secrets)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"--storage-options: not valid JSON (at character {exc.pos}); give an object such as '{{\"anon\": true}}'"
        ) from None
    if not isinstance(value, dict):
        raise UserError("--storage-options: give a JSON object such as '{\"anon\": true}'")
    return value


def is_plain_folder(spec: str | Path) -> bool:
    """True when SOURCE is a local folder (the original ``hspnet tag IMAGES_DIR``)."""
    s = str(spec)
    return not is_url(s) and not is_tar_pattern(s)


def open_source(
    spec: str | Path, list_file: str | Path | None = None, storage_options: dict[str, Any] | None = None
) -> Source:
    """The :class:`Source` SOURCE names (see :mod:`hspnet_cli.sources.spec`).

    Raises:
        UserError: ``--list`` with a URL or shards, missing shards, a bad pattern.
    """
    s = str(spec)
    if is_tar_pattern(s):
        from hspnet_cli.sources.tars import TarSource

        if list_file is not None:
            raise UserError("--list works with a folder SOURCE; shards are tagged whole")
        return TarSource(s, storage_options)
    if is_url(s):
        from hspnet_cli.sources.remote import UrlSource

        if list_file is not None:
            raise UserError("--list works with a folder SOURCE; give a URL prefix to tag every image under it")
        return UrlSource(s, storage_options)
    if not Path(s).is_dir():
        raise UserError(
            f"{s}: images folder not found; SOURCE is a folder, a URL prefix (s3://bucket/prefix) or "
            "tar shards (shards/{000000..000009}.tar)"
        )
    return FolderSource(s, list_file)
