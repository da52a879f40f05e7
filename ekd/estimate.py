"""How long trainings will take, before they start: a few timed optimizer steps of each kind.

A run prints this at its start (the stage estimates of :class:`ekd.progress.StageEstimate` then
refine it from the real epochs). Upper bounds: early stopping usually ends trainings sooner.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time

import numpy as np
import torch

from ekd import distributed
from ekd.parallel import TrainJob, default_jobs
from ekd.train.trainer import build_from_data, optimizer_step

__all__ = ["epoch_seconds", "stage_seconds"]


def epoch_seconds(job: TrainJob, threads: int = 1, steps: int = 3) -> float:
    """Wall seconds one epoch of ``job`` takes on ``threads`` threads (training and validation):
    ``steps`` of the trainer's own optimizer steps timed after one warm-up step, scaled to the
    epoch's batches."""
    config = job.config
    frames = job.train_frames.subset(np.arange(min(len(job.train_frames), (steps + 1) * config.batch_size))).load()  # (the data may be streamed)
    if config.force_weight > 0 and frames.forces is None:
        frames = frames.with_forces(np.zeros_like(frames.positions))  # the cost does not depend on the values
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with distributed.alone():  # timed by the rank that prints it, with no collective
            model = build_from_data(job.backend, frames, job.val_frames, job.options, config)
            optimizer = torch.optim.AdamW(model.module.parameters(), lr=config.lr)
            seconds = []
            for part in itertools.islice(frames.batches(config.batch_size, shuffle=True, seed=config.seed), steps + 1):
                batch = model.batch(part)
                started = time.perf_counter()
                optimizer_step(model, batch, optimizer, config)
                seconds.append(time.perf_counter() - started)
        per_conformation = statistics.median(seconds[1:] or seconds) / config.batch_size
    finally:
        torch.set_num_threads(previous)
    # validation: a forward pass (and forces) per conformation, about a third of a training step
    return per_conformation * (len(job.train_frames) + len(job.val_frames) / 3)


def stage_seconds(jobs: list[TrainJob], workers: int | None = None, timed: dict | None = None) -> float:
    """Wall seconds the unfinished ``jobs`` take at most, ``workers`` at a time (None: the
    default), each for its whole epoch bound. ``timed`` caches :func:`epoch_seconds` by the kind
    of training (backend, options, forces), so jobs differing only in seed are timed once."""
    pending = [job for job in jobs if not job.stage.done]
    if not pending:
        return 0.0
    cores = max(1, os.cpu_count() or 1)
    workers = min(workers or default_jobs(len(pending)), len(pending))
    timed = {} if timed is None else timed
    total = 0.0
    for job in pending:
        kind = (job.backend, repr(sorted(job.options.items())), job.config.force_weight > 0, job.config.batch_size)
        if kind not in timed:
            timed[kind] = epoch_seconds(job, threads=max(1, cores // workers))
        total += timed[kind] * job.config.epochs
    return total / min(workers, cores)
