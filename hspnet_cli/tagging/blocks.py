"""Block-wise tagging into a Parquet folder: the plan, resume, and the local engine.

Used by ``hspnet tag --format parquet`` and by every non-folder SOURCE (URL prefixes, tar
shards), with ``--engine local`` (here) or ``--engine ray`` (:mod:`hspnet_cli.cluster`). The
source is cut into blocks (:mod:`hspnet_cli.sources.base`); block i becomes
``OUT/part-{i:06d}.parquet`` (:mod:`hspnet_cli.tagsfile.parquet`). Resume = every block whose
part file has a readable footer is done; the rest are (re)done. ``--shard i/N`` takes the blocks
with ``index % N == i``; every shard writes into the same folder (a shared file system), and the
run that finds every part present marks the manifest complete, so a Slurm array needs no merge.

Both engines decode with :func:`decode_bytes` and score with :func:`score_tensors`, so their
outputs agree (same keys; probabilities equal up to batch-composition rounding).
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli import __version__
from hspnet_cli.core.errors import UserError
from hspnet_cli.sources import Block, Source
from hspnet_cli.tagsfile.parquet import EMBEDDING_DTYPES, MANIFEST_NAME, part_name, part_status, read_failed, write_part
from hspnet_cli.tagsfile.writer import MANIFEST_FORMAT, VERSION, TagSelector, read_json, write_json

log = logging.getLogger(__name__)


@dataclass
class BlockRun:
    """Everything a worker needs to tag and write a block (picklable; no model inside)."""

    source: Source
    out_dir: Path
    label_names: list[str]
    thresholds: np.ndarray
    groups: dict[str, list[str]]
    top_k: int
    max_pixels: int
    decode_timeout: float
    dtype: str
    blocks: list[Block] = field(default_factory=list)
    todo: list[Block] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def selector(self) -> TagSelector:
        return TagSelector(self.label_names, self.groups, self.thresholds, self.top_k)

    def write(
        self,
        block: int,
        keys: list[str],
        probs: np.ndarray,
        emb: np.ndarray,
        failures: list[tuple[str, str]],
        items: int,
    ) -> None:
        sel = self.selector()
        write_part(
            self.out_dir,
            block,
            keys,
            probs,
            emb,
            [sel.select(p) for p in probs],
            self.label_names,
            failures,
            items,
            self.dtype,
        )


def decode_bytes(
    data: bytes | None, error: str, transform: Callable, max_pixels: int, timeout: float
) -> tuple[Any, str]:
    """(preprocessed tensor or None, failure reason) for one image's bytes (same rules as the
    local folder path: :func:`hspnet_cli.tagging.image_io.open_rgb`)."""
    from hspnet_cli.tagging.image_io import DecodeError, decode_deadline, describe_error, open_rgb

    if data is None:
        return None, error
    try:
        with decode_deadline(timeout):
            image = open_rgb(io.BytesIO(data), max_pixels)
            try:
                return transform(image), ""
            except DecodeError:
                raise
            except Exception as exc:  # noqa: BLE001 - a transform failure is this image's failure
                return None, f"preprocessing failed: {describe_error(exc)}"
    except DecodeError as exc:
        return None, str(exc)


def score_tensors(scorer: Any, images: Any) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, C) float32, embeddings (n, D) float32) of a stacked batch."""
    import torch

    from hspnet_cli.tagging.scoring import embed

    with torch.no_grad():
        emb = embed(scorer, images)
        probs = torch.sigmoid(scorer.scores_from_embeddings(emb).float()).cpu().numpy()
    return probs, emb.float().cpu().numpy()


def plan_run(
    source: Source,
    out: str | Path,
    scorer: Any,
    *,
    threshold: float | None = None,
    thresholds: Any = None,
    top_k: int = 0,
    block_size: int = 1024,
    shard: Any = None,
    overwrite: bool = False,
    dtype: str = "float32",
    max_pixels: int = 178_956_970,
    decode_timeout: float = 60.0,
    engine: str = "local",
) -> BlockRun:
    """List the source, write or check the manifest, and find the blocks still to do.

    Raises:
        UserError: Bad options, or ``out`` holds a run with other settings.
    """
    from hspnet_cli.scoring.scorer import describe
    from hspnet_cli.tagging.run import parse_shard, resolve_thresholds, scorer_fingerprint

    if dtype not in EMBEDDING_DTYPES:
        raise UserError(f"--embedding-dtype must be float32 or float16; got '{dtype}'")
    if block_size < 1 or top_k < 0:
        raise UserError("--block-size must be >= 1 and --top-k >= 0")
    out_dir = Path(out)
    if out_dir.suffix in (".csv", ".jsonl") or out_dir.is_file():
        raise UserError(f"{out_dir}: --format parquet writes a folder; give --out a folder name (e.g. tags/)")
    index, count = parse_shard(shard)
    thr, thr_source = resolve_thresholds(scorer, threshold, thresholds)
    tax = scorer.taxonomy
    blocks = source.plan(block_size)
    if not blocks:
        raise UserError(f"{source.describe()}: no images to tag")
    items = source.items()
    fingerprint = {
        "scorer": scorer_fingerprint(scorer),
        "labels": tax.label_names,
        "thresholds": [round(float(t), 6) for t in thr],
        "top_k": top_k,
        "format": "parquet",
        "max_pixels": max_pixels,
        "images_dir": source.root,
        "source": source.describe(),
        "source_kind": source.kind,
        "blocks": len(blocks),
        "block_size": block_size,
        "items_digest": items.digest() if items is not None else None,
        "embedding_dtype": dtype,
    }
    mpath = out_dir / MANIFEST_NAME
    if overwrite and out_dir.is_dir():
        import shutil

        shutil.rmtree(out_dir)
    if mpath.is_file():
        manifest = read_json(mpath, "tag manifest")
        old = manifest.get("fingerprint", {})
        changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if changed:
            raise UserError(
                f"{out_dir}: made by a run with other settings ({', '.join(changed)} changed); rerun with "
                "the same model and options to continue it, or add --overwrite to start over"
            )
    else:
        # Hidden names are other shards' temporary files (a Slurm array starting together).
        if out_dir.is_dir() and any(not p.name.startswith(".") for p in out_dir.iterdir()):
            raise UserError(
                f"{out_dir}: exists, is not empty and has no {MANIFEST_NAME}; use another --out or --overwrite"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        dim = int(scorer.label_features.shape[1])
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": VERSION,
            "package_version": __version__,
            "complete": False,
            "model": {**describe(scorer), "fingerprint": fingerprint["scorer"]},
            "taxonomy": tax.name,
            "labels": tax.label_names,
            "groups": {g: list(m) for g, m in tax.groups.items()},
            "thresholds": [float(t) for t in thr],
            "threshold_source": thr_source,
            "options": {
                "source": source.describe(),
                "format": "parquet",
                "top_k": top_k,
                "block_size": block_size,
                "max_pixels": max_pixels,
                "engine": engine,
                "device": str(scorer.device),
            },
            "fingerprint": fingerprint,
            "embedding": {"column": "embedding", "dim": dim, "dtype": dtype},
            "files": {"parts": "part-*.parquet", "failed": "_failed/part-*.csv"},
            "counts": {"items": len(items) if items is not None else None, "rows": 0, "failed": 0},
            "key_scheme": {"folder": "path relative to the folder", "url": "full object URL", "tar": "SHARD#MEMBER"}[
                source.kind
            ]
            if source.kind in ("folder", "url", "tar")
            else "",
            "text_escaping": 0,
        }
        write_json(mpath, manifest)
    mine = [b for b in blocks if b.index % count == index]
    todo = [b for b in mine if part_status(out_dir / part_name(b.index)) is None]
    run = BlockRun(
        source=source,
        out_dir=out_dir,
        label_names=list(tax.label_names),
        thresholds=thr,
        groups={g: list(m) for g, m in tax.groups.items()},
        top_k=top_k,
        max_pixels=max_pixels,
        decode_timeout=decode_timeout,
        dtype=dtype,
        blocks=blocks,
        todo=todo,
        manifest=manifest,
    )
    return run


def finish_run(run: BlockRun) -> dict[str, Any]:
    """Count what the parts say; mark the manifest complete when every block's part is present.
    Returns ``{"items", "rows", "failed", "missing_blocks", "complete", "failures_by_reason"}``."""
    items = rows = failed = 0
    missing = 0
    for b in run.blocks:
        st = part_status(run.out_dir / part_name(b.index))
        if st is None:
            missing += 1
            continue
        items, rows, failed = items + st["items"], rows + st["rows"], failed + st["failed"]
    reasons = Counter(reason_of(err) for _, err in read_failed(run.out_dir, limit=None))
    manifest = read_json(run.out_dir / MANIFEST_NAME, "tag manifest")
    if not missing:
        manifest.update(complete=True, counts={"items": items, "rows": rows, "failed": failed})
        write_json(run.out_dir / MANIFEST_NAME, manifest)
    return {
        "items": items,
        "rows": rows,
        "failed": failed,
        "missing_blocks": missing,
        "complete": not missing,
        "failures_by_reason": dict(reasons),
    }


def reason_of(error: str) -> str:
    """A failure's reason class: the text before its first ``:`` or ``(``."""
    return error.split(":")[0].split("(")[0].strip() or "unknown"


def run_local(
    run: BlockRun,
    scorer: Any,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> int:
    """Tag ``run.todo`` block by block in this process (DataLoader workers decode). Returns the
    number of input images processed."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from hspnet_cli.core.progress import NoBar, epoch_progress
    from hspnet_cli.sources import read_one
    from hspnet_cli.tagging.scoring import prepare_for_device

    class _BlockImages(Dataset):
        def __init__(self, opened: Any) -> None:
            self.opened = opened

        def __len__(self) -> int:
            return len(self.opened.keys)

        def __getitem__(self, i: int) -> tuple[Any, int, str]:
            data, err = read_one(self.opened, i)
            tensor, err = decode_bytes(data, err, scorer.transform, run.max_pixels, run.decode_timeout)
            return tensor, i, err

    def collate(batch: list) -> tuple[Any, list[int], list[tuple[int, str]]]:
        good = [(t, i) for t, i, e in batch if not e]
        return (
            torch.stack([t for t, _ in good]) if good else None,
            [i for _, i in good],
            [(i, e) for _, i, e in batch if e],
        )

    from hspnet_cli.core.device import intra_op_threads_set

    prepare_for_device(scorer)
    done = 0
    total = sum(b.stop - b.start for b in run.todo) if run.source.kind != "tar" else len(run.todo)
    with epoch_progress("tagging", total) if progress else NoBar() as bar, intra_op_threads_set(workers, threads):
        for block in run.todo:
            opened = run.source.open_block(block)
            keys: list[str] = []
            probs: list[np.ndarray] = []
            embs: list[np.ndarray] = []
            failures: list[tuple[str, str]] = []
            loader = DataLoader(
                _BlockImages(opened), batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate
            )
            for images, positions, failed in loader:
                if positions:
                    p, e = score_tensors(scorer, images)
                    probs.append(p)
                    embs.append(e)
                    keys += [opened.keys[i] for i in positions]
                failures += [(opened.keys[i], err) for i, err in failed]
                if run.source.kind != "tar":
                    bar.advance(len(positions) + len(failed))
            n_labels, dim = len(run.label_names), int(scorer.label_features.shape[1])
            run.write(
                block.index,
                keys,
                np.concatenate(probs) if probs else np.zeros((0, n_labels), np.float32),
                np.concatenate(embs) if embs else np.zeros((0, dim), np.float32),
                failures,
                len(opened.keys),
            )
            done += len(opened.keys)
            if run.source.kind == "tar":
                bar.advance(1)
    return done


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - start
