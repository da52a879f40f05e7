"""Run a function on several ``torch.distributed`` ranks on one machine (gloo), as ``torchrun``
would start them: to test data-parallel code without a launcher."""

from __future__ import annotations

import importlib
import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["on_ranks"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, ranks: int, port: int, target: str, args: tuple, kwargs: dict) -> None:
    from ekd.distributed import init_from_environment

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_WORLD_SIZE=str(ranks),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    init_from_environment()
    module, _, name = target.partition(":")
    try:
        getattr(importlib.import_module(module), name)(*args, **kwargs)
    finally:
        if dist.is_initialized():  # (one rank needs no group)
            dist.destroy_process_group()


def on_ranks(ranks: int, target: str, *args, **kwargs) -> None:
    """Call ``target`` (``module:function``, importable in a fresh process) with ``args`` and
    ``kwargs`` on ``ranks`` spawned ranks; raises if any rank fails."""
    mp.spawn(_rank_main, args=(ranks, _free_port(), target, args, kwargs), nprocs=ranks, join=True)
