"""``hspnet tag --format parquet``: a folder of Parquet part files, one per block of the source.

Layout of ``OUT/`` (names starting with ``_`` are skipped by pyarrow/pandas dataset discovery, so
``pyarrow.dataset.dataset(OUT)``, ``pandas.read_parquet(OUT)`` and DuckDB's
``read_parquet('OUT/*.parquet')`` read exactly the rows)::

    part-000000.parquet ...   block i of the source (see hspnet_cli.sources.base), atomic rename each
    _manifest.json            the tagger's manifest (labels, thresholds, model, embedding dim/dtype, ...)
    _failed/part-000000.csv   images of block i that could not be read: path,error (header only if none)
    _view/                    made on demand by the readers of index/select/export-labels/split

Columns of every part (schema fixed; other tools read it):

* ``key`` string: the image's key (folder-relative path, object URL, or ``SHARD#MEMBER``);
* ``tags`` list<string>: labels at or above their threshold, by probability descending (top-k cap);
* ``scores`` list<float32>: their probabilities, same order;
* ``probs`` list<float32>: every label's probability, in the manifest's ``labels`` order;
* ``embedding`` fixed_size_list<float32 or float16>[D]: the unit-norm image embedding.

Each part's schema metadata holds ``hspnet.block``, ``hspnet.items`` (input images of the block)
and ``hspnet.failed``, so a finished part is recognised from its footer alone; a part whose footer
cannot be read (truncated, half-copied) counts as not done and is redone on resume. The failures
file of a block is written before its part, so a part on disk means both are final.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic

MANIFEST_NAME = "_manifest.json"
FAILED_DIR = "_failed"
VIEW_DIR = "_view"
EMBEDDING_DTYPES = ("float32", "float16")


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or one line saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("--format parquet needs pyarrow: pip install 'hspnet-cli[parquet]'") from None
    return pa, pq


def part_name(block: int) -> str:
    return f"part-{block:06d}.parquet"


def schema(dim: int, dtype: str = "float32") -> Any:
    """The Arrow schema of a part (see module doc)."""
    pa, _ = pyarrow_modules()
    value = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            ("key", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float32())),
            ("probs", pa.list_(pa.float32())),
            ("embedding", pa.list_(value, dim)),
        ]
    )


def failures_csv(failures: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "error"])
    for key, err in failures:
        w.writerow([key, " ".join(err.split())])
    return buf.getvalue()


def write_part(
    out_dir: str | Path,
    block: int,
    keys: list[str],
    probs: np.ndarray,
    embeddings: np.ndarray,
    selected: list[list[int]],
    label_names: list[str],
    failures: list[tuple[str, str]],
    items: int,
    dtype: str = "float32",
) -> Path:
    """Write block ``block``'s failures file, then its part file (temp name + rename).

    Args:
        selected: Per row, the selected label indices (order = tags order).
        items: Input images of the block (rows + failures).
    """
    pa, pq = pyarrow_modules()
    out_dir = Path(out_dir)
    (out_dir / FAILED_DIR).mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / FAILED_DIR / f"part-{block:06d}.csv", failures_csv(failures))
    n = len(keys)
    probs = np.asarray(probs, dtype=np.float32).reshape(n, len(label_names))
    emb = np.asarray(embeddings, dtype=np.float16 if dtype == "float16" else np.float32)
    dim = emb.shape[1] if emb.ndim == 2 else 0
    sch = schema(dim, dtype).with_metadata(
        {"hspnet.block": str(block), "hspnet.items": str(items), "hspnet.failed": str(len(failures))}
    )
    flat_probs = pa.array(probs.reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * probs.shape[1], probs.shape[1], dtype=np.int32))
    table = pa.Table.from_arrays(
        [
            pa.array(keys, pa.string()),
            pa.array([[label_names[j] for j in sel] for sel in selected], pa.list_(pa.string())),
            pa.array([[float(probs[i, j]) for j in sel] for i, sel in enumerate(selected)], pa.list_(pa.float32())),
            pa.ListArray.from_arrays(offsets, flat_probs),
            pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        ],
        schema=sch,
    )
    final = out_dir / part_name(block)
    tmp = out_dir / f".{final.name}.tmp-{os.getpid()}"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)
    return final


def part_status(path: str | Path) -> dict[str, int] | None:
    """``{"rows", "items", "failed"}`` of a finished part, or None when it is missing, truncated or
    not one of ours (its footer cannot be read or lacks our metadata)."""
    _, pq = pyarrow_modules()
    path = Path(path)
    if not path.is_file():
        return None
    try:
        meta = pq.read_metadata(path)
        kv = {k.decode(): v.decode() for k, v in (meta.schema.to_arrow_schema().metadata or {}).items()}
        return {"rows": int(meta.num_rows), "items": int(kv["hspnet.items"]), "failed": int(kv["hspnet.failed"])}
    except Exception:  # noqa: BLE001 - any unreadable footer means: redo this block
        return None


def read_failed(out_dir: str | Path, limit: int | None = 20) -> list[tuple[str, str]]:
    """Failure rows of every block (first ``limit``; None: all)."""
    rows: list[tuple[str, str]] = []
    folder = Path(out_dir) / FAILED_DIR
    for f in sorted(folder.glob("part-*.csv")) if folder.is_dir() else []:
        with open(f, encoding="utf-8", newline="") as fh:
            r = csv.reader(fh)
            next(r, None)
            for row in r:
                if len(row) == 2:
                    rows.append((row[0], row[1]))
                    if limit is not None and len(rows) >= limit:
                        return rows
    return rows


def is_parquet_output(path: str | Path) -> bool:
    """True for a folder written by ``hspnet tag --format parquet``."""
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()
