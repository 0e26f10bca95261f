"""``hspnet index build`` over a shard set of 10M-1B vectors: bounded memory, resumable.

Steps (each survives a kill; rerunning the same command continues where it stopped):

1. **Plan** (``INDEX.work/plan.json``): the shards (path, rows, bytes, mtime), the factory
   (``--factory`` or the size rule of :func:`hspnet_cli.index.build.choose_factory`, with
   ``IVF{4 sqrt n},Flat`` below 100k vectors), the seed,
   and the pieces: consecutive global row ranges of ``piece_rows`` (default 1M) vectors. A
   rerun whose shards or options differ is refused (``--restart`` starts over).
2. **Train** (``trained.faiss``) on a bounded sample: ``--train-size`` vectors (default
   ``min(n, max(64 nlist, 20,000), 1,000,000)``; faiss's k-means wants 39-256 points a list),
   taken as runs of 64 consecutive rows at evenly spread, seeded positions: every shard is
   represented, and reads are short sequential runs instead of a million random seeks.
3. **Add, piece by piece**: a copy of the trained, empty index gets the piece's vectors with
   their global ids (``add_with_ids``), block by block (65,536 rows), and is written as
   ``piece-XXXXXX.faiss`` with its keys (``.keys``), then a ``.done`` marker. Memory: one block
   + one piece's codes. A killed build redoes at most one piece.
4. **Assemble** (:mod:`hspnet_cli.index.ondisk`): the pieces' lists merged into on-disk
   inverted lists (or RAM), the keys concatenated (:mod:`hspnet_cli.index.keystore`).
5. **Recall**: ``--recall-queries`` rows (default 1000, 0 skips) searched in the index and by an
   exact scan streamed over all shards; without ``--nprobe``, nprobe doubles from the default
   until recall@10 >= 0.95, it gains under 0.005 a doubling (the PQ codes' limit), or it
   reaches nlist/16 (on disk, every list visited is a read).
6. ``INDEX.json`` last; the work folder is removed (``--keep-work`` keeps it).

Step 3 can run on N machines/GPUs at once: ``--train-only``, then ``--pieces i/N`` workers, then
the plain command assembles (see :func:`build_sharded`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.core.io_utils import read_json_object, write_text_atomic
from hspnet_cli.index.build import (
    RECALL_K,
    RECALL_TARGET,
    _ivf,
    _make_index,
    _on_gpu,
    _to_cpu,
    choose_factory,
    default_nprobe,
    set_search_params,
)
from hspnet_cli.index.files import write_faiss_atomic
from hspnet_cli.index.keystore import write_piece_keys
from hspnet_cli.index.ondisk import assemble, choose_layout, write_meta
from hspnet_cli.index.shards import ShardSet, open_shard_set

PIECE_ROWS = 1_000_000
MAX_TRAIN = 1_000_000
RUN = 64
PLATEAU = 0.005
PQ_POINTS_PER_CENTROID = 64


def work_dir(out: Path) -> Path:
    return Path(f"{out}.work")


def sample_rows(n: int, size: int, seed: int, run: int = RUN) -> np.ndarray:
    """``size`` sorted distinct rows of ``range(n)``: runs of ``run`` rows at evenly spread,
    seeded positions (all rows when ``size >= n``)."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    runs = max(1, size // run)
    stride = n / runs
    rng = np.random.default_rng(seed)
    starts = (np.arange(runs) * stride + rng.random(runs) * max(0.0, stride - run)).astype(np.int64)
    rows = (starts[:, None] + np.arange(run)[None, :]).ravel()
    return np.unique(rows[rows < n])[:size]


def exact_topk_blocks(queries: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]], k: int) -> np.ndarray:
    """(q, k) global ids of the exact inner-product top k over (first id, vectors) blocks."""
    q = queries.shape[0]
    best_s = np.full((q, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q, 0), dtype=np.int64)
    for start, block in blocks:
        for a in range(0, block.shape[0], 16384):
            scores = queries @ block[a : a + 16384].T
            kk = min(k, scores.shape[1])
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
            cand_i = np.concatenate([best_i, part + start + a], axis=1)
            order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_i


def recall(index: Any, queries: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's exact top k that the index returns in its top k."""
    _, found = index.search(queries, truth.shape[1])
    hits = sum(len(set(a.tolist()) & set(b.tolist()) - {-1}) for a, b in zip(found, truth))
    return hits / float(truth.size)


def _bar(desc: str, total: int) -> Any:
    """A rich bar on stderr (vectors/s, ETA), or none with ``--quiet``."""
    from hspnet_cli.core.console import is_quiet
    from hspnet_cli.core.progress import ItemProgress, NoBar  # moving to core (issue 17)

    return NoBar() if is_quiet() else ItemProgress(desc, total, unit="vec/s")


def _plan(shards: ShardSet, factory: str, seed: int, piece_rows: int, train_size: int) -> dict[str, Any]:
    bounds = list(range(0, shards.n, piece_rows)) + [shards.n]
    return {
        "shards": shards.describe(),
        "kind": shards.kind,
        "dim": shards.dim,
        "n": shards.n,
        "factory": factory,
        "seed": seed,
        "piece_rows": piece_rows,
        "train_size": train_size,
        "pieces": [[a, b] for a, b in zip(bounds[:-1], bounds[1:])],
    }


def _open_work(work: Path, plan: dict[str, Any], restart: bool) -> str:
    """Create or reuse the work folder for ``plan``; returns the build id."""
    plan_file = work / "plan.json"
    if plan_file.is_file() and not restart:
        old = read_json_object(plan_file, "index build plan")
        if {k: v for k, v in old.items() if k != "build_id"} == plan:
            return str(old["build_id"])
        raise UserError(
            f"{work}: an interrupted build of other shards or options is here; rerun it as it was, or "
            "add --restart to discard it"
        )
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    build_id = "b" + secrets.token_hex(4)
    write_text_atomic(plan_file, json.dumps({**plan, "build_id": build_id}, indent=1) + "\n")
    return build_id


def _train(shards: ShardSet, plan: dict[str, Any], work: Path) -> tuple[Path, bool]:
    """The trained empty index file (made once); (path, trained on a GPU)."""
    import faiss

    path = work / "trained.faiss"
    if path.is_file():
        return path, False
    factory = plan["factory"]
    index = _make_index(factory, shards.dim)
    if _ivf(index) is None:
        raise UserError(
            f"--factory '{factory}' is not an IVF index; the sharded build needs inverted lists (e.g. IVF4096,PQ64x8)"
        )
    nlist = int(_ivf(index).nlist)
    size = int(plan["train_size"])
    if size < nlist:
        raise UserError(
            f"'{factory}' needs at least {nlist} vectors to train its {nlist} lists; "
            f"the shards hold {shards.n} (train size {size})"
        )
    sample = shards.gather(sample_rows(shards.n, size, plan["seed"]))
    pq = getattr(faiss.downcast_index(_ivf(index)), "pq", None)
    if pq is not None:
        # Each sub-quantizer's 256 centroids (of D/m dims) are trained on at most 64 points a
        # centroid, not faiss's 256: plenty in 4-8 dims, and 4x less of the CPU k-means that
        # otherwise dominates training at D/4 sub-quantizers.
        pq.cp.max_points_per_centroid = PQ_POINTS_PER_CENTROID
    index, gpu = _on_gpu(index)
    try:
        index.train(sample)
    except RuntimeError as exc:
        raise UserError(
            f"training '{factory}' on {len(sample)} vectors failed: {str(exc).strip().splitlines()[-1]}"
        ) from None
    write_faiss_atomic(_to_cpu(index, gpu), path)
    return path, gpu


def _piece_files(work: Path, i: int) -> tuple[Path, Path, Path]:
    return work / f"piece-{i:06d}.faiss", work / f"piece-{i:06d}.keys", work / f"piece-{i:06d}.done"


def _add_pieces(
    shards: ShardSet, plan: dict[str, Any], work: Path, trained: Path, worker: tuple[int, int] = (0, 1)
) -> tuple[int, int]:
    """Add every unfinished piece (of ``worker`` i of N: pieces p with p % N == i);
    (pieces done now, pieces found done)."""
    import faiss

    mine = [i for i in range(len(plan["pieces"])) if i % worker[1] == worker[0]]
    todo = [i for i in mine if not _piece_files(work, i)[2].is_file()]
    skipped = len(mine) - len(todo)
    total = sum(plan["pieces"][i][1] - plan["pieces"][i][0] for i in todo)
    with _bar("adding vectors", total) as bar:
        for i in todo:
            a, b = plan["pieces"][i]
            index, gpu = _on_gpu(faiss.read_index(str(trained)))
            key_list: list[str] = []
            for first, block, names in shards.blocks(a, b):
                index.add_with_ids(block, np.arange(first, first + block.shape[0], dtype=np.int64))
                key_list += names
                bar.advance(block.shape[0])
            faiss_file, key_file, done = _piece_files(work, i)
            write_faiss_atomic(_to_cpu(index, gpu), faiss_file)
            write_piece_keys(key_file, key_list)
            write_text_atomic(done, json.dumps({"rows": b - a, "first": a}) + "\n")
    return len(todo), skipped


def _tune(index: Any, shards: ShardSet, nprobe: int | None, seed: int, queries: int) -> tuple[str, float, int, dict]:
    """(search params, recall@10, queries used, recall by nprobe)."""
    ivf = _ivf(index)
    nlist = int(ivf.nlist)
    value = min(nlist, nprobe or default_nprobe(nlist))
    if queries <= 0:
        return f"nprobe={value}", float("nan"), 0, {}
    qv = shards.gather(sample_rows(shards.n, min(queries, shards.n), seed + 1, run=1))
    truth = exact_topk_blocks(
        qv, ((first, block) for first, block, _ in shards.blocks(0, shards.n)), min(RECALL_K, shards.n)
    )
    cap, curve, last = max(value, nlist // 16), {}, -1.0
    while True:
        set_search_params(index, f"nprobe={value}")
        r = recall(index, qv, truth)
        curve[value] = round(r, 4)
        if nprobe is not None or r >= RECALL_TARGET or value >= cap or r - last < PLATEAU:
            return f"nprobe={value}", r, int(qv.shape[0]), curve
        last, value = r, min(cap, value * 2)


def sharded_factory(n: int, dim: int) -> str:
    """The size rule of :func:`choose_factory`, with inverted lists below 100k too (``Flat`` has no
    lists to add piece by piece): ``IVF{4 sqrt n},Flat`` there."""
    factory = choose_factory(n, dim)
    return f"IVF{max(1, round(4 * math.sqrt(n)))},Flat" if factory == "Flat" else factory


# Up to this many rows, one Parquet output of ``hspnet tag`` gets the classic in-RAM build (which
# ``index add`` can grow), the size rule's Flat / IVF-Flat; above it, the shard-set build.
CLASSIC_MAX_ROWS = 2_000_000


def is_shard_set(sources: list[Path], layout: str | None) -> bool:
    """True unless the input is one tags file, or one Parquet folder of ``hspnet tag`` of at most
    :data:`CLASSIC_MAX_ROWS` rows, and no --layout: those get the classic in-RAM build."""
    if layout is not None or len(sources) != 1:
        return True
    source = Path(sources[0])
    if source.suffix in (".csv", ".jsonl"):
        return False
    manifest = source / "_manifest.json"
    if source.is_dir() and manifest.is_file():
        import json

        try:
            rows = (json.loads(manifest.read_text(encoding="utf-8")).get("counts") or {}).get("rows")
        except (OSError, ValueError, AttributeError):
            return True  # the shard-set reader names what is wrong with it
        return not (isinstance(rows, int) and rows <= CLASSIC_MAX_ROWS)
    return True


def default_out(sources: list[Path]) -> Path:
    """``index.faiss`` in a shard folder given alone, else beside the first source."""
    first = Path(sources[0])
    if len(sources) == 1 and first.is_dir():
        return first / "index.faiss"
    if first.suffix in (".csv", ".jsonl"):
        return first.with_suffix(".faiss")
    return first.parent / "index.faiss"


def build_sharded(
    sources: list[str | os.PathLike],
    out: str | os.PathLike,
    factory: str | None = None,
    nprobe: int | None = None,
    seed: int = 0,
    recall_queries: int = 1000,
    layout: str = "auto",
    train_size: int | None = None,
    piece_rows: int = PIECE_ROWS,
    restart: bool = False,
    keep_work: bool = False,
    train_only: bool = False,
    pieces: str | None = None,
) -> dict[str, Any]:
    """Build (or finish building) an index over a shard set; returns the facts written to ``OUT.json``.

    Several machines or GPUs share the add step through the work folder (on a shared file
    system): one ``train_only`` run, then ``pieces="i/N"`` workers side by side (each adds the
    pieces p with p % N == i and stops), then the plain command, which finds every piece done
    and assembles. Same shards and options in every call.

    Raises:
        UserError: Bad shards (named), a bad factory or layout, or an interrupted build of
            something else in the work folder.
    """
    from hspnet_cli.core.locks import output_lock

    out = Path(out)
    if layout not in ("auto", "memory", "ondisk"):
        raise UserError(f"--layout must be auto, memory or ondisk; got {layout!r}")
    if nprobe is not None and nprobe < 1:
        raise UserError(f"--nprobe must be at least 1; got {nprobe}")
    if piece_rows < 1:
        raise UserError(f"--piece-rows must be at least 1; got {piece_rows}")
    worker = parse_worker(pieces)
    stage = "train" if train_only else "pieces" if pieces else "all"
    if train_only and pieces:
        raise UserError("give --train-only or --pieces, not both")
    if stage == "pieces" and not (work_dir(out) / "trained.faiss").is_file():
        raise UserError(
            f"{work_dir(out)}: no trained index to add pieces to; run the same command with "
            "--train-only first (once), then the --pieces workers"
        )
    lock = out if stage != "pieces" else work_dir(out) / f"worker-{worker[0]}-of-{worker[1]}"
    with output_lock(lock, "index" if stage != "pieces" else "index piece worker"):
        return _build(
            sources,
            out,
            factory,
            nprobe,
            seed,
            recall_queries,
            layout,
            train_size,
            piece_rows,
            restart,
            keep_work,
            stage,
            worker,
        )


def parse_worker(pieces: str | None) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N (None: the one worker)."""
    if pieces is None:
        return 0, 1
    try:
        i, n = (int(v) for v in pieces.split("/"))
    except ValueError:
        raise UserError(f"--pieces must be i/N, e.g. 0/8; got {pieces!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--pieces {pieces}: need 0 <= i < N")
    return i, n


def _build(
    sources: list[str | os.PathLike],
    out: Path,
    factory: str | None,
    nprobe: int | None,
    seed: int,
    recall_queries: int,
    layout: str,
    train_size: int | None,
    piece_rows: int,
    restart: bool,
    keep_work: bool,
    stage: str = "all",
    worker: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    t0 = time.perf_counter()
    shards = open_shard_set(sources)
    if shards.n == 0:
        raise UserError(f"{shards.shards[0].path}: the shards hold no vectors")
    chosen = factory.strip() if factory else sharded_factory(shards.n, shards.dim)
    probe = _make_index(chosen, shards.dim)
    nlist = int(_ivf(probe).nlist) if _ivf(probe) is not None else 1
    size = min(shards.n, train_size or min(MAX_TRAIN, max(64 * nlist, 20_000)))
    plan = _plan(shards, chosen, seed, piece_rows, size)
    work = work_dir(out)
    build_id = _open_work(work, plan, restart and stage != "pieces")
    trained, gpu = _train(shards, plan, work)
    t_train = time.perf_counter() - t0
    if stage == "train":
        return {
            "stage": "train",
            "work": str(work),
            "factory": chosen,
            "train_size": size,
            "pieces": len(plan["pieces"]),
            "seconds": {"train": round(t_train, 1)},
        }
    added, resumed = _add_pieces(shards, plan, work, trained, worker)
    t_add = time.perf_counter() - t0 - t_train
    if stage == "pieces":
        left = sum(not _piece_files(work, i)[2].is_file() for i in range(len(plan["pieces"])))
        return {
            "stage": "pieces",
            "worker": f"{worker[0]}/{worker[1]}",
            "pieces_added": added,
            "pieces_resumed": resumed,
            "pieces_left": left,
            "seconds": {"add": round(t_add, 1)},
        }
    code_size = int(_ivf(probe).code_size) if _ivf(probe) is not None else shards.dim * 4
    chosen_layout = choose_layout(layout, shards.n, code_size)
    pieces = range(len(plan["pieces"]))
    index = assemble(
        trained,
        [_piece_files(work, i)[0] for i in pieces],
        [_piece_files(work, i)[1] for i in pieces],
        shards.n,
        out,
        build_id,
        chosen_layout,
    )
    params, r, used, curve = _tune(index, shards, nprobe, seed, recall_queries)
    import faiss

    meta = {
        "images_dir": str(shards.root),
        "model": shards.model or f"unknown ({shards.kind} shards)",
        "model_fingerprint": None,
        "embedding_dim": shards.dim,
        "factory": chosen,
        "index_type": type(index).__name__,
        "metric": "inner_product",
        "faiss_version": faiss.__version__,
        "search_params": params,
        "factory_rule": "--factory" if factory else "size rule",
        "built_on": "gpu" if gpu else "cpu",
        "seed": seed,
        "train_size": size,
        "recall_at_10": None if used == 0 else round(r, 4),
        "recall_queries": used,
        "recall_by_nprobe": {str(k): v for k, v in curve.items()},
        "recall_measured_on": shards.n,
        "pieces": len(plan["pieces"]),
        "pieces_resumed": resumed,
        "code_bytes": code_size,
        "seconds": {"train": round(t_train, 1), "add": round(t_add, 1), "total": round(time.perf_counter() - t0, 1)},
        "build_seconds": round(time.perf_counter() - t0, 3),
        "shard_kind": shards.kind,
        "sources": [
            {"file": s["file"], "first_id": int(first), "rows": s["rows"]}
            for s, first in zip(plan["shards"], shards.starts[:-1])
        ],
    }
    meta = write_meta(out, meta, build_id, chosen_layout, shards.n)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return {**meta, "index": str(out), "pieces_added": added}
