"""Complete tag outputs made without a model: for tests, benchmarks and tools that already hold
probabilities and embeddings (another tagger's scores, a synthetic benchmark set).

Everything goes through the tagger's own writer (:class:`~hspnet_cli.tagsfile.writer.TagWriter`,
:func:`~hspnet_cli.tagsfile.writer.new_manifest`), so what comes out is byte for byte what
``hspnet tag`` would write for the same rows: readers are tested against the real format, not a
hand-written copy of it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.tagsfile.escape import TEXT_ESCAPING
from hspnet_cli.tagsfile.writer import OutputPaths, TagSelector, TagWriter, new_manifest, write_json


def write_tag_output(
    out: str | Path,
    keys: Sequence[str],
    probs: np.ndarray | Iterable[np.ndarray],
    embeddings: np.ndarray | Iterable[np.ndarray],
    *,
    labels: Sequence[str],
    groups: dict[str, list[str]] | None = None,
    thresholds: float | Sequence[float] = 0.5,
    fmt: str = "csv",
    images_dir: str | Path | None = None,
    scorer: str = "test scorer",
    model_fingerprint: str | None = None,
    taxonomy: str = "tags",
    failures: Sequence[tuple[str, str]] = (),
    top_k: int = 0,
    batch_rows: int = 65536,
    fingerprint: dict[str, Any] | None = None,
) -> OutputPaths:
    """Write a finished tag output (tags, embeddings, failures, manifest) for given scores.

    Args:
        out: The tags file (``tags.csv`` / ``tags.jsonl``); the other files are named from it.
        keys: Image keys, one per row.
        probs: (N, C) probabilities in ``labels`` order, or an iterable of row blocks (so a
            benchmark can stream millions of rows without holding them).
        embeddings: (N, D) embeddings, or an iterable of blocks aligned with ``probs``'s.
        labels: Label names.
        groups: Group -> members (default: one group per label).
        thresholds: One threshold for all labels or one per label.
        fmt: ``csv`` or ``jsonl``.
        images_dir: The images root recorded in the manifest (default: ``images`` beside ``out``).
        scorer: The scorer description recorded as the model.
        model_fingerprint: The scorer's weights digest as the tagger records it (default: a
            digest of ``scorer``).
        taxonomy: The taxonomy name recorded.
        failures: ``(key, reason)`` rows for the failures file.
        top_k: At most this many tags a row (0: no cap).
        batch_rows: Rows a block when ``probs`` is an array.
        fingerprint: Extra fingerprint entries (they override the defaults).

    Returns:
        The output's file paths.
    """
    paths = OutputPaths.for_out(out)
    model_fingerprint = model_fingerprint or hashlib.sha256(scorer.encode()).hexdigest()[:16]
    labels = list(labels)
    groups = groups if groups is not None else {name: [name] for name in labels}
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (len(labels),)).copy()
    images = os.path.abspath(images_dir if images_dir is not None else Path(out).parent / "images")
    prob_blocks = _blocks(probs, batch_rows)
    emb_blocks = _blocks(embeddings, batch_rows)
    first_emb = next(emb_blocks, None)
    dim = int(first_emb.shape[1]) if first_emb is not None else 0
    fingerprint_ = {
        "scorer": scorer,
        "labels": labels,
        "thresholds": [round(float(t), 6) for t in thr],
        "top_k": top_k,
        "format": fmt,
        "images_dir": images,
        "items": len(keys) + len(failures),
        "text_escaping": TEXT_ESCAPING,
        **(fingerprint or {}),
    }
    manifest = new_manifest(
        paths,
        model={"scorer": scorer, "fingerprint": model_fingerprint},
        taxonomy=taxonomy,
        labels=labels,
        groups=groups,
        thresholds=thr,
        threshold_source="given",
        fingerprint=fingerprint_,
        options={"images_dir": images, "format": fmt, "top_k": top_k},
        embed_dim=dim,
        items=len(keys) + len(failures),
    )
    paths.tags.parent.mkdir(parents=True, exist_ok=True)
    with TagWriter(paths, TagSelector(labels, groups, thr, top_k), fmt, dim) as writer:
        writer.start_fresh()
        done = 0
        emb = first_emb
        for block in prob_blocks:
            block = np.asarray(block, dtype=np.float32)
            if emb is None or len(emb) != len(block):
                raise ValueError("probability and embedding blocks must have the same numbers of rows")
            writer.write_batch(list(keys[done : done + len(block)]), block, emb, [], len(block))
            done += len(block)
            emb = next(emb_blocks, None)
        if done != len(keys):
            raise ValueError(f"{len(keys)} keys but {done} rows of probabilities")
        if failures:
            writer.write_batch(
                [],
                np.zeros((0, len(labels)), np.float32),
                np.zeros((0, dim), np.float32),
                list(failures),
                len(failures),
            )
        manifest.update(
            complete=True,
            counts={"items": len(keys) + len(failures), "rows": writer.rows, "failed": writer.failed},
            bytes=writer.sizes(),
        )
    write_json(paths.manifest, manifest)
    paths.progress.unlink(missing_ok=True)
    return paths


def _blocks(data: np.ndarray | Iterable[np.ndarray], rows: int) -> Iterable[np.ndarray]:
    if isinstance(data, np.ndarray):
        return iter([data[i : i + rows] for i in range(0, max(len(data), 1), rows)] if len(data) else [])
    return iter(data)
