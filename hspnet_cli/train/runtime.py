"""Where a run executes: device, precision, and torchrun's distributed group.

``torchrun --nproc_per_node N -m hspnet_cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
each process then trains on its DistributedSampler shard with DDP, and rank 0 alone writes
files and prints. NCCL on GPUs, gloo on CPUs (the CPU path is what the tests exercise).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from hspnet_cli.errors import UserError


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


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:N]; got '{device}'")
    return torch.device(device)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a config's ``amp`` on ``device`` (None: full precision).

    On the CPU only an explicit ``bf16`` turns autocast on (CPUs with AMX / AVX512-BF16 gain from
    it, others only lose); ``auto`` and ``fp16`` stay in full precision there.
    """
    if amp == "off":
        return None
    if device.type != "cuda":
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


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


def tune_for_cuda(device: torch.device) -> None:
    """Let cuDNN pick the fastest convolution algorithms for the shapes it meets (training and
    tagging run fixed image sizes, so the one-off search per shape pays back at once). GPU
    results may then differ in the last bits from run to run; exact resume is a CPU guarantee."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def intra_op_threads(workers: int, requested: int | None = None, processes: int = 1) -> int:
    """Intra-op threads for the compute of one process.

    The rule: ``--threads`` when given; else ``OMP_NUM_THREADS`` when set (the usual way to pin
    threads for a whole job); else each DataLoader worker keeps one core busy decoding and compute
    gets the rest of this process's share of the cores: ``max(1, cores // processes - workers)``.
    torch's default (one thread per core) plus busy workers oversubscribes the cores, and torch's
    spinning threads then wait on each other: on a busy 2-core machine training ran 3-10x slower
    than with one thread.
    """
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads must be at least 1; got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, usable_cores() // max(processes, 1) - max(workers, 0))


@contextlib.contextmanager
def intra_op_threads_set(workers: int, requested: int | None = None) -> Iterator[int]:
    """Use :func:`intra_op_threads` threads inside the block (the processes torchrun starts on
    one machine, LOCAL_WORLD_SIZE, share its cores), restoring the caller's setting after."""
    threads = intra_op_threads(workers, requested, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def say_threads(runtime: Runtime, threads: int, workers: int) -> None:
    """Log the device and the thread/worker split at INFO."""
    import logging

    logging.getLogger("hspnet_cli.train").info(
        "training on %s: %d intra-op thread(s), %d DataLoader worker(s), %d usable core(s)",
        runtime.device, threads, workers, usable_cores())
