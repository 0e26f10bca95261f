"""Output files of ``hspnet tag`` and how they are appended, checkpointed and resumed.

Given ``--out DIR/NAME.EXT`` (``STEM`` = ``DIR/NAME``; no extension: ``STEM`` = the path) a run
writes, all UTF-8 text with ``\\n`` line ends unless said otherwise:

``NAME.EXT`` (``--format csv``, default)::

    path,tags,scores,groups
    cats/a.jpg,cat;sofa,0.9712;0.6301,animals;furniture

  ``path`` is the image's key (relative POSIX path under IMAGES_DIR), ``tags`` the selected
  labels ``;``-joined by probability descending, ``scores`` their probabilities (4 significant
  digits, ``0.9712``, ``0.0002153``, ``1.2e-05``: their order can always be read; same order),
  ``groups`` the groups with at least one selected member, in order of their best member.
  Quoting is the csv module's minimal quoting (a path holding ``,`` or ``"`` is quoted). Text
  cells (path, each tag and group name, the failure reason) are escaped as
  :mod:`hspnet_cli.tagsfile.escape` says: the file is valid UTF-8 with one line a row
  whatever the file names, a ``;`` inside a label name cannot split the list, no cell starts a
  spreadsheet formula, and ``unescape`` gives every file name back byte for byte.

``NAME.EXT`` (``--format jsonl``): one JSON object a line::

    {"path": "cats/a.jpg", "tags": ["cat", "sofa"], "scores": [0.971199989, 0.630100012],
     "groups": ["animals", "furniture"], "probs": [0.0311999992, 0.971199989, ...]}

  ``probs`` holds every label's probability in the manifest's ``labels`` order, at full float32
  precision (9 significant digits, exact). ``path`` is escaped as in the CSV; names are JSON strings.

``STEM.emb.f32``: raw little-endian float32, ``embedding_dim`` values a row, no header; row i
is the unit-norm image embedding of row i of the tags file (``np.fromfile(p, "<f4").reshape(-1, D)``).

``STEM.failed.csv``: ``path,error`` header, then one row per image that could not be read
(these images have no tags row and no embedding row).

``STEM.manifest.json``: ``{"format": "hspnet-tags", "version": 1, "package_version",
"complete": bool, "model": {...}, "taxonomy", "labels": [...], "groups": {group: [labels]},
"thresholds": [per label, label order], "threshold_source", "options": {...},
"fingerprint": {...}, "embedding": {"file", "dim", "dtype": "float32", "byteorder": "little"},
"files": {"tags", "failed", "embeddings"} (names relative to the manifest's folder),
"counts": {"items", "rows", "failed"}, "bytes": {"tags", "emb", "failed"}, "text_escaping": 1}``. ``fingerprint``
(model, labels, thresholds, output options, decode mode, image list digest) must match for a rerun to
resume; ``counts``/``bytes`` are final once ``complete`` is true.

``STEM.decode.log``: what the image decoders said (warnings, C-library messages), one line a
message, ``path<TAB>source<TAB>message``, appended by every invocation (see
:mod:`hspnet_cli.tagging.chatter`); written only when there is something to say.

``STEM.progress.json`` (only while a run is unfinished): ``{"format": "hspnet-tag-progress",
"version": 1, "items_done", "rows", "failed", "bytes": {"tags", "emb", "failed"}}``, rewritten
atomically after every batch once that batch's rows are flushed. Resuming truncates each file
to its recorded length (dropping a half-written tail) and skips the ``items_done`` first items.

Sharded runs (``--shard i/N`` with N > 1) insert ``.shard-i-of-N`` before the extension of
``--out`` (``tags.csv`` -> ``tags.shard-0-of-4.csv``, ``tags.shard-0-of-4.emb.f32``, ...). Shard
i holds the items at positions p (in the discovery / ``--list`` order, recorded as
``items_digest`` of the unsharded list) with ``p % N == i``, in order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import output_errors, read_json_object, write_text_atomic
from hspnet_cli.tagsfile.escape import TEXT_ESCAPING, escape, join_list

MANIFEST_FORMAT = "hspnet-tags"
PROGRESS_FORMAT = "hspnet-tag-progress"
VERSION = 1
CSV_HEADER = ("path", "tags", "scores", "groups")
FAILED_HEADER = ("path", "error")
_RERUN = "then rerun the same command: it continues after the last batch recorded"
ENCODING = ("utf-8", "surrogateescape")  # reading: outputs written before cells were escaped held raw bytes


@dataclass(frozen=True)
class OutputPaths:
    """Where a run's files go (see module docstring)."""

    tags: Path
    failed: Path
    emb: Path
    manifest: Path
    progress: Path
    decode_log: Path

    @classmethod
    def for_out(cls, out: str | Path) -> OutputPaths:
        out = Path(out)
        stem = out.with_suffix("") if out.suffix else out
        return cls(
            tags=out,
            failed=Path(f"{stem}.failed.csv"),
            emb=Path(f"{stem}.emb.f32"),
            manifest=Path(f"{stem}.manifest.json"),
            progress=Path(f"{stem}.progress.json"),
            decode_log=Path(f"{stem}.decode.log"),
        )

    def data_files(self) -> dict[str, Path]:
        return {"tags": self.tags, "emb": self.emb, "failed": self.failed}

    def all(self) -> list[Path]:
        return [self.tags, self.failed, self.emb, self.manifest, self.progress, self.decode_log]


def shard_out(out: str | Path, index: int, count: int) -> Path:
    """``tags.csv`` -> ``tags.shard-i-of-N.csv`` when N > 1, else ``out`` unchanged."""
    out = Path(out)
    if count <= 1:
        return out
    return out.with_name(f"{out.stem}.shard-{index}-of-{count}{out.suffix}")


def csv_line(fields: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


class TagSelector:
    """Probabilities -> selected labels and groups (thresholds per label, optional top-k cap)."""

    def __init__(
        self, label_names: list[str], groups: dict[str, list[str]], thresholds: np.ndarray, top_k: int = 0
    ) -> None:
        self.label_names = list(label_names)
        owner = {label: g for g, members in groups.items() for label in members}
        self.group_of = [owner.get(name, name) for name in self.label_names]
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.top_k = int(top_k)

    def select(self, probs: np.ndarray) -> list[int]:
        """Label indices with ``prob >= threshold``, by probability descending, capped at top-k."""
        idx = np.flatnonzero(probs >= self.thresholds)
        idx = idx[np.argsort(-probs[idx], kind="stable")]
        if self.top_k > 0:
            idx = idx[: self.top_k]
        return idx.tolist()

    def groups(self, selected: list[int]) -> list[str]:
        out: list[str] = []
        for i in selected:
            g = self.group_of[i]
            if g not in out:
                out.append(g)
        return out

    def csv_row(self, key: str, probs: np.ndarray) -> str:
        sel = self.select(probs)
        return csv_line(
            [
                escape(key),
                join_list([self.label_names[i] for i in sel]),
                ";".join(f"{probs[i]:.4g}" for i in sel),
                join_list(self.groups(sel)),
            ]
        )

    def jsonl_row(self, key: str, probs: np.ndarray) -> str:
        sel = self.select(probs)
        row = {
            "path": escape(key),
            "tags": [self.label_names[i] for i in sel],
            "scores": [_full(probs[i]) for i in sel],
            "groups": self.groups(sel),
            "probs": [_full(p) for p in probs],
        }
        return json.dumps(row, ensure_ascii=False) + "\n"


def _full(p: float) -> float:
    """A float32 probability as the shortest decimal that gives it back exactly (9 digits)."""
    return float(f"{float(p):.9g}")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A manifest or progress record of an earlier run (see :func:`hspnet_cli.core.io_utils.read_json_object`)."""
    return read_json_object(path, what, fix="rerun with --overwrite to start over")


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def new_manifest(
    paths: OutputPaths,
    *,
    model: dict[str, Any],
    taxonomy: str,
    labels: list[str],
    groups: dict[str, list[str]],
    thresholds: Sequence[float],
    threshold_source: str,
    options: dict[str, Any],
    fingerprint: dict[str, Any],
    embed_dim: int,
    items: int,
) -> dict[str, Any]:
    """The manifest of a run that is starting (``complete`` false; counts and bytes come at the end).

    Args:
        paths: The run's output files.
        model: What scored the images (``describe(scorer)`` plus its fingerprint).
        taxonomy: The taxonomy's name.
        labels: Label names in probability-column order.
        groups: Group -> member labels.
        thresholds: Per-label thresholds, label order.
        threshold_source: Where the thresholds came from (file, model, one value).
        options: The run's options, for the record.
        fingerprint: What must match for a rerun to resume.
        embed_dim: Embedding width.
        items: Input items of this run (or shard).
    """
    return {
        "format": MANIFEST_FORMAT,
        "version": VERSION,
        "package_version": __version__,
        "complete": False,
        "model": model,
        "taxonomy": taxonomy,
        "labels": list(labels),
        "groups": {g: list(m) for g, m in groups.items()},
        "thresholds": [float(t) for t in thresholds],
        "threshold_source": threshold_source,
        "options": options,
        "fingerprint": fingerprint,
        "embedding": {"file": paths.emb.name, "dim": int(embed_dim), "dtype": "float32", "byteorder": "little"},
        "files": {"tags": paths.tags.name, "failed": paths.failed.name, "embeddings": paths.emb.name},
        "counts": {"items": int(items), "rows": 0, "failed": 0},
        "bytes": {},
        "text_escaping": TEXT_ESCAPING,
    }


class TagWriter:
    """Appends batches to the tags, embeddings and failures files and records progress after each.

    Use :meth:`start_fresh` or :meth:`resume`, then :meth:`write_batch` per batch, then
    :meth:`close`. All three data files are opened in binary append mode, so ``tell()`` is the
    byte length recorded in the progress file.
    """

    def __init__(self, paths: OutputPaths, selector: TagSelector, fmt: str, embed_dim: int) -> None:
        if fmt not in ("csv", "jsonl"):
            raise UserError(f"--format must be csv or jsonl; got '{fmt}'")
        self.paths, self.selector, self.fmt, self.embed_dim = paths, selector, fmt, embed_dim
        self.items_done = self.rows = self.failed = 0
        self._files: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------------
    def start_fresh(self) -> None:
        """Create the data files with their headers and record zero progress.

        Raises:
            OutputError: A full disk, a quota or permissions (one line; rerunning continues).
        """
        with output_errors(self.paths.tags, "tag outputs", _RERUN):
            self._start_fresh()

    def _start_fresh(self) -> None:
        for key, path in self.paths.data_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                if key == "tags" and self.fmt == "csv":
                    fh.write(csv_line(CSV_HEADER).encode())
                elif key == "failed":
                    fh.write(csv_line(FAILED_HEADER).encode())
        self._open()
        self._commit()

    def resume(self, progress: dict[str, Any]) -> None:
        """Truncate the data files to the recorded lengths and continue after ``items_done``."""
        sizes = progress.get("bytes")
        if progress.get("format") != PROGRESS_FORMAT or not isinstance(sizes, dict):
            raise UserError(f"{self.paths.progress}: not an hspnet tag progress file; rerun with --overwrite")
        for key, path in self.paths.data_files().items():
            want = int(sizes.get(key, -1))
            have = path.stat().st_size if path.is_file() else -1
            if have < want or want < 0:
                raise UserError(
                    f"{path}: shorter than the progress record says ({max(have, 0)} < {want} bytes; was "
                    "it edited, or did the machine lose power?); rerun with --overwrite to start over"
                )
            if have > want:
                os.truncate(path, want)
        self.items_done = int(progress["items_done"])
        self.rows = int(progress["rows"])
        self.failed = int(progress["failed"])
        if self.paths.emb.stat().st_size != self.rows * self.embed_dim * 4:
            raise UserError(
                f"{self.paths.emb}: size does not match {self.rows} rows of {self.embed_dim} floats; "
                "rerun with --overwrite to start over"
            )
        self._open()

    def _open(self) -> None:
        for key, path in self.paths.data_files().items():
            self._files[key] = open(path, "ab")

    def close(self) -> None:
        """Close the files. A failing close (its last flush hit a full disk) is ignored: bytes
        past the progress record are cut off by the next resume anyway."""
        for fh in self._files.values():
            try:
                fh.close()
            except OSError:
                pass
        self._files.clear()

    def __enter__(self) -> TagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------
    def write_batch(
        self, keys: list[str], probs: np.ndarray, embeddings: np.ndarray, failures: list[tuple[str, str]], items: int
    ) -> None:
        """Append one batch: rows for ``keys`` (probabilities and embeddings row-aligned), failure
        rows, then record that ``items`` more input items are done.

        Raises:
            OutputError: A full disk, a quota or permissions (one line). What was recorded
                before stays valid: the rerun truncates the files to it and continues.
        """
        with output_errors(self.paths.tags, "tag outputs", _RERUN):
            self._write_batch(keys, probs, embeddings, failures, items)

    def _write_batch(
        self, keys: list[str], probs: np.ndarray, embeddings: np.ndarray, failures: list[tuple[str, str]], items: int
    ) -> None:
        if len(keys) != len(probs) or len(keys) != len(embeddings):
            raise ValueError("keys, probs and embeddings must have the same number of rows")
        if len(keys):
            row = self.selector.csv_row if self.fmt == "csv" else self.selector.jsonl_row
            text = "".join(row(k, p) for k, p in zip(keys, probs))
            self._files["tags"].write(text.encode())
            emb = np.ascontiguousarray(embeddings, dtype="<f4")
            if emb.ndim != 2 or emb.shape[1] != self.embed_dim:
                raise ValueError(f"embeddings must be (n, {self.embed_dim}); got {emb.shape}")
            self._files["emb"].write(emb.tobytes())
        if failures:
            text = "".join(csv_line([escape(k), escape(" ".join(err.split()))]) for k, err in failures)
            self._files["failed"].write(text.encode())
        self.rows += len(keys)
        self.failed += len(failures)
        self.items_done += items
        self._commit()

    def sizes(self) -> dict[str, int]:
        """Byte length of each data file (after a flush: what is in the kernel)."""
        out: dict[str, int] = {}
        for key, path in self.paths.data_files().items():
            fh = self._files.get(key)
            out[key] = fh.tell() if fh is not None and not fh.closed else path.stat().st_size
        return out

    def _commit(self) -> None:
        for fh in self._files.values():
            fh.flush()  # in the kernel: survives kill -9 of this process
        write_json(self.paths.progress, self.progress_record())

    def progress_record(self) -> dict[str, Any]:
        return {
            "format": PROGRESS_FORMAT,
            "version": VERSION,
            "items_done": self.items_done,
            "rows": self.rows,
            "failed": self.failed,
            "bytes": self.sizes(),
        }


def read_failures(path: Path, limit: int | None = 20) -> list[tuple[str, str]]:
    """The first ``limit`` rows (None: all) of a failures file (missing file: none), cells as
    written (escaped: :func:`~hspnet_cli.tagsfile.escape.unescape` gives the file name)."""
    out: list[tuple[str, str]] = []
    if not path.is_file():
        return out
    with open(path, encoding=ENCODING[0], errors=ENCODING[1], newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if limit is not None and len(out) >= limit:
                break
            if len(row) == 2:
                out.append((row[0], row[1]))
    return out
