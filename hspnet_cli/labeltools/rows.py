"""The rows of a tag output as label-tool writers need them, and how each image is referenced.

A tag output is read through :func:`hspnet_cli.tagsfile.reader.read_tags_output` (which
checks the tags file against its manifest and embeddings); rows are then streamed one at a
time, so an output of millions of images never sits in memory.

Image references: each tool finds images its own way, so the reference written for an image
path ``p`` (relative to the tag run's images folder ``R``) is one of

- ``relative``: ``p`` as it is (CVAT matches images by this name);
- ``absolute``: ``R/p`` (FiftyOne's ``filepath``);
- ``prefix``: ``PREFIX + p`` for ``--url-prefix``; only ``http://``, ``https://``, ``s3://``
  and ``gs://`` prefixes (scheme in any case) are taken (:func:`check_url_prefix`: no
  ``javascript:``, ``file:`` or relative ``../`` prefixes). With ``http(s)`` the path is
  percent-encoded (whatever the case of the scheme); ``s3``/``gs`` keys are written verbatim,
  as the tools read object keys without decoding them;
- ``local-files``: Label Studio's local file serving, ``/data/local-files/?d=`` + the path of
  ``R/p`` relative to ``--local-files-root`` (Label Studio's
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; default: the parent of the images folder ``R``,
  the narrowest root Label Studio accepts with a Local Storage for ``R``), percent-encoded.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagsfile.escape import split_list
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


# Tools that read a backslash in a file name as a folder separator (checked against datumaro
# 1.13, FiftyOne 1.22 and datasets' imagefolder: 'back\\slash.png' becomes back/slash.png, and
# '\\x.png' an absolute path). Label Studio keeps the key in data.hspnet_path and the URL encodes it.
BACKSLASH_SEPARATES = {"cvat": "CVAT (datumaro)", "hf": "Hugging Face imagefolder", "fiftyone": "FiftyOne"}


def iter_rows(out: TagsOutput, wanted: set[str] | None = None, tool: str | None = None) -> Iterator[TagRow]:
    """Stream the rows of a tag output in file order (only those in ``wanted``, when given).

    Raises:
        UserError: A row that is not parseable, whose tags and scores differ in length, or whose
            path is not UTF-8 (label tools take UTF-8 names only), or holds a backslash when
            ``tool`` reads it as a folder separator (:data:`BACKSLASH_SEPARATES`).
    """
    # tags.csv cells are escaped (tagsfile.escape); the tools get the names themselves.
    names = split_list if out.manifest.get("text_escaping") else (lambda cell: [t for t in cell.split(";") if t])
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
            if wanted is not None and out.paths[i] not in wanted:
                continue
            where = f"{out.file}: row {i + 1}"
            try:
                out.paths[i].encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(
                    f"{where}: the image name is not valid UTF-8; label tools need UTF-8 file names "
                    "(rename the file and tag it again)"
                ) from None
            if tool in BACKSLASH_SEPARATES and "\\" in out.paths[i]:
                raise UserError(
                    f"{where}: image '{out.paths[i]}' holds a backslash, which "
                    f"{BACKSLASH_SEPARATES[tool]} reads as a folder separator (it would look for "
                    "another file); rename it, leave it out with --only, or use --to label-studio"
                )
            if out.fmt == "csv":
                cells = next(csv.reader([raw]), [])
                if len(cells) < 3:
                    raise UserError(f"{where}: expected path,tags,scores,groups; was the file edited?")
                tags = [t for t in names(cells[1]) if t]
                scores_text = [s for s in cells[2].split(";") if s]
                groups = [g for g in names(cells[3] if len(cells) > 3 else "") if g]
            else:
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):
                    raise UserError(f"{where}: not a JSON object; was the file edited?") from None
                tags, scores_text, groups = obj.get("tags", []), obj.get("scores", []), obj.get("groups", [])
                if not all(isinstance(x, list) and all(isinstance(t, str) for t in x) for x in (tags, groups)):
                    raise UserError(f'{where}: "tags" and "groups" must be lists of names; was the file edited?')
            scores = _scores(scores_text, where)
            if len(scores) != len(tags):
                raise UserError(f"{where}: {len(tags)} tag(s) but {len(scores)} score(s); was the file edited?")
            yield TagRow(out.paths[i], list(tags), scores, list(groups), where)


def _scores(values: Any, where: str) -> list[float]:
    """Probabilities of a row: finite numbers in [0, 1] (NaN would make tasks.json not JSON).

    Raises:
        UserError: A score that is not a number, not finite or outside [0, 1] (the row named).
    """
    if not isinstance(values, list):
        raise UserError(f"{where}: scores must be a list of numbers; was the file edited?")
    out = []
    for value in values:
        if isinstance(value, bool):
            value = "bool"
        try:
            score = float(value)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{where}: score {str(value)[:40]!r} is not a number; was the file edited?") from None
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise UserError(
                f"{where}: score {str(value)[:40]} is not a probability (a finite number from 0 to 1); "
                "was the file edited? Tag the images again"
            )
        out.append(score)
    return out


URL_SCHEMES = ("http", "https", "s3", "gs")


def check_url_prefix(prefix: str) -> str:
    """``prefix`` when it is an ``http(s)://``, ``s3://`` or ``gs://`` URL (scheme in any case).

    Raises:
        UserError: Another scheme (``javascript:``, ``file:``, ``data:``...), no scheme (a
            relative ``../`` prefix), no host or bucket, or a ``..`` segment in its path.
    """
    parsed = urlparse(prefix)
    scheme = parsed.scheme.lower()
    shown = prefix[:80]
    if scheme not in URL_SCHEMES or not parsed.netloc or not prefix[len(scheme) :].startswith("://"):
        raise UserError(
            f"--url-prefix '{shown}': give an http(s)://, s3:// or gs:// URL with a host or bucket "
            "(e.g. https://cdn.example.com/photos/); other schemes and relative prefixes are refused"
        )
    if ".." in parsed.path.split("/") or any(ch in prefix for ch in "\\\x00\n\r\t"):
        raise UserError(
            f"--url-prefix '{shown}': its path must not hold '..' segments, backslashes or control characters"
        )
    if parsed.query or parsed.fragment or prefix.endswith(("?", "#")):
        raise UserError(
            f"--url-prefix '{shown}': a query or fragment would swallow the image paths; give a "
            "URL that ends with the folder (e.g. https://host/photos/)"
        )
    return prefix


@dataclass(frozen=True)
class ImageRefs:
    """How an image key becomes the reference a labeling tool resolves (see the module docstring)."""

    mode: str
    images_dir: Path
    prefix: str = ""

    @classmethod
    def choose(
        cls,
        images_dir: Path,
        default: str,
        url_prefix: str | None = None,
        absolute: bool = False,
        local_files_root: str | os.PathLike | None = None,
    ) -> ImageRefs:
        """The reference style from the options (at most one), else the tool's ``default``.

        Raises:
            UserError: More than one style asked for, or a local-files root the images are not under.
        """
        asked = [
            name
            for name, on in (
                ("--url-prefix", url_prefix),
                ("--absolute", absolute),
                ("--local-files-root", local_files_root),
            )
            if on
        ]
        if len(asked) > 1:
            raise UserError(f"{' and '.join(asked)} choose different image references; give one")
        images_dir = Path(images_dir).expanduser().absolute()
        if url_prefix:
            return cls("prefix", images_dir, check_url_prefix(url_prefix))
        if absolute:
            return cls("absolute", images_dir)
        if local_files_root is not None:
            root = Path(local_files_root).expanduser().absolute()
            if not images_dir.is_relative_to(root):
                raise UserError(
                    f"--local-files-root {root}: the images ({images_dir}) are not under it; pass the "
                    "folder Label Studio serves (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
                )
            return cls("local-files", images_dir, root.as_posix())
        if default == "local-files":
            # The images folder's parent is the document root: the narrowest Label Studio takes, as
            # it refuses a Local Storage whose path is the document root itself (1.23: "cannot be
            # the same as LOCAL_FILES_DOCUMENT_ROOT ... add a subdirectory"); never the whole file system.
            return cls("local-files", images_dir, images_dir.parent.as_posix())
        return cls(default, images_dir)

    def __call__(self, path: str) -> str:
        if self.mode == "relative":
            return path
        if self.mode == "absolute":
            return (self.images_dir / path).as_posix()
        if self.mode == "prefix":
            if self.prefix[:8].lower().startswith(("http://", "https://")):
                # Any case of the scheme: '#', '?', '%' or a space would otherwise end the URL's
                # path (a '#' starts a fragment) or be decoded by the browser into another name.
                return self.prefix + quote(path, safe="/")
            # s3:// and gs:// name object keys: the tools take the key verbatim (Label Studio 1.23
            # reads urlparse(uri, allow_fragments=False).path and never unquotes it), so an
            # encoded key would name another object.
            return self.prefix + path
        rel = os.path.relpath(self.images_dir / path, self.prefix)
        return LOCAL_FILES_URL + quote(Path(rel).as_posix(), safe="/")

    def describe(self) -> str:
        """A short description for summaries (``prefix https://...``, ``relative``...)."""
        if self.mode == "local-files":
            return f"local-files under {self.prefix}"
        return f"{self.mode} {self.prefix}" if self.prefix else self.mode
