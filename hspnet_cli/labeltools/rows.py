"""The rows of a tag output as label-tool writers need them, and how each image is referenced.

A tag output is read through :func:`hspnet_cli.tagsfile.reader.read_tags_output` (which
checks the tags file against its manifest and embeddings); rows are then streamed one at a
time, so an output of millions of images never sits in memory.

Image references: each tool finds images its own way, so the reference written for an image
path ``p`` (relative to the tag run's images folder ``R``) is one of

- ``relative``: ``p`` as it is (CVAT matches images by this name);
- ``absolute``: ``R/p`` (FiftyOne's ``filepath``);
- ``prefix``: ``PREFIX + p`` for ``--url-prefix`` (``https://host/photos/`` with the path
  percent-encoded; ``s3://bucket/photos/``, ``gs://...`` and other storage URIs unencoded,
  since the tools resolve them as object keys);
- ``local-files``: Label Studio's local file serving, ``/data/local-files/?d=`` + the path of
  ``R/p`` relative to ``--local-files-root`` (Label Studio's
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``), percent-encoded.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagsfile.reader import TagsOutput
from hspnet_cli.tagsfile.writer import ENCODING

LOCAL_FILES_URL = "/data/local-files/?d="


@dataclass
class TagRow:
    """One tagged image: its key and the selected labels with their probabilities."""

    path: str
    tags: list[str]
    scores: list[float]
    groups: list[str]
    origin: str


def iter_rows(out: TagsOutput) -> Iterator[TagRow]:
    """Stream the rows of a tag output in file order.

    Raises:
        UserError: A row that is not parseable, whose tags and scores differ in length, or whose
            path is not UTF-8 (label tools take UTF-8 names only).
    """
    with open(out.file, "rb") as fh:
        if out.fmt == "csv":
            fh.readline()
        # Sequential reading in step with the scan that found the rows (blank lines skipped the
        # same way): one seek per row would refill the read buffer every time.
        i = -1
        for line in fh:
            raw = line.decode(*ENCODING)
            if not raw.strip():
                continue
            i += 1
            where = f"{out.file}: row {i + 1}"
            try:
                out.paths[i].encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"{where}: the image name is not valid UTF-8; label tools need UTF-8 file names "
                                "(rename the file and tag it again)") from None
            if out.fmt == "csv":
                cells = next(csv.reader([raw]), [])
                if len(cells) < 3:
                    raise UserError(f"{where}: expected path,tags,scores,groups; was the file edited?")
                tags = [t for t in cells[1].split(";") if t]
                scores_text = [s for s in cells[2].split(";") if s]
                groups = [g for g in (cells[3] if len(cells) > 3 else "").split(";") if g]
            else:
                obj = json.loads(raw)
                tags, scores_text, groups = obj.get("tags", []), obj.get("scores", []), obj.get("groups", [])
            try:
                scores = [float(s) for s in scores_text]
            except (TypeError, ValueError):
                raise UserError(f"{where}: scores must be numbers; was the file edited?") from None
            if len(scores) != len(tags):
                raise UserError(f"{where}: {len(tags)} tag(s) but {len(scores)} score(s); was the file edited?")
            yield TagRow(out.paths[i], list(tags), scores, list(groups), where)


@dataclass(frozen=True)
class ImageRefs:
    """How an image key becomes the reference a labeling tool resolves (see the module docstring)."""

    mode: str
    images_dir: Path
    prefix: str = ""

    @classmethod
    def choose(cls, images_dir: Path, default: str, url_prefix: str | None = None, absolute: bool = False,
               local_files_root: str | os.PathLike | None = None) -> "ImageRefs":
        """The reference style from the options (at most one), else the tool's ``default``.

        Raises:
            UserError: More than one style asked for, or a local-files root the images are not under.
        """
        asked = [name for name, on in (("--url-prefix", url_prefix), ("--absolute", absolute),
                                       ("--local-files-root", local_files_root)) if on]
        if len(asked) > 1:
            raise UserError(f"{' and '.join(asked)} choose different image references; give one")
        images_dir = Path(images_dir).expanduser().absolute()
        if url_prefix:
            return cls("prefix", images_dir, url_prefix)
        if absolute:
            return cls("absolute", images_dir)
        if local_files_root is not None:
            root = Path(local_files_root).expanduser().absolute()
            if not images_dir.is_relative_to(root):
                raise UserError(f"--local-files-root {root}: the images ({images_dir}) are not under it; pass the "
                                "folder Label Studio serves (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
            return cls("local-files", images_dir, root.as_posix())
        if default == "local-files":
            return cls("local-files", images_dir, "/")
        return cls(default, images_dir)

    def __call__(self, path: str) -> str:
        if self.mode == "relative":
            return path
        if self.mode == "absolute":
            return (self.images_dir / path).as_posix()
        if self.mode == "prefix":
            if self.prefix.startswith(("http://", "https://")):
                return self.prefix + quote(path, safe="/")
            return self.prefix + path
        rel = os.path.relpath(self.images_dir / path, self.prefix)
        return LOCAL_FILES_URL + quote(Path(rel).as_posix(), safe="/")

    def describe(self) -> str:
        """A short description for summaries (``prefix https://...``, ``relative``...)."""
        if self.mode == "local-files":
            return f"local-files under {self.prefix}"
        return f"{self.mode} {self.prefix}" if self.prefix else self.mode
