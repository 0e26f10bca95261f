"""What ``hspnet dedup`` reads: image keys and their unit embeddings, from a tag output or an index.

Two inputs carry hspnet's image embeddings:

* a tag output (``tags.csv`` / ``tags.jsonl`` of ``hspnet tag`` or ``hspnet index merge``, with
  its ``.emb.f32`` file and manifest), read with :mod:`hspnet_cli.tagsfile.reader`; the
  embeddings are memory-mapped, so only the chunk being searched is in memory;
* an index of ``hspnet index build`` (``tags.faiss`` + sidecars), read with
  :func:`hspnet_cli.index.store.load_index`. Its vectors are reconstructed from the index, so
  a compressed (PQ) index gives approximate similarities: dedup from the tag output when both
  exist.

Either way rows are L2-normalised, so an inner product is the cosine similarity; after
:meth:`DedupInput.whiten` every read returns whitened rows (normalised again).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError

CHUNK_ROWS = 16384


@dataclass
class DedupInput:
    """Image keys and a way to read their unit embeddings chunk by chunk.

    Attributes:
        source: The file given (tags file or index).
        kind: ``tags`` or ``index``.
        paths: Row i's image key (relative to ``images_dir``).
        images_dir: The folder the keys are relative to.
        dim: Embedding width.
        model: What made the embeddings (the manifest's or sidecar's description).
        emb: (n, D) float32 memmap (tag output), or None (index input).
        index: The loaded FAISS index (index input), or None.
        search_params: The index's stored search parameters (``nprobe=32``), or "".
    """

    source: Path
    kind: str
    paths: list[str]
    images_dir: Path
    dim: int
    model: str
    emb: np.ndarray | None = None
    index: Any = None
    search_params: str = ""
    emb_file: Path | None = None
    whitening: tuple[np.ndarray, np.ndarray] | None = None
    effective_dimensions: float | None = None

    def whiten(self) -> bool:
        """Fit PCA whitening on every row (:mod:`hspnet_cli.dedup.whiten`); later reads return
        whitened unit rows. False when there are too few rows to fit it."""
        from hspnet_cli.dedup.whiten import fit_whitening

        fitted = fit_whitening(self.chunks(), self.dim)
        if fitted is None:
            return False
        mean, matrix, self.effective_dimensions = fitted
        self.whitening = (mean, matrix)
        return True

    def _out(self, block: np.ndarray) -> np.ndarray:
        if self.whitening is None:
            return block
        from hspnet_cli.dedup.whiten import apply_whitening

        return apply_whitening(block, *self.whitening)

    @property
    def n(self) -> int:
        return len(self.paths)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) unit float32 rows for ``ids`` (any order)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.emb is not None:
            order = np.argsort(ids, kind="stable")
            out = np.empty((len(ids), self.dim), dtype=np.float32)
            out[order] = self.emb[ids[order]]
        else:
            out = (
                np.vstack([self.index.reconstruct(int(i)) for i in ids])
                if len(ids)
                else np.zeros((0, self.dim), dtype=np.float32)
            )
        return self._out(_unit(out, self.source))

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(start, unit float32 rows start:start+size) over every row, in order."""
        for start in range(0, self.n, size):
            stop = min(self.n, start + size)
            if self.emb_file is not None:
                # A plain read, not the memmap: pages of a memmap stay resident (and count in the
                # process's memory) until the kernel needs them, 20 GB for 10M x 512.
                block = np.fromfile(
                    self.emb_file, dtype="<f4", count=(stop - start) * self.dim, offset=start * self.dim * 4
                ).reshape(stop - start, self.dim)
            elif self.emb is not None:
                block = np.array(self.emb[start:stop], dtype=np.float32, order="C")
            else:
                block = self.index.reconstruct_n(start, stop - start)
            yield start, self._out(_unit(block, self.source, start))


def _unit(block: np.ndarray, source: Path, start: int = 0) -> np.ndarray:
    block = np.ascontiguousarray(block, dtype=np.float32)
    norms = np.linalg.norm(block, axis=1) if block.size else np.zeros(0, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        raise UserError(
            f"{source}: embedding row {start + int(bad[0])} is not finite or is all zeros; tag the images again"
        )
    block /= norms[:, None]
    return block


def _is_index(path: Path) -> bool:
    return Path(f"{path}.json").is_file() and Path(f"{path}.paths.txt").is_file()


def open_input(path: str | Path) -> DedupInput:
    """Open a tag output or an index for deduplication (told apart by the index's sidecars).

    Raises:
        UserError: A missing file, or one that is neither (named, with what to pass instead).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path}: not found; pass the tags.csv/tags.jsonl of hspnet tag (with its embeddings) "
            "or an index of hspnet index build"
        )
    if _is_index(path):
        return _open_index(path)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(
            f"{path}: neither a tags.csv/tags.jsonl of hspnet tag nor an hspnet index (its "
            f"{path.name}.json and {path.name}.paths.txt sidecars are missing)"
        )
    from hspnet_cli.tagsfile.reader import read_tags_output

    tags = read_tags_output(path)
    return DedupInput(
        source=path,
        kind="tags",
        paths=tags.paths,
        images_dir=tags.images_dir,
        dim=tags.dim,
        model=tags.model,
        emb=tags.embeddings(),
        emb_file=tags.emb if tags.n else None,
    )


def _open_index(path: Path) -> DedupInput:
    import faiss

    from hspnet_cli.index.store import load_index

    loaded = load_index(path)
    try:
        ivf = faiss.extract_index_ivf(loaded.index)
    except (RuntimeError, AttributeError):
        ivf = None
    if ivf is not None:
        ivf.make_direct_map()  # IVF lists are keyed by list, not id: reconstruct() needs the id map
    return DedupInput(
        source=path,
        kind="index",
        paths=loaded.paths,
        images_dir=loaded.images_dir,
        dim=loaded.dim,
        model=str(loaded.meta.get("model", "")),
        index=loaded.index,
        search_params=str(loaded.meta.get("search_params", "") or ""),
    )
