"""The Ray engine: list -> read bytes -> decode/resize (CPU tasks) -> model (actor pool) -> Parquet.

Pipeline (Ray Data, streaming)::

    from_items(blocks still to do)            one row per block of the plan
      .flat_map(ReadDecode)  CPU tasks        open the block (object store, shard, folder), read every
                                              image's bytes, decode + preprocess -> one row per image
      .map_batches(ScoreActor) actor pool     the model, one GPU per actor where GPUs exist (else CPU),
                                              --batch-size images a call
      -> driver                               rows gathered per block; a complete block is written as
                                              part-{block}.parquet (temp + rename)

Exactly once: the part a block becomes is named by the block, rows are keyed by (block, position)
so a row Ray delivers twice (a retried task, a restarted actor) lands in the same slot, and a
part is written only when every position of its block is there. A worker that dies is retried
by Ray (tasks) or restarted (actors: Ray Data's defaults ``max_restarts=-1``,
``max_task_retries=-1``); if the driver dies, the rerun redoes only the blocks without a part.

Decoding and scoring call the same functions as the local engine
(:func:`~hspnet_cli.tagging.blocks.decode_bytes`, :func:`~hspnet_cli.tagging.blocks.score_tensors`),
so the outputs agree with ``--engine local``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from hspnet_cli.core.errors import UserError
from hspnet_cli.tagging.blocks import BlockRun, decode_bytes, score_tensors

log = logging.getLogger(__name__)

# Where the time of the last run went (seconds from the start of run_ray): joining the cluster,
# the first scored rows back (Ray start, actor start-up with model load, first decode), the end.
LAST_TIMINGS: dict[str, float] = {}


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the engine needs Ray Data
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'hspnet-cli[ray]'") from None
    return ray


class ReadDecode:
    """Ray task body: one block row -> one row per image (tensor or failure reason)."""

    def __init__(self, run: BlockRun, transform: Any, image_size: int) -> None:
        self.run = run
        self.transform = transform
        self.size = image_size
        self.blocks = {b.index: b for b in run.todo}

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        from hspnet_cli.sources import read_one

        block = self.blocks[int(row["block"])]
        keys = list(row.get("keys") or ())
        opened = self.run.source.open_keys(keys) if keys else self.run.source.open_block(block)
        n = len(opened.keys)
        blank = np.zeros((3, self.size, self.size), np.float32)
        if n == 0:  # an empty block still has to reach the writer
            return [{"block": block.index, "pos": -1, "n": 0, "key": "", "error": "", "image": blank}]
        out = []
        for i, key in enumerate(opened.keys):
            data, err = read_one(opened, i)
            tensor, err = decode_bytes(data, err, self.transform, self.run.max_pixels, self.run.decode_timeout)
            out.append(
                {
                    "block": block.index,
                    "pos": i,
                    "n": n,
                    "key": key,
                    "error": err,
                    "image": blank if tensor is None else tensor.numpy().astype(np.float32, copy=False),
                }
            )
        return out


class ScoreActor:
    """Ray actor body: a batch of decoded rows -> probabilities and embeddings."""

    def __init__(self, scorer_args: dict[str, Any], use_gpu: bool) -> None:
        import torch

        from hspnet_cli.scoring.scorer import choose_scorer

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.scorer = choose_scorer(**{**scorer_args, "device": device})
        from hspnet_cli.tagging.scoring import prepare_for_device

        prepare_for_device(self.scorer)
        self.labels = self.scorer.taxonomy.num_labels
        self.dim = int(self.scorer.label_features.shape[1])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        n = len(batch["block"])
        ok = np.array([not e and p >= 0 for e, p in zip(batch["error"], batch["pos"])], dtype=bool)
        probs = np.zeros((n, self.labels), np.float32)
        emb = np.zeros((n, self.dim), np.float32)
        if ok.any():
            p, e = score_tensors(self.scorer, torch.from_numpy(np.ascontiguousarray(batch["image"][ok])))
            probs[ok], emb[ok] = p, e
        return {
            "block": batch["block"],
            "pos": batch["pos"],
            "n": batch["n"],
            "key": batch["key"],
            "error": batch["error"],
            "probs": probs,
            "emb": emb,
        }


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.WARNING,
            include_dashboard=False if address is None else None,
        )
    except ConnectionError as exc:
        raise UserError(
            f"--ray-address {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]}); start it "
            "with 'ray start --head' or give its address"
        ) from None


def run_ray(*args: Any, **kwargs: Any) -> int:
    """:func:`_run_ray` with file descriptor 1 pointed at stderr, then Ray shut down: Ray's C++
    core prints node events ("Raylet is terminated ...") on stdout, which belongs to ``--json``."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return _run_ray(*args, **kwargs)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _run_ray(
    run: BlockRun,
    scorer: Any,
    scorer_args: dict[str, Any],
    address: str | None = None,
    batch_size: int = 64,
    actors: int | None = None,
    progress: bool = True,
    actor_cpus: float | None = None,
) -> int:
    """Tag ``run.todo`` on a Ray cluster and write their parts; returns images processed.

    Args:
        scorer: The driver's scorer (its transform and image size are shipped to the decode tasks).
        scorer_args: choose_scorer's arguments, for the actors to load the same model (the model
            file must be readable on every node: a shared file system or the same path).
        address: Ray address (None: ``RAY_ADDRESS`` or a local Ray).
        actors: Model actors (default: the cluster's GPU count, else 1).
        actor_cpus: CPUs each actor reserves (default 1; ``HSPNET_RAY_ACTOR_CPUS`` overrides).
    """
    import time

    from hspnet_cli.core.progress import NoBar, epoch_progress

    t0 = time.perf_counter()
    ray = import_ray()
    if address:
        os.environ.setdefault("RAY_ADDRESS", address)
    _connect(ray, address)
    LAST_TIMINGS.clear()
    LAST_TIMINGS["connect_s"] = round(time.perf_counter() - t0, 3)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0
    n_actors = actors or max(1, gpus)
    cpus = actor_cpus if actor_cpus is not None else float(os.environ.get("HSPNET_RAY_ACTOR_CPUS", "1"))
    task_cpus = float(os.environ.get("HSPNET_RAY_TASK_CPUS", "1"))
    # Listed sources (folders, URL prefixes) ship each block's keys with its row, so no worker
    # lists the source again; a tar shard's block is its shard, listed by the task that reads it.
    items = run.source.items()
    rows = [
        {"block": b.index, "keys": [items[p] for p in range(b.start, b.stop)] if items is not None else []}
        for b in run.todo
    ]
    ds = ray.data.from_items(rows, override_num_blocks=len(run.todo))
    del rows
    ds = ds.flat_map(ReadDecode(run, scorer.transform, int(scorer.image_size)), num_cpus=task_cpus)
    ds = ds.map_batches(
        ScoreActor,
        fn_constructor_kwargs={"scorer_args": scorer_args, "use_gpu": use_gpu},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=1 if use_gpu else 0,
        num_cpus=cpus,
    )
    pending: dict[int, dict[int, tuple]] = {}
    sizes: dict[int, int] = {}
    written = 0
    total = sum(b.stop - b.start for b in run.todo) if run.source.kind != "tar" else 0
    with epoch_progress("tagging (ray)", total) if progress and total else NoBar() as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            LAST_TIMINGS.setdefault("first_rows_s", round(time.perf_counter() - t0, 3))
            for j in range(len(batch["block"])):
                block, pos, n = int(batch["block"][j]), int(batch["pos"][j]), int(batch["n"][j])
                sizes[block] = n
                slot = pending.setdefault(block, {})
                if pos >= 0 and pos not in slot:
                    slot[pos] = (str(batch["key"][j]), str(batch["error"][j]), batch["probs"][j], batch["emb"][j])
                    bar.advance(1)
                if len(slot) == sizes[block]:
                    _write_block(
                        run, block, pending.pop(block), sizes[block], batch["probs"].shape[1], batch["emb"].shape[1]
                    )
                    written += sizes[block]
    LAST_TIMINGS["total_s"] = round(time.perf_counter() - t0, 3)
    LAST_TIMINGS["actors"], LAST_TIMINGS["gpus"] = n_actors, gpus
    if pending:
        raise UserError(
            f"the Ray pipeline ended with {len(pending)} block(s) incomplete; rerun the same command to redo them"
        )
    return written


def _write_block(run: BlockRun, block: int, rows: dict[int, tuple], n: int, labels: int, dim: int) -> None:
    order = [rows[p] for p in range(n)]
    good = [r for r in order if not r[1]]
    run.write(
        block,
        [r[0] for r in good],
        np.stack([r[2] for r in good]) if good else np.zeros((0, labels), np.float32),
        np.stack([r[3] for r in good]) if good else np.zeros((0, dim), np.float32),
        [(r[0], r[1]) for r in order if r[1]],
        n,
    )
