"""Webdataset tar shards (local or by URL, brace patterns) as a source.

One block per shard, in pattern order (block i = the i-th shard), so a shard is read once, by one
worker, and its part file is ``part-{i:06d}.parquet``. Keys are ``SHARD#MEMBER``: SHARD is the
shard's name relative to the pattern's folder (``000003.tar``), MEMBER the member's full name in
the tar (``00042.jpg``; webdataset's ``__key__`` is MEMBER without its extension). Members that
are not images by extension (``.json``, ``.txt``, ``.cls`` sidecars) are skipped; the order is
the tar's. A local shard is scanned for its member offsets and read by offset; a remote shard is
fetched whole into memory (webdataset shards are sized for that: typically a few hundred MB).
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any

from hspnet_cli.core.errors import UserError
from hspnet_cli.sources.base import Block, OpenBlock, Source
from hspnet_cli.sources.discover import is_image_name
from hspnet_cli.sources.remote import open_fs
from hspnet_cli.sources.secrets import storage_error
from hspnet_cli.sources.spec import expand_braces, is_url, pattern_root, safe_url


class TarSource(Source):
    """The shards a pattern names (see module doc)."""

    kind = "tar"

    def __init__(self, pattern: str, storage_options: dict[str, Any] | None = None) -> None:
        self.pattern = pattern
        self.remote = is_url(pattern)
        root = pattern_root(pattern)
        self.root = root if self.remote else os.path.abspath(root)
        self.storage_options = dict(storage_options or {})
        self.shards = list(expand_braces(pattern))
        if not self.remote:
            missing = [s for s in self.shards if not os.path.isfile(s)]
            if missing:
                raise UserError(
                    f"{missing[0]}: shard not found ({len(missing)} of {len(self.shards)} shards of "
                    f"{pattern} are missing)"
                )

    def describe(self) -> str:
        return safe_url(self.pattern)

    def plan(self, block_size: int) -> list[Block]:
        return [Block(i, shard=s) for i, s in enumerate(self.shards)]

    def shard_name(self, shard: str) -> str:
        """SHARD of the keys: the shard relative to the pattern's folder."""
        root = pattern_root(self.pattern)
        return shard[len(root) + 1 :] if root != "." and shard.startswith(root + "/") else shard

    def open_block(self, block: Block) -> OpenBlock:
        shard = block.shard
        name = self.shard_name(shard)
        if self.remote:
            fs, path = open_fs(shard, self.storage_options)
            try:
                data = fs.cat_file(path)
            except Exception as exc:  # noqa: BLE001 - one line naming the shard, secrets scrubbed
                raise storage_error(shard, exc, self.storage_options) from None
            blob: Any = io.BytesIO(data)
        else:
            blob = open(shard, "rb")
        try:
            with tarfile.open(fileobj=blob, mode="r:") as tar:
                members = [(m.name, m.offset_data, m.size) for m in tar if m.isfile() and is_image_name(m.name)]
        except tarfile.TarError as exc:
            raise UserError(f"{safe_url(shard)}: not a readable tar shard ({exc})") from None
        finally:
            if not self.remote:
                blob.close()
        keys = [f"{name}#{m[0]}" for m in members]

        def read(i: int) -> bytes:
            _, offset, size = members[i]
            if self.remote:
                return data[offset : offset + size]
            with open(shard, "rb") as fh:
                fh.seek(offset)
                return fh.read(size)

        return OpenBlock(keys, read)
