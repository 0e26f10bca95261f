"""Reading an ``hspnet tag`` output (tags file + embeddings + manifest) for indexing and merging.

The files and the manifest are those :mod:`hspnet_cli.tagsfile.writer` writes, in either
``--format``: ``tags.csv`` (header ``path,tags,scores,groups``) or ``tags.jsonl`` (one object a
line with a ``"path"``). ``index merge`` writes the same layout, so a merged output is read like
any other. The facts used are the manifest's ``embedding.dim``, ``model.scorer`` (the model
description) and ``fingerprint.images_dir`` (the folder paths are relative to); a manifest with
``"complete": false`` (an unfinished run) is refused.

Only the paths and each row's byte offset are kept in memory (8 bytes a row beside the path),
never the rows themselves: a JSONL row with every label's probability is ~1 kB, and outputs of
millions of images are the point. :meth:`TagsOutput.line` reads one row back by its offset.
Embeddings are read through ``np.memmap``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import read_json_object
from hspnet_cli.tagsfile.escape import unescape
from hspnet_cli.tagsfile.writer import CSV_HEADER, ENCODING, MANIFEST_FORMAT, OutputPaths


@dataclass
class TagsOutput:
    """One ``hspnet tag`` (or ``index merge``) output, its files checked against each other.

    Attributes:
        file: The tags file (csv or jsonl).
        fmt: ``csv`` or ``jsonl``.
        header: The CSV header line's fields (``[]`` for jsonl).
        paths: Row i's ``path`` (relative to ``images_dir``; the file name itself, unescaped).
        offsets: (n,) int64 byte offset of row i in ``file``.
        dim: Embedding width D.
        model: The model description (``model.scorer``).
        images_dir: Absolute folder the paths are relative to.
        manifest: The whole manifest.
        emb: The embedding file.
        failed: The failures file (``path,error``).
    """

    file: Path
    fmt: str
    header: list[str]
    paths: list[str]
    offsets: np.ndarray
    dim: int
    model: str
    images_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    emb: Path = Path()
    failed: Path = Path()

    @property
    def n(self) -> int:
        return len(self.paths)

    @property
    def fingerprint(self) -> dict[str, Any]:
        fp = self.manifest.get("fingerprint")
        return fp if isinstance(fp, dict) else {}

    @property
    def threshold_source(self) -> str:
        """Which thresholds cut the tags, as ``hspnet tag`` recorded it (calibrated, given, or 0.5)."""
        recorded = self.manifest.get("threshold_source")
        if isinstance(recorded, str) and recorded:
            return recorded
        return "unknown: the manifest does not say (made before hspnet recorded it)"

    def embeddings(self) -> np.ndarray:
        """(n, D) read-only float32 memmap of the embedding file."""
        if self.n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(self.emb, dtype="<f4", mode="r", shape=(self.n, self.dim))

    def line(self, fh: BinaryIO, i: int) -> bytes:
        """Row i's raw line (with its ``\\n``) from ``fh``, this output's tags file opened ``rb``."""
        fh.seek(int(self.offsets[i]))
        return fh.readline()


def _facts(mpath: Path, manifest: dict[str, Any]) -> tuple[int, str, str, str]:
    """(embedding dim, model description, images folder, format) of a tagger manifest."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(
            f"{mpath}: not an hspnet tag manifest (format {manifest.get('format')!r}); "
            "index files written by hspnet tag or hspnet index merge"
        )
    if manifest.get("complete") is not True:
        raise UserError(f"{mpath}: the tagging run is unfinished; rerun the same hspnet tag command to complete it")

    def section(name: str) -> dict[str, Any]:
        value = manifest.get(name)
        return value if isinstance(value, dict) else {}

    dim = section("embedding").get("dim")
    model = section("model").get("scorer")
    images = section("fingerprint").get("images_dir")
    fmt = section("fingerprint").get("format", "csv")
    missing = [
        name
        for name, v in (("embedding.dim", dim), ("model.scorer", model), ("fingerprint.images_dir", images))
        if v is None
    ]
    if missing:
        raise UserError(f"{mpath}: manifest lacks {', '.join(missing)}; rerun hspnet tag with --overwrite")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise UserError(f"{mpath}: embedding.dim must be a positive integer; got {dim!r}")
    if fmt not in ("csv", "jsonl"):
        raise UserError(f"{mpath}: unknown tags format {fmt!r} (csv or jsonl)")
    return dim, str(model), str(images), fmt


def _scan(file: Path, fmt: str, escaped: bool = True) -> tuple[list[str], list[str], np.ndarray]:
    """(header, paths, row offsets) of a tags file, one pass, rows not kept; ``escaped``: the
    path cells are escaped (:mod:`hspnet_cli.tagsfile.escape`) and are unescaped here."""
    header: list[str] = []
    paths: list[str] = []
    offsets: list[int] = []
    with open(file, "rb") as fh:
        pos = 0
        if fmt == "csv":
            first = fh.readline()
            header = next(csv.reader([first.decode(*ENCODING)]), [])
            if not header or header[0] != "path":
                raise UserError(f"{file}: expected a header starting with 'path' ({','.join(CSV_HEADER)})")
            pos = len(first)
        for number, raw in enumerate(fh, start=2 if fmt == "csv" else 1):
            text = raw.decode(*ENCODING)
            if text.strip():
                path = _row_path(file, number, text, fmt)
                if not path or "\n" in path or "\r" in path:  # as written: escaped names have neither
                    raise UserError(f"{file}: line {number} has an empty path or a path with a line break")
                paths.append(unescape(path) if escaped else path)
                offsets.append(pos)
            pos += len(raw)
    return header, paths, np.asarray(offsets, dtype=np.int64)


def _row_path(file: Path, number: int, text: str, fmt: str) -> str:
    if fmt == "csv":
        row = next(csv.reader([text]), [])
        return row[0] if row else ""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}: line {number} is not JSON ({exc.msg}); was the file edited?") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
        raise UserError(f'{file}: line {number} has no "path" string')
    return obj["path"]


def read_tags_output(tags_file: str | os.PathLike) -> TagsOutput:
    """Read and cross-check a tags file with its embedding file and manifest.

    Raises:
        UserError: A missing file, a manifest that is not a finished tag run's, a row without a
            path, or an embedding file whose size is not rows x D x 4 bytes.
    """
    tags_file = Path(tags_file)
    if tags_file.is_dir() and (tags_file / "_manifest.json").is_file():  # hspnet tag --format parquet
        from hspnet_cli.tagsfile.parquet_view import parquet_view_file

        tags_file = parquet_view_file(tags_file)
    if not tags_file.is_file():
        raise UserError(f"{tags_file}: tags file not found (write it with hspnet tag IMAGES --out {tags_file})")
    named = OutputPaths.for_out(tags_file)
    if not named.manifest.is_file():
        raise UserError(
            f"{named.manifest}: manifest of {tags_file.name} not found (hspnet tag writes it beside "
            "the tags file; was it moved without it?)"
        )
    manifest = read_json_object(named.manifest, "tags manifest")
    dim, model, images, fmt = _facts(named.manifest, manifest)
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}

    def named_in_manifest(role: str, default: Path) -> Path:
        return named.manifest.parent / str(files[role]) if files.get(role) else default

    emb, failed = named_in_manifest("embeddings", named.emb), named_in_manifest("failed", named.failed)
    header, paths, offsets = _scan(tags_file, fmt, escaped=bool(manifest.get("text_escaping")))
    if not emb.is_file():
        raise UserError(f"{emb}: embedding file not found (hspnet tag writes it beside {tags_file.name})")
    size = emb.stat().st_size
    if size != len(paths) * dim * 4:
        raise UserError(
            f"{emb}: {size} bytes, but {len(paths)} rows x {dim} dims x 4 bytes = "
            f"{len(paths) * dim * 4} were expected from {tags_file.name} and its manifest"
        )
    return TagsOutput(
        file=tags_file,
        fmt=fmt,
        header=header,
        paths=paths,
        offsets=offsets,
        dim=dim,
        model=model,
        images_dir=Path(images).expanduser().absolute(),
        manifest=manifest,
        emb=emb,
        failed=failed,
    )
