"""Where a run executes: device, precision, and torchrun's distributed group.

``torchrun --nproc_per_node N -m hspnet_cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
each process then trains on its DistributedSampler shard with DDP, and rank 0 alone writes
files and prints. NCCL on GPUs, gloo on CPUs (the CPU path is what the tests exercise).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hspnet_cli.core.device import resolve_amp, resolve_device, tune_for_cuda, usable_cores


@dataclass
class Runtime:
    """Device and process-group facts of this process."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to ``amp_dtype`` (see :func:`resolve_amp`); nothing when it is None."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


@contextlib.contextmanager
def runtime_for(device: str, amp: str) -> Iterator[Runtime]:
    """Set up (and tear down) the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        tune_for_cuda(dev)
        try:
            yield Runtime(device=dev, rank=rank, world_size=world, amp_dtype=resolve_amp(amp, dev))
        finally:
            dist.destroy_process_group()
    else:
        dev = resolve_device(device)
        tune_for_cuda(dev)
        yield Runtime(device=dev, amp_dtype=resolve_amp(amp, dev))


def all_reduce_mean(value: float, runtime: Runtime) -> float:
    """Mean of a float over all processes."""
    if not runtime.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return float(t.item()) / runtime.world_size


def average_gradients(params: list[torch.Tensor], runtime: Runtime) -> None:
    """Average the gradients of parameters DDP does not manage (ROLE's label estimates) over
    processes, as DDP does for the model's: every process then takes the same step."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(runtime.world_size)


def gather_rows(indices: torch.Tensor, rows: torch.Tensor, runtime: Runtime, n: int) -> torch.Tensor | None:
    """Put every process's (index, row) pairs into one (n, C) tensor on rank 0 (None elsewhere).

    DistributedSampler pads shards by repeating indices; writing by index makes the repeats
    harmless.
    """
    if not runtime.distributed:
        out = torch.empty(n, rows.shape[1], dtype=rows.dtype)
        out[indices] = rows
        return out
    parts: list = [None] * runtime.world_size
    dist.all_gather_object(parts, (indices.cpu(), rows.cpu()))
    if not runtime.is_main:
        return None
    out = torch.empty(n, rows.shape[1], dtype=rows.dtype)
    for idx, r in parts:
        out[idx] = r
    return out


def say_threads(runtime: Runtime, threads: int, workers: int) -> None:
    """Log the device and the thread/worker split at INFO."""
    import logging

    logging.getLogger("hspnet_cli.train").info(
        "training on %s: %d intra-op thread(s), %d DataLoader worker(s), %d usable core(s)",
        runtime.device,
        threads,
        workers,
        usable_cores(),
    )
