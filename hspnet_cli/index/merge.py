"""``hspnet index merge``: shard outputs of ``hspnet tag`` -> one tags file and one index.

The result is an ordinary ``hspnet tag`` output (same files, same manifest layout, see
:mod:`hspnet_cli.tagsfile.writer`), so everything that reads a tagger's output reads a merge's:
``index build``/``add``, and a second merge. Rows are **sorted by path** (relative to the
deepest folder holding every shard's images folder), so the result does not depend on how the
images were split or the order the shards are given in. Failures are merged the same way.

Shards must agree on everything that decides a row's content: the model (description and
weights fingerprint), labels, thresholds, top-k, format and columns. Rows are copied byte for
byte when their path does not change and re-serialised with the rebased path when it does;
embeddings are copied in chunks. Every file is written atomically, the manifest last.
"""

from __future__ import annotations

import csv
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import atomic_write
from hspnet_cli.index import files
from hspnet_cli.index.build import build_index, default_index_path
from hspnet_cli.index.files import common_root, rebase_paths
from hspnet_cli.tagsfile.escape import escape, unescape
from hspnet_cli.tagsfile.reader import TagsOutput, read_tags_output
from hspnet_cli.tagsfile.writer import (
    CSV_HEADER,
    ENCODING,
    FAILED_HEADER,
    OutputPaths,
    csv_line,
    read_failures,
    write_json,
)

# Fingerprint entries that decide what a row says; shards that differ in one cannot be joined.
_MUST_AGREE = ("scorer", "labels", "thresholds", "top_k", "format", "text_escaping")


def _check_compatible(parts: list[TagsOutput], out: Path) -> None:
    first = parts[0]
    for part in parts:
        if part.file.resolve() == out.resolve():
            raise UserError(f"{out}: the output is one of the shards; write the merge elsewhere")
        if part.model != first.model:
            raise UserError(
                f"{part.file}: made by '{part.model}' but {first.file} by '{first.model}'; "
                "shards of different models cannot be merged"
            )
        if part.dim != first.dim:
            raise UserError(f"{part.file}: dim {part.dim} but {first.file} has dim {first.dim}")
        if part.fmt != first.fmt or part.header != first.header:
            raise UserError(
                f"{part.file}: {part.fmt} columns {part.header} differ from {first.file}'s {first.fmt} {first.header}"
            )
        for key in _MUST_AGREE:
            if part.fingerprint.get(key) != first.fingerprint.get(key):
                raise UserError(
                    f"{part.file}: its {key.replace('_', '-')} setting differs from {first.file}'s; shards "
                    "must come from one hspnet tag command (same model, thresholds and options)"
                )


def _rewrite(line: bytes, new_path: str, old_path: str, fmt: str, escaped: bool) -> bytes:
    """A row's line with its path replaced (unchanged bytes when the path is unchanged); paths
    are file names, escaped into the cell when the outputs escape text."""
    if new_path == old_path:
        return line
    text = line.decode(*ENCODING)
    cell = escape(new_path) if escaped else new_path
    if fmt == "csv":
        row = next(csv.reader([text]))
        return csv_line([cell, *row[1:]]).encode(*ENCODING)
    obj = json.loads(text)
    obj["path"] = cell
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode(*ENCODING)


def merge_shards(
    out: str | os.PathLike,
    shards: list[str | os.PathLike],
    index_out: str | os.PathLike | None = None,
    factory: str | None = None,
    nprobe: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Join shard outputs of ``hspnet tag`` into one output (see module docstring) and index it.

    Args:
        out: The merged tags file (its embeddings, failures and manifest are named from it).
        shards: The shards' tags files.
        index_out: Index path (default: ``out`` with ``.faiss``).
        factory, nprobe, seed: As for :func:`hspnet_cli.index.build.build_index`.

    Raises:
        UserError: No shards, incompatible shards, an image in two shards, or the output being
            one of the shards.
    """
    from hspnet_cli.core.locks import output_lock

    if not shards:
        raise UserError("give at least one shard tags file to merge")
    out = Path(out)
    target = OutputPaths.for_out(out)
    with output_lock(out, "tags file"):
        counts = _write_merged([read_tags_output(s) for s in shards], target)  # the shards' paths are freed here
        summary = build_index(
            out,
            index_out if index_out is not None else default_index_path(out),
            factory=factory,
            nprobe=nprobe,
            seed=seed,
        )
    return {**summary, "merged": str(out), **counts}


def _merged_order(parts: list[TagsOutput], root: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(every rebased path, and sorted by path: its indices into that list, shard, row)."""
    paths: list[str] = []
    for part in parts:
        paths += rebase_paths(part.paths, part.images_dir, root)
    shard_of = np.repeat(np.arange(len(parts)), [p.n for p in parts])
    row_of = np.concatenate([np.arange(p.n) for p in parts]) if parts else np.zeros(0, np.int64)
    # An object array + argsort: 8 bytes a row of index, no per-row tuples or dict.
    order = np.argsort(np.array(paths, dtype=object), kind="stable")
    for a, b in zip(order[:-1], order[1:]):
        if paths[a] == paths[b]:
            raise UserError(
                f"image '{paths[a]}' is in both {parts[shard_of[a]].file} and {parts[shard_of[b]].file}; "
                "shards must not overlap"
            )
    return paths, order, shard_of[order], row_of[order]


def _write_merged(parts: list[TagsOutput], target: OutputPaths) -> dict[str, int]:
    """Write the merged tags, embeddings, failures and manifest; (shards, rows, failed) counts."""
    _check_compatible(parts, target.tags)
    root = common_root([p.images_dir for p in parts])
    paths, order, shard_of, row_of = _merged_order(parts, root)
    first = parts[0]
    escaped = bool(first.manifest.get("text_escaping"))
    # The manifest is written last and says the files are complete: an earlier merge's must not
    # vouch for files a killed rerun left half replaced.
    target.manifest.unlink(missing_ok=True)
    with atomic_write(target.tags, "wb") as fh, ExitStack() as stack:
        sources = [stack.enter_context(open(p.file, "rb")) for p in parts]
        if first.fmt == "csv":
            fh.write(csv_line(first.header or list(CSV_HEADER)).encode(*ENCODING))
        for i, s, r in zip(order.tolist(), shard_of.tolist(), row_of.tolist()):
            fh.write(_rewrite(parts[s].line(sources[s], r), paths[i], parts[s].paths[r], first.fmt, escaped))
    _write_embeddings(target.emb, parts, shard_of, row_of)
    failures: list[tuple[str, str]] = []
    for part in parts:
        rows = read_failures(part.failed, None)
        names = [unescape(path) if escaped else path for path, _ in rows]
        failures += [(path, err) for path, (_, err) in zip(rebase_paths(names, part.images_dir, root), rows)]
    failures.sort()
    with atomic_write(target.failed, "wb") as fh:
        fh.write(csv_line(FAILED_HEADER).encode(*ENCODING))
        for path, err in failures:
            fh.write(csv_line([escape(path) if escaped else path, err]).encode(*ENCODING))
    target.progress.unlink(missing_ok=True)
    write_json(target.manifest, _merged_manifest(parts, target, root, len(paths), len(failures)))
    return {"shards": len(parts), "failed": len(failures)}


def _write_embeddings(path: Path, parts: list[TagsOutput], shard_of: np.ndarray, row_of: np.ndarray) -> None:
    """Embedding rows in merged order (``shard_of``/``row_of``: source of each output row),
    copied chunk by chunk from the shards' memmaps."""
    embs = [p.embeddings() for p in parts]
    dim = parts[0].dim
    with atomic_write(path, "wb") as fh:
        for start in range(0, len(shard_of), files.CHUNK_ROWS):
            sl = slice(start, start + files.CHUNK_ROWS)
            block = np.empty((len(shard_of[sl]), dim), dtype="<f4")
            for s in np.unique(shard_of[sl]):
                mask = shard_of[sl] == s
                block[mask] = embs[s][row_of[sl][mask]]
            fh.write(block.tobytes())


def _merged_manifest(
    parts: list[TagsOutput], target: OutputPaths, root: Path, rows: int, failed: int
) -> dict[str, Any]:
    """The tagger's manifest layout for the merged files (first shard's facts, merged counts)."""
    first = parts[0].manifest
    items = sum(int((p.manifest.get("counts") or {}).get("items", p.n)) for p in parts)
    options = first.get("options") if isinstance(first.get("options"), dict) else {}
    return {
        **first,
        "complete": True,
        "options": {**options, "images_dir": str(root), "list": None, "shard": None},
        "fingerprint": {
            **parts[0].fingerprint,
            "images_dir": str(root),
            "shard": None,
            "items": items,
            "items_digest": None,
        },
        "embedding": {**(first.get("embedding") or {}), "file": target.emb.name},
        "files": {"tags": target.tags.name, "failed": target.failed.name, "embeddings": target.emb.name},
        "counts": {"items": items, "rows": rows, "failed": failed},
        "bytes": {key: p.stat().st_size for key, p in target.data_files().items()},
        "order": "sorted by path",
        "merged_from": [{"tags": str(p.file.absolute()), "rows": p.n, "images_dir": str(p.images_dir)} for p in parts],
    }
