"""Data-parallel training on ``torch.distributed``: the process group ``torchrun`` starts, and the
few collective operations ekd's trainer needs.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE`` set by the launcher, also
per node under SLURM's ``srun``), :func:`init_from_environment` joins the group: NCCL on CUDA,
gloo on CPU, and each rank gets the cores of its node divided by the ranks on it as threads.
Without a launcher everything here is a no-op for one process, so the trainer has one code path.
"""

from __future__ import annotations

import contextlib
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_sum", "alone", "barrier", "init_from_environment", "is_main", "rank", "shard", "sync_gradients", "world"]

#: how long a rank waits for the others at a collective: ranks that train different ensemble
#: members wait for the slowest, which can take hours (EKD_RANK_TIMEOUT_HOURS overrides)
TIMEOUT = datetime.timedelta(hours=float(os.environ.get("EKD_RANK_TIMEOUT_HOURS", "48")))
_alone = 0  # > 0 inside alone(): this rank works by itself


def init_from_environment() -> bool:
    """Join the process group ``torchrun`` describes (once); False when not launched by it."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    return True


def world() -> int:
    """Number of ranks working together (1 without a process group, or inside :func:`alone`)."""
    return dist.get_world_size() if dist.is_initialized() and not _alone else 1


def rank() -> int:
    """This process's rank among those working together (0 without a group or inside :func:`alone`)."""
    return dist.get_rank() if dist.is_initialized() and not _alone else 0


def global_rank() -> int:
    """This process's rank in the whole group, also inside :func:`alone`."""
    return dist.get_rank() if dist.is_initialized() else 0


@contextlib.contextmanager
def alone():
    """Inside, this rank works by itself (e.g. trains one ensemble member while other ranks train
    others): no collective, and it writes its own files."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def is_main() -> bool:
    """Whether this rank writes files and shows progress (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (e.g. before reading what rank 0 wrote)."""
    if world() > 1:
        dist.barrier()


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over ranks (a new tensor; ``value`` itself with one rank)."""
    if world() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total


def sync_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over ranks in one collective. A parameter without a
    gradient on a rank (an element absent from its share of the batch) counts as zero there,
    so every rank takes part and ends with the same gradients."""
    if world() == 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    offset = 0
    for p in parameters:
        p.grad = flat[offset: offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def shard(sizes: np.ndarray, ranks: int, index: int) -> np.ndarray:
    """Rows of the conformations (``sizes``: atoms of each) that rank ``index`` of ``ranks``
    takes: contiguous parts with about equal numbers of atoms, none lost or repeated (a part
    may be empty when there are fewer conformations than ranks)."""
    atoms = np.concatenate([[0], np.cumsum(sizes)])
    bounds = np.searchsorted(atoms[1:], atoms[-1] * np.arange(1, ranks) / ranks, side="left") + 1
    bounds = np.concatenate([[0], np.minimum(bounds, len(sizes)), [len(sizes)]])
    bounds = np.maximum.accumulate(bounds)
    return np.arange(bounds[index], bounds[index + 1])
