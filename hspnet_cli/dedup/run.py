"""``hspnet dedup``: near-duplicate groups of a tag output or index, one keeper each, written out.

See :mod:`hspnet_cli.dedup.graph` for how pairs are found and :mod:`hspnet_cli.dedup.keeper`
for the keeper rule. The default threshold (:data:`DEFAULT_THRESHOLD`) comes from
``benchmarks/dedup_quality.py``; docs/quality.md says how to choose one for other features.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import write_text_atomic
from hspnet_cli.dedup import graph, keeper
from hspnet_cli.dedup.outputs import Member, side_files, write_dups, write_exclude_list, write_review_tasks
from hspnet_cli.dedup.vectors import DedupInput, open_input
from hspnet_cli.dedup.whiten import MIN_EFFECTIVE_DIMENSIONS

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.90
DEFAULT_NEIGHBORS = 10
GROUP_BATCH_ROWS = 65536


@dataclass
class DedupOptions:
    """What ``hspnet dedup`` was asked for.

    Attributes:
        threshold: Cosine similarity at or above which two images are near-duplicates.
        neighbors: Nearest images searched per image (edges come only from these).
        nprobe: IVF lists scanned per query (None: the index's own, or 8 for one built here).
        keeper: ``pixels`` (most pixels, then earliest path) or ``path`` (earliest path).
        whiten: Compare PCA-whitened embeddings (:mod:`hspnet_cli.dedup.whiten`).
        to: ``label-studio`` to also write review tasks, or None.
        url_prefix / absolute / local_files_root: How tasks reference images (as export-labels).
        seed: Seed of the IVF training sample.
    """

    threshold: float = DEFAULT_THRESHOLD
    neighbors: int = DEFAULT_NEIGHBORS
    nprobe: int | None = None
    keeper: str = "pixels"
    whiten: bool = True
    to: str | None = None
    url_prefix: str | None = None
    absolute: bool = False
    local_files_root: str | None = None
    seed: int = 0

    def check(self) -> None:
        """Raises UserError on an option out of range."""
        if not -1.0 <= self.threshold <= 1.0:
            raise UserError(
                f"--threshold {self.threshold}: a cosine similarity, between -1 and 1 (default {DEFAULT_THRESHOLD})"
            )
        if self.neighbors < 1:
            raise UserError(f"--neighbors {self.neighbors}: at least 1")
        if self.nprobe is not None and self.nprobe < 1:
            raise UserError(f"--nprobe {self.nprobe}: at least 1")
        if self.keeper not in keeper.RULES:
            raise UserError(f"--keeper must be one of {', '.join(keeper.RULES)}, got '{self.keeper}'")
        if self.to not in (None, "label-studio"):
            raise UserError(f"--to: only label-studio is written for dedup review, got '{self.to}'")


@dataclass
class DedupResult:
    """The facts of one run (``facts`` is what ``dups.dedup.json`` holds)."""

    facts: dict[str, Any] = field(default_factory=dict)


def _groups(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows in groups of 2+, sorted by component then row; their component ids)."""
    sizes = np.bincount(labels)
    rows = np.flatnonzero(sizes[labels] >= 2)
    order = np.lexsort((rows, labels[rows]))
    rows = rows[order]
    return rows, labels[rows]


def _members(data: DedupInput, rows: np.ndarray, comp: np.ndarray, rule: str) -> Iterator[tuple[str, list[Member]]]:
    """Each group's members (keeper first, then by falling similarity), keyed by the keeper's path.

    Vectors and pixel counts are read a batch of groups at a time, so memory stays bounded by
    :data:`GROUP_BATCH_ROWS` rows whatever the number of duplicates.
    """
    bounds = np.flatnonzero(np.diff(comp)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(comp) else np.zeros(0, np.int64)
    ends = np.concatenate([bounds, [len(comp)]]).astype(np.int64) if len(comp) else np.zeros(0, np.int64)
    g = 0
    while g < len(starts):
        h = g
        while h < len(starts) and ends[h] - starts[g] <= GROUP_BATCH_ROWS or h == g:
            h += 1
        lo, hi = int(starts[g]), int(ends[h - 1])
        vecs = data.rows(rows[lo:hi])
        for s, e in zip(starts[g:h], ends[g:h]):
            ids = rows[s:e]
            keys = [data.paths[int(i)] for i in ids]
            pixels = (
                np.array([keeper.pixel_count(data.images_dir / k) for k in keys], dtype=np.int64)
                if rule == "pixels"
                else None
            )
            best = keeper.choose_keeper(keys, pixels)
            sims = vecs[s - lo : e - lo] @ vecs[s - lo + best]
            order = sorted(range(len(ids)), key=lambda i: (i != best, -float(sims[i]), keys[i]))
            yield (
                keys[best],
                [
                    Member(
                        0,
                        keys[i],
                        i == best,
                        1.0 if i == best else float(min(1.0, sims[i])),
                        int(pixels[i]) if pixels is not None else 0,
                    )
                    for i in order
                ],
            )
        g = h


def run_dedup(
    source: str | Path,
    out: str | Path,
    options: DedupOptions | None = None,
    progress: Callable[[str, int], Any] | None = None,
) -> DedupResult:
    """Find near-duplicate groups in ``source`` and write ``out`` and its side files.

    Args:
        source: tags.csv / tags.jsonl of hspnet tag (with embeddings) or an hspnet index.
        out: dups.csv to write (side files beside it, see :mod:`hspnet_cli.dedup.outputs`).
        options: Threshold, neighbours, keeper rule, review tasks.
        progress: Progress-bar factory ``(description, items)`` (None: no bar).

    Returns:
        The run's facts.

    Raises:
        UserError: Bad options or input (named).
    """
    options = options or DedupOptions()
    options.check()
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: dups are written as CSV; name the file *.csv")
    started = time.perf_counter()
    data = open_input(source)
    refs = None
    if options.to is not None:
        from hspnet_cli.labeltools.rows import ImageRefs

        refs = ImageRefs.choose(
            data.images_dir, "local-files", options.url_prefix, options.absolute, options.local_files_root
        )
    whitened = options.whiten and data.whiten()
    warning = None
    if data.effective_dimensions is not None and data.effective_dimensions < MIN_EFFECTIVE_DIMENSIONS:
        warning = (
            f"the embeddings vary along about {data.effective_dimensions:.1f} directions only: this model "
            "hardly tells images apart (undertrained or random weights?), so the groups are unreliable; "
            "review them (--to label-studio) before excluding anything"
        )
        log.warning("%s: %s", source, warning)
    index, index_facts = graph.search_index(data, options.nprobe, options.seed, progress)
    a, b = graph.find_edges(data, index, options.threshold, options.neighbors, progress)
    labels = graph.components(data.n, a, b)
    rows, comp = _groups(labels)
    rule = keeper.keeper_rule(data.images_dir, options.keeper)
    groups = list(_members(data, rows, comp, rule))
    groups.sort(key=lambda item: item[0])  # numbered by keeper path: stable across runs
    files = side_files(out)
    keepers: dict[int, str] = {}

    def numbered() -> Iterator[Member]:
        for number, (keeper_key, members) in enumerate(groups, start=1):
            keepers[number] = keeper_key
            for m in members:
                m.group = number
                yield m

    dropped = write_dups(files["dups"], numbered())
    unlisted = write_exclude_list(files["exclude"], dropped, str(source))
    written = {"dups": str(files["dups"]), "exclude": str(files["exclude"]), "report": str(files["report"])}
    if refs is not None:
        written.update(write_review_tasks(files, dropped, keepers, refs, f"hspnet dedup @ {options.threshold}"))
    sizes = np.bincount(comp) if len(comp) else np.zeros(0, np.int64)
    sizes = sizes[sizes > 0]
    facts: dict[str, Any] = {
        "source": str(source),
        "input": data.kind,
        "images": data.n,
        "images_dir": str(data.images_dir),
        "model": data.model,
        "threshold": options.threshold,
        "neighbors": options.neighbors,
        "index": index_facts,
        "similarity": "cosine of PCA-whitened embeddings" if whitened else "cosine of the embeddings",
        "effective_dimensions": (None if data.effective_dimensions is None else round(data.effective_dimensions, 2)),
        "warning": warning,
        "keeper_rule": (
            "most pixels (image header), then earliest path"
            if rule == "pixels"
            else "earliest path"
            + ("" if options.keeper == "path" else " (images folder not found: pixel counts unknown)")
        ),
        "groups": len(groups),
        "in_groups": int(len(rows)),
        "non_keepers": len(dropped),
        "largest_group": int(sizes.max()) if sizes.size else 0,
        "edges": int(len(a)),
        "unlisted_line_breaks": unlisted,
        "seconds": round(time.perf_counter() - started, 3),
        "files": written,
    }
    write_text_atomic(files["report"], json.dumps(facts, indent=2) + "\n")
    return DedupResult(facts)
