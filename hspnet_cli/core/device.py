"""Device, precision and CPU threads for any process that runs a model (train, tag, eval, search).

Training's process group and distributed helpers stay in the training room's ``runtime`` module;
what every model user needs (which device, which autocast dtype, how many intra-op threads
beside the DataLoader workers) lives here, so that using a model never imports training.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from hspnet_cli.core.errors import UserError


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


def tune_for_cuda(device: torch.device) -> None:
    """Let cuDNN pick the fastest convolution algorithms for the shapes it meets (training and
    tagging run fixed image sizes, so the one-off search per shape pays back at once). GPU
    results may then differ in the last bits from run to run; exact resume is a CPU guarantee."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


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
