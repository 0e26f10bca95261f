"""A shard set of embeddings for the large-scale index build: ``.npy`` files, a Parquet folder of
``hspnet tag --format parquet``, or ``hspnet tag`` tags outputs, read a block at a time.

Inputs (:func:`open_shard_set`, one or more sources of one kind):

* ``.npy`` shards: files, a folder (every ``*.npy`` in it, by name) or a glob. Each is an (n, D)
  float16 or float32 array, memory-mapped. Row keys come from ``NAME.keys.txt`` beside it (one
  key a line, as tags paths are escaped) when that exists, else they are ``NAME.npy#ROW``.
* Parquet: a folder of ``part-*.parquet`` (with a ``_manifest.json`` beside them) or the files;
  columns ``key`` (string) and ``embedding`` (fixed_size_list<float16|float32>[D]) are read,
  column by column, one row group at a time (other columns are never read).
* Tags outputs of ``hspnet tag`` (``tags.csv`` / ``.jsonl`` with ``.emb.f32`` + manifest, e.g. the
  ``--shard i/N`` outputs): keys are the image paths, made relative to the folder all the
  outputs' images folders share.

Every shard is checked when the set is opened (readable, 2-D, one dim for all, finite size) so
a bad file fails in a second with one line naming it, not hours into a build. Rows are
addressed globally: shard s holds rows ``starts[s] : starts[s] + rows[s]``.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.index.files import common_root, normalize_rows, rebase_paths
from hspnet_cli.tagsfile.escape import unescape

BLOCK_ROWS = 65536


@dataclass
class Shard:
    """One file of a shard set.

    Attributes:
        path: The embedding file (``.npy``, ``.parquet``) or the tags file.
        kind: ``npy``, ``parquet`` or ``tags``.
        rows: Number of vectors.
        dim: Vector width.
        extra: Reader state (the memmap's file, keys file, row-group sizes, tags paths...).
    """

    path: Path
    kind: str
    rows: int
    dim: int
    extra: dict[str, Any] = field(default_factory=dict)

    def blocks(
        self, start: int = 0, stop: int | None = None, chunk: int = BLOCK_ROWS
    ) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        """(first row, float32 unit vectors, keys) blocks of rows ``start:stop`` of this shard."""
        stop = self.rows if stop is None else stop
        if self.kind == "parquet":
            yield from _parquet_blocks(self, start, stop)
            return
        emb = self.embeddings()
        keys = self.extra.get("keys")
        key_iter = _key_lines(self, start, stop) if keys is None and self.extra.get("keys_file") else None
        for a in range(start, stop, chunk):
            b = min(stop, a + chunk)
            block = normalize_rows(np.array(emb[a:b], dtype=np.float32, order="C"), self.path, a)
            if keys is not None:
                names = list(keys[a:b])
            elif key_iter is not None:
                names = [next(key_iter) for _ in range(b - a)]
            else:
                names = [f"{self.path.name}#{r}" for r in range(a, b)]
            yield a, block, names

    def embeddings(self) -> np.ndarray:
        """(rows, dim) memmap (npy and tags shards)."""
        if self.kind == "npy":
            return np.load(self.path, mmap_mode="r")
        if self.rows == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(self.extra["emb"], dtype="<f4", mode="r", shape=(self.rows, self.dim))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """float32 unit vectors of the given sorted local rows."""
        if self.kind != "parquet":
            return normalize_rows(np.array(self.embeddings()[rows], dtype=np.float32), self.path)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        bounds = np.cumsum([0, *self.extra["row_groups"]])
        pf = _parquet_file(self.path)
        for g in np.unique(np.searchsorted(bounds, rows, side="right") - 1):
            mask = (rows >= bounds[g]) & (rows < bounds[g + 1])
            block = _embedding_array(self, pf.read_row_group(int(g), columns=["embedding"]).column(0), int(bounds[g]))
            out[mask] = block[rows[mask] - bounds[g]]
        return normalize_rows(out, self.path)


@dataclass
class ShardSet:
    """The shards of one build, in order, with their facts."""

    shards: list[Shard]
    kind: str
    dim: int
    root: Path
    model: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(sum(s.rows for s in self.shards))

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([s.rows for s in self.shards])]).astype(np.int64)

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        """(global first row, vectors, keys) blocks of global rows ``start:stop``, across shards."""
        starts = self.starts
        for s, shard in enumerate(self.shards):
            a, b = max(start, int(starts[s])), min(stop, int(starts[s + 1]))
            if a < b:
                for first, block, keys in shard.blocks(a - int(starts[s]), b - int(starts[s])):
                    yield first + int(starts[s]), block, keys

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """float32 unit vectors of sorted global rows (a training or query sample)."""
        starts = self.starts
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        which = np.searchsorted(starts, rows, side="right") - 1
        for s in np.unique(which):
            mask = which == s
            out[mask] = self.shards[int(s)].gather(rows[mask] - starts[s])
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Identity of every shard (path, rows, size, mtime): a resumed build checks it is unchanged."""
        facts = []
        for s in self.shards:
            st = s.path.stat()
            facts.append(
                {"file": str(s.path.absolute()), "rows": s.rows, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
            )
        return facts


def _expand(sources: list[str]) -> list[Path]:
    """Files named by ``sources``: files as given, folders listed, globs expanded (sorted)."""
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(p.glob("part-*.parquet")) or sorted(p.glob("*.parquet")) or sorted(p.glob("*.npy"))
            if not found:
                raise UserError(f"{p}: no .npy or .parquet shards in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(src):
            found = [Path(f) for f in sorted(glob.glob(src))]
            if not found:
                raise UserError(f"{src}: the pattern matches no file")
            files += found
        else:
            raise UserError(f"{src}: no such file or folder")
    return files


def _kind(path: Path) -> str:
    if path.suffix == ".npy":
        return "npy"
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix in (".csv", ".jsonl"):
        return "tags"
    raise UserError(f"{path}: not a .npy, .parquet or tags file (.csv/.jsonl of hspnet tag)")


def open_shard_set(sources: list[str | os.PathLike]) -> ShardSet:
    """Open and check every shard named by ``sources`` (files, folders, globs; one kind).

    Raises:
        UserError: A missing, unreadable or truncated file, mixed kinds, or shards of
            different dims; the message names the file.
    """
    files = _expand([str(s) for s in sources])
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise UserError(f"mixed shard kinds ({', '.join(sorted(kinds))}); give one kind per build")
    kind = kinds.pop()
    opener = {"npy": _open_npy, "parquet": _open_parquet, "tags": _open_tags}[kind]
    shards = [opener(f) for f in files]
    dim = shards[0].dim
    for s in shards[1:]:
        if s.dim != dim:
            raise UserError(
                f"{s.path}: vectors have dim {s.dim} but {shards[0].path} has dim {dim}; "
                "one index holds one model's embeddings"
            )
    root, model, manifest = Path(files[0].parent).absolute(), None, {}
    if kind == "tags":
        root = common_root([Path(s.extra["images_dir"]) for s in shards])
        for s in shards:
            s.extra["keys"] = rebase_paths(s.extra.pop("paths"), Path(s.extra["images_dir"]), root)
        model = shards[0].extra["model"]
    elif kind == "parquet":
        manifest, model, images = _parquet_manifest(files[0].parent)
        root = Path(images) if images else root
    return ShardSet(shards=shards, kind=kind, dim=dim, root=root, model=model, manifest=manifest)


def _open_npy(path: Path) -> Shard:
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable .npy array ({why}; truncated or not written by numpy?)") from None
    if arr.ndim != 2 or arr.dtype not in (np.float16, np.float32) or arr.shape[1] == 0:
        raise UserError(f"{path}: expected a 2-D float16/float32 array of embeddings; got {arr.dtype} {arr.shape}")
    keys = path.with_suffix(".keys.txt")
    extra: dict[str, Any] = {}
    if keys.is_file():
        lines, marks = _line_marks(keys)
        if lines != arr.shape[0]:
            raise UserError(f"{keys}: {lines} keys but {path.name} holds {arr.shape[0]} rows")
        extra["keys_file"], extra["key_marks"] = keys, marks
    return Shard(path=path, kind="npy", rows=int(arr.shape[0]), dim=int(arr.shape[1]), extra=extra)


def _line_marks(path: Path, every: int = BLOCK_ROWS) -> tuple[int, np.ndarray]:
    """(line count, byte offset of lines 0, every, 2 every, ...): a piece's keys are found by a seek
    to the nearest mark, not by reading the file from its start (8 bytes per ``every`` lines)."""
    count, pos, marks = 0, 0, [0]
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            # line number count + j + 1 starts after newline j of this chunk
            first = (-(count + 1)) % every
            marks += (pos + ends[first::every] + 1).tolist()
            count += len(ends)
            pos += len(chunk)
    marks = [m for m in marks if m < pos] or [0]
    return count, np.asarray(marks, dtype=np.int64)


def _key_lines(shard: Shard, start: int, stop: int) -> Iterator[str]:
    mark = start // BLOCK_ROWS
    with open(shard.extra["keys_file"], "rb") as fh:
        fh.seek(int(shard.extra["key_marks"][mark]))
        for number, raw in enumerate(fh, start=mark * BLOCK_ROWS):
            if number >= stop:
                return
            if number >= start:
                yield unescape(raw.rstrip(b"\n").decode("utf-8", "surrogateescape"))


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a torn or foreign file
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path}: not a readable Parquet file ({why}); truncated? rerun the tag command "
            "that wrote it (it redoes unfinished files)"
        ) from None


def _open_parquet(path: Path) -> Shard:
    import pyarrow as pa

    pf = _parquet_file(path)
    schema = pf.schema_arrow
    missing = [c for c in ("key", "embedding") if c not in schema.names]
    if missing:
        raise UserError(
            f"{path}: no {' or '.join(repr(c) for c in missing)} column (columns: {', '.join(schema.names)})"
        )
    typ = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(typ) or not (
        pa.types.is_float16(typ.value_type) or pa.types.is_float32(typ.value_type)
    ):
        raise UserError(f"{path}: column 'embedding' is {typ}; expected fixed_size_list<float16|float32>[D]")
    groups = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    return Shard(path=path, kind="parquet", rows=int(sum(groups)), dim=int(typ.list_size), extra={"row_groups": groups})


def _embedding_array(shard: Shard, column: Any, first: int) -> np.ndarray:
    """A row group's embedding column as an (rows, dim) float32 array (no nulls allowed)."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for chunk in chunks:
        if chunk.null_count:
            raise UserError(f"{shard.path}: a null embedding near row {first}; rerun the tag command that wrote it")
        # flatten(), not .values: it honours a sliced chunk's offset
        parts.append(np.asarray(chunk.flatten().to_numpy(zero_copy_only=False)).reshape(-1, shard.dim))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, shard.dim), np.float32)


def _parquet_blocks(shard: Shard, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, list[str]]]:
    pf = _parquet_file(shard.path)
    first = 0
    for g, rows in enumerate(shard.extra["row_groups"]):
        a, b = max(start, first), min(stop, first + rows)
        if a < b:
            try:
                emb = _embedding_array(shard, pf.read_row_group(g, columns=["embedding"]).column(0), first)
                keys = pf.read_row_group(g, columns=["key"]).column(0).to_pylist()
            except UserError:
                raise
            except Exception as exc:  # a torn page inside a file whose footer reads
                raise UserError(f"{shard.path}: row group {g} cannot be read ({str(exc).strip()[:200]})") from None
            if any(k is None for k in keys[a - first : b - first]):
                raise UserError(f"{shard.path}: a null key in row group {g}")
            block = normalize_rows(np.ascontiguousarray(emb[a - first : b - first]), shard.path, a)
            yield a, block, keys[a - first : b - first]
        first += rows


def _parquet_manifest(folder: Path) -> tuple[dict[str, Any], str | None, str | None]:
    """(manifest, model description, images root) of a Parquet output folder (all optional)."""
    # hspnet tag --format parquet writes _manifest.json (the underscore keeps pyarrow and pandas
    # from reading it as data); manifest.json is accepted for folders written by other tools.
    path = next((folder / name for name in ("_manifest.json", "manifest.json") if (folder / name).is_file()), None)
    if path is None:
        return {}, None, None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict):
        return {}, None, None
    if manifest.get("complete") is False:
        raise UserError(f"{path}: the tagging run is unfinished; rerun the same hspnet tag command to complete it")
    model = manifest.get("model")
    if isinstance(model, dict):
        model = model.get("scorer") or model.get("description")
    fp = manifest.get("fingerprint") if isinstance(manifest.get("fingerprint"), dict) else {}
    images = manifest.get("images_dir") or fp.get("images_dir")
    return manifest, (str(model) if model else None), (str(images) if isinstance(images, str) else None)


def _open_tags(path: Path) -> Shard:
    from hspnet_cli.tagsfile.reader import read_tags_output

    data = read_tags_output(path)
    return Shard(
        path=path,
        kind="tags",
        rows=data.n,
        dim=data.dim,
        extra={"emb": data.emb, "paths": data.paths, "images_dir": str(data.images_dir), "model": data.model},
    )
