"""Files of the index: the tagger's output it reads, and the index with its sidecars it writes.

**Input** (``hspnet tag IMAGES --out tags.csv``): ``tags.csv`` (header ``path,tags,scores,groups``,
``path`` relative to the images folder, row i = image i), ``tags.emb.f32`` (raw little-endian
float32, n x D, row i = row i of the CSV, unit-norm image embeddings) and ``tags.manifest.json``
(the file names replace the tags file's suffix, as ``hspnet_cli.tagging.writer`` writes them).
Two manifest layouts are read: the tagger's (``embedding.dim``, ``model.scorer``,
``fingerprint.images_dir``, ``files.embeddings``) and the flat one ``index merge`` writes
(``embedding_dim``, ``model``, ``images_dir``); a manifest with ``"complete": false`` (an
unfinished run) is refused.
Embeddings are read through ``np.memmap`` in chunks, never whole.

**Output** (``tags.faiss``): the FAISS index (id i = the i-th vector added), and two sidecars:

* ``tags.faiss.paths.txt``: one image path a line, line i = id i, relative to ``images_dir``;
* ``tags.faiss.json``: format and version, ``images_dir`` (the root the paths are relative to),
  ``model``, ``embedding_dim``, ``factory``, ``index_type``, ``metric`` (always inner product on
  L2-normalised vectors), ``search_params`` (e.g. ``nprobe=32``), ``count``, ``sources`` (every
  tags.csv that added vectors, with its first id, rows added and rows skipped), the recall@10
  measured at build time and on how many vectors, faiss version and seed.

Every file is written to a temporary name beside its target and renamed when complete; the
index first, then the paths, then the JSON. The JSON's ``count`` must equal the index's and the
paths file's counts when loaded, so an update interrupted between the renames is detected
("... disagree") instead of silently mis-aligning ids and paths.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hspnet_cli.errors import UserError
from hspnet_cli.io_utils import atomic_write, read_json_object, write_text_atomic

FORMAT = "hspnet-index"
FORMAT_VERSION = 1
CHUNK_ROWS = 65536


def _stem(tags_csv: Path) -> Path:
    return tags_csv.with_suffix("") if tags_csv.suffix else tags_csv


def emb_path(tags_csv: Path) -> Path:
    """``tags.csv`` -> ``tags.emb.f32`` (the tagger's naming)."""
    return Path(f"{_stem(Path(tags_csv))}.emb.f32")


def manifest_path(tags_csv: Path) -> Path:
    """``tags.csv`` -> ``tags.manifest.json`` (the tagger's naming)."""
    return Path(f"{_stem(Path(tags_csv))}.manifest.json")


def sidecar_json(index_path: Path) -> Path:
    return Path(f"{index_path}.json")


def sidecar_paths(index_path: Path) -> Path:
    return Path(f"{index_path}.paths.txt")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return read_json_object(path, what)


@dataclass
class TagsOutput:
    """One ``hspnet tag`` output: CSV rows, embedding file and manifest, checked against each other.

    Attributes:
        csv: The tags.csv path.
        header: CSV column names.
        rows: CSV rows (lists of strings, ``path`` first column as in the header).
        paths: The ``path`` column (relative to ``images_dir``).
        dim: Embedding width D.
        model: The manifest's model description.
        images_dir: Absolute folder the paths are relative to.
        manifest: The whole manifest.
        emb: The embedding file.
    """

    csv: Path
    header: list[str]
    rows: list[list[str]]
    paths: list[str]
    dim: int
    model: str
    images_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    emb: Path = Path()

    @property
    def n(self) -> int:
        return len(self.paths)

    def embeddings(self) -> np.ndarray:
        """(n, D) read-only float32 memmap of the embedding file."""
        if self.n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(self.emb, dtype="<f4", mode="r", shape=(self.n, self.dim))


def _locate(tags_csv: Path) -> tuple[Path, dict[str, Any], Path]:
    """(manifest path, manifest, embedding path) of a tags file; a manifest's
    ``files.embeddings`` (relative to its folder) names the embedding file when present."""
    mpath = manifest_path(tags_csv)
    manifest = _read_json(mpath, "tags manifest")
    named = (manifest.get("files") or {}).get("embeddings") if isinstance(manifest.get("files"), dict) else None
    emb = mpath.parent / str(named) if named else emb_path(tags_csv)
    return mpath, manifest, emb


def _manifest_facts(mpath: Path, manifest: dict[str, Any]) -> tuple[Any, str, Any]:
    """(embedding dim, model description, images folder) from either manifest layout."""
    dim = manifest.get("embedding_dim", (manifest.get("embedding") or {}).get("dim")
                       if isinstance(manifest.get("embedding"), dict) else None)
    model = manifest.get("model")
    if isinstance(model, dict):                                    # the tagger's describe(scorer) facts
        model = model.get("scorer") or model.get("description")
    images = (manifest.get("images_dir") or (manifest.get("fingerprint") or {}).get("images_dir")
              or (manifest.get("options") or {}).get("images_dir"))
    missing = [name for name, v in (("embedding_dim", dim), ("model", model), ("images_dir", images)) if v is None]
    if missing:
        raise UserError(f"{mpath}: manifest lacks {', '.join(missing)}")
    if manifest.get("complete") is False:
        raise UserError(f"{mpath}: the tagging run is unfinished; rerun the same hspnet tag command to complete it")
    return dim, str(model), images


def read_tags_output(tags_csv: str | os.PathLike) -> TagsOutput:
    """Read and cross-check a tags.csv with its embedding file and manifest (see :func:`_locate`).

    Raises:
        UserError: A missing file, a CSV without a ``path`` column, a manifest without
            embedding dim / model / images folder, an unfinished run, or an embedding file whose
            size is not rows x D x 4 bytes.
    """
    tags_csv = Path(tags_csv)
    if not tags_csv.is_file():
        raise UserError(f"{tags_csv}: tags file not found (write it with hspnet tag IMAGES --out {tags_csv})")
    mpath, manifest, emb = _locate(tags_csv)
    raw_dim, model, images = _manifest_facts(mpath, manifest)
    try:
        dim = int(raw_dim)
    except (TypeError, ValueError):
        raise UserError(f"{mpath}: embedding_dim must be an integer") from None
    if dim <= 0:
        raise UserError(f"{mpath}: embedding_dim must be positive; got {dim}")
    with open(tags_csv, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0] != "path":
            raise UserError(f"{tags_csv}: expected a header starting with 'path' (path,tags,scores,groups)")
        rows = [row for row in reader if row]
    bad = next((i for i, row in enumerate(rows) if not row[0] or "\n" in row[0] or "\r" in row[0]), None)
    if bad is not None:
        raise UserError(f"{tags_csv}: row {bad + 2} has an empty path or a path with a line break")
    paths = [row[0] for row in rows]
    if not emb.is_file():
        raise UserError(f"{emb}: embedding file not found (hspnet tag writes it beside {tags_csv.name})")
    size = emb.stat().st_size
    if size != len(paths) * dim * 4:
        raise UserError(f"{emb}: {size} bytes, but {len(paths)} rows x {dim} dims x 4 bytes = "
                        f"{len(paths) * dim * 4} were expected from {tags_csv.name} and its manifest")
    return TagsOutput(csv=tags_csv, header=header, rows=rows, paths=paths, dim=dim, model=model,
                      images_dir=Path(str(images)).expanduser().absolute(), manifest=manifest, emb=emb)


def iter_chunks(emb: np.ndarray, source: Path, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, contiguous float32 L2-normalised copy of rows start:start+chunk) over a memmap
    (``chunk`` defaults to :data:`CHUNK_ROWS`, read at call time).

    Raises:
        UserError: A non-finite or all-zero row (names the file and row).
    """
    chunk = chunk or CHUNK_ROWS
    for start in range(0, emb.shape[0], chunk):
        block = np.array(emb[start:start + chunk], dtype=np.float32, order="C")
        yield start, normalize_rows(block, source, start)


def normalize_rows(block: np.ndarray, source: Path | str, start: int = 0) -> np.ndarray:
    """L2-normalise rows in place (the tagger's are unit already; this guards against drift)."""
    finite = np.isfinite(block).all(axis=1)
    norms = np.linalg.norm(block, axis=1) if block.size else np.zeros(0)
    bad = np.flatnonzero(~finite | (norms == 0))
    if bad.size:
        raise UserError(f"{source}: embedding row {start + int(bad[0])} is not finite or is all zeros")
    block /= norms[:, None].astype(np.float32)
    return block


def rebase_paths(paths: list[str], old_root: Path, new_root: Path) -> list[str]:
    """Paths relative to ``old_root`` made relative to ``new_root`` (an ancestor of it)."""
    if old_root == new_root:
        return list(paths)
    prefix = Path(os.path.relpath(old_root, new_root))
    return [(prefix / p).as_posix() for p in paths]


def common_root(dirs: list[Path]) -> Path:
    """The deepest folder containing every one of ``dirs``."""
    return Path(os.path.commonpath([str(d) for d in dirs]))


@dataclass
class IndexFiles:
    """A loaded index: the FAISS object, its sidecar facts and id -> path list."""

    path: Path
    index: Any
    meta: dict[str, Any]
    paths: list[str]

    @property
    def images_dir(self) -> Path:
        return Path(self.meta["images_dir"])

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])


def write_faiss_atomic(index: Any, path: Path) -> None:
    """``faiss.write_index`` to a temporary file beside ``path``, then rename."""
    import faiss

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_index(path: Path, index: Any, meta: dict[str, Any], paths: list[str]) -> None:
    """Write the index, its paths file and its JSON (in that order, each atomically)."""
    if index.ntotal != len(paths):
        raise AssertionError(f"index holds {index.ntotal} vectors but {len(paths)} paths were given")
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "count": int(index.ntotal),
            "paths_file": sidecar_paths(path).name}
    write_faiss_atomic(index, path)
    with atomic_write(sidecar_paths(path)) as fh:
        for p in paths:
            fh.write(p + "\n")
    write_text_atomic(sidecar_json(path), json.dumps(meta, indent=2) + "\n")


def load_index(path: str | os.PathLike) -> IndexFiles:
    """Read an index with its sidecars and check that they agree.

    Raises:
        UserError: A missing file, or counts that disagree (an interrupted update).
    """
    import faiss

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: index not found (make one with hspnet index build TAGS.csv --out {path})")
    meta = _read_json(sidecar_json(path), "index sidecar")
    if meta.get("format") != FORMAT:
        raise UserError(f"{sidecar_json(path)}: not an hspnet index sidecar (format {meta.get('format')!r})")
    plist = sidecar_paths(path)
    if not plist.is_file():
        raise UserError(f"{plist}: paths file of index {path.name} not found")
    paths = plist.read_text(encoding="utf-8").splitlines()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable FAISS index ({str(exc).strip().splitlines()[-1]})") from None
    if not (index.ntotal == len(paths) == int(meta.get("count", -1))):
        raise UserError(f"{path} ({index.ntotal} vectors), {plist.name} ({len(paths)} paths) and "
                        f"{sidecar_json(path).name} (count {meta.get('count')}) disagree; an update was "
                        "interrupted: rebuild with hspnet index build")
    if index.d != int(meta["embedding_dim"]):
        raise UserError(f"{path}: index dim {index.d} but its sidecar says {meta['embedding_dim']}")
    return IndexFiles(path=path, index=index, meta=meta, paths=paths)
