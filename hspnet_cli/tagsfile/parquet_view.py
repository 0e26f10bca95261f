"""Reading a ``--format parquet`` folder where the tag readers expect a tags file.

``index build/add/merge``, ``select``, ``export-labels`` and ``split`` read a tag output through
:class:`~hspnet_cli.tagsfile.reader.TagsOutput` (row offsets into a text file, a float32
embedding file). For a Parquet folder, :func:`parquet_view_file` reads the parts (one at a
time, never the whole dataset in memory) into a view under ``OUT/_view/``: ``tags.jsonl`` (the
JSONL rows, with every probability) and ``tags.emb.f32``, made once and reused while the parts
are unchanged (a stamp of part names and sizes). Rows are in block order, and within a block in
source order, so the view's row i is the same image on every machine.

Paths in the view: for a folder source the key itself; for a URL prefix the key relative to the
prefix, and ``images_dir`` is the prefix; for tar shards ``SHARD#MEMBER`` relative to the shard
folder. ``hspnet search --copy-to`` fetches such images through :mod:`hspnet_cli.sources.fetch`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import read_json_object, write_text_atomic
from hspnet_cli.tagsfile.parquet import MANIFEST_NAME, VIEW_DIR, part_status, pyarrow_modules


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _stamp(parts: list[Path]) -> str:
    return json.dumps([[p.name, p.stat().st_size] for p in parts])


def view_path(key: str, manifest: dict[str, Any]) -> str:
    """The view's path of ``key`` (see module doc)."""
    fp = manifest.get("fingerprint", {})
    root = str(fp.get("images_dir", ""))
    if fp.get("source_kind") == "url" and key.startswith(root + "/"):
        return key[len(root) + 1 :]
    return key


def parquet_view_file(folder: str | os.PathLike) -> Path:
    """The tags file of the JSONL view of the Parquet folder ``folder``, (re)built when its parts
    changed; :func:`hspnet_cli.tagsfile.reader.read_tags_output` reads it like any tag output.

    Raises:
        UserError: Not a finished Parquet tag output, or a part that cannot be read.
    """
    from hspnet_cli.tagsfile.writer import TagSelector

    folder = Path(folder)
    mpath = folder / MANIFEST_NAME
    manifest = read_json_object(mpath, "tags manifest")
    if manifest.get("complete") is not True:
        raise UserError(f"{mpath}: the tagging run is unfinished; rerun the same hspnet tag command to complete it")
    parts = _parts(folder)
    view = folder / VIEW_DIR
    tags, emb, vman, stamp_file = (
        view / "tags.jsonl",
        view / "tags.emb.f32",
        view / "tags.manifest.json",
        view / "stamp.json",
    )
    stamp = _stamp(parts)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp and tags.is_file() and emb.is_file()):
        _, pq = pyarrow_modules()
        dim = int(manifest["embedding"]["dim"])
        groups = manifest.get("groups") or {}
        selector = TagSelector(
            manifest["labels"],
            groups,
            np.asarray(manifest["thresholds"], np.float32),
            int(manifest.get("fingerprint", {}).get("top_k", 0)),
        )
        view.mkdir(exist_ok=True)
        stamp_file.unlink(missing_ok=True)
        tmp_tags, tmp_emb = view / ".tags.jsonl.tmp", view / ".tags.emb.f32.tmp"
        rows = 0
        with open(tmp_tags, "wb") as ft, open(tmp_emb, "wb") as fe:
            for part in parts:
                if part_status(part) is None:
                    raise UserError(
                        f"{part}: unreadable part file (truncated?); rerun the hspnet tag command to redo it"
                    )
                table = pq.read_table(part)
                keys = table.column("key").to_pylist()
                probs = np.asarray(table.column("probs").combine_chunks().flatten(), np.float32).reshape(len(keys), -1)
                vectors = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
                ft.write("".join(selector.jsonl_row(view_path(k, manifest), p) for k, p in zip(keys, probs)).encode())
                fe.write(np.asarray(vectors, "<f4").reshape(len(keys), dim).tobytes())
                rows += len(keys)
        from hspnet_cli.tagsfile.escape import escape
        from hspnet_cli.tagsfile.parquet import read_failed
        from hspnet_cli.tagsfile.writer import csv_line

        write_text_atomic(
            view / "tags.failed.csv",
            "path,error\n"
            + "".join(
                csv_line([escape(view_path(k, manifest)), escape(e)]) for k, e in read_failed(folder, limit=None)
            ),
        )
        os.replace(tmp_tags, tags)
        os.replace(tmp_emb, emb)
        fp = {**manifest.get("fingerprint", {}), "format": "jsonl"}
        write_text_atomic(
            vman,
            json.dumps(
                {
                    **manifest,
                    "fingerprint": fp,
                    "text_escaping": 1,
                    "parquet": str(folder),
                    "embedding": {"file": emb.name, "dim": dim, "dtype": "float32"},
                    "files": {"tags": tags.name, "embeddings": emb.name, "failed": "tags.failed.csv"},
                },
                indent=2,
            ),
        )
        write_text_atomic(stamp_file, stamp)
    return tags
