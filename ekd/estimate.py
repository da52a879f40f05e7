"""How long trainings will take, before they start: a few timed optimizer steps of each kind.

A run prints this at its start (the stage estimates of :class:`ekd.progress.StageEstimate` then
refine it from the real epochs), for the trainings' whole epoch bounds: early stopping usually
ends them sooner. Trainings side by side are assumed to share the cores without slowing each other
(measured on 2 cores: two ANI teachers 4 % slower each, three MACE students 15 %).
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ekd import distributed
from ekd.data.frames import PerConformation
from ekd.parallel import TrainJob, default_jobs
from ekd.pipeline import RunInputs, student_jobs, teacher_jobs
from ekd.runconfig import RunConfig, TeacherMember
from ekd.progress import duration
from ekd.train.trainer import build_from_data, optimizer_step

__all__ = ["describe_estimate", "describe_sizes", "epoch_seconds", "run_estimate", "stage_seconds"]


def epoch_seconds(job: TrainJob, threads: int = 1, steps: int = 3) -> float:
    """Wall seconds one epoch of ``job`` takes on ``threads`` threads (training and validation):
    ``steps`` of the trainer's own optimizer steps on conformations drawn at random from the
    training data, timed after one warm-up step, scaled by atoms to the epoch's (data ordered by
    molecule would otherwise be timed on its first, often smallest, molecules)."""
    config = job.config
    drawn = np.random.default_rng(config.seed).choice(len(job.train_frames), min(len(job.train_frames), (steps + 1) * config.batch_size), replace=False)
    frames = job.train_frames.subset(np.sort(drawn)).load()  # (the data may be streamed: read in file order)
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
                seconds.append((time.perf_counter() - started) / part.n_atoms)
        per_atom = statistics.median(seconds[1:] or seconds)
    finally:
        torch.set_num_threads(previous)
    # validation: a forward pass (and forces) per atom, about a third of a training step's
    return per_atom * (job.train_frames.n_atoms + job.val_frames.n_atoms / 3)


def stage_seconds(jobs: list[TrainJob], workers: int | None = None, timed: dict | None = None) -> float:
    """Wall seconds the unfinished ``jobs`` take, ``workers`` at a time (None: the
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


def describe_estimate(stages: dict[str, float]) -> str:
    """One line: the trainings' time at their epoch bounds, per stage (seconds by stage name),
    and how to shorten a long run."""
    total = sum(stages.values())
    parts = ", ".join(f"{name} {duration(seconds)}" for name, seconds in stages.items() if seconds)
    line = (f"ekd: this run's trainings take about {duration(total)} here at their epoch bounds ({parts or 'all finished'}; "
            "timed from a few steps of each model; early stopping usually ends sooner)")
    if total > 3600:
        line += "; --epochs N bounds every model, and --size small or a smaller model (its options) trains faster"
    return line


def run_estimate(directory: Path, inputs: RunInputs, labelled: PerConformation | None = None) -> dict[str, float]:
    """Seconds each stage of a run's trainings in ``directory`` takes here at its epoch bounds
    (``teach``, ``students`` or ``students and baselines``; 0 when finished); the students are
    timed on their ``labelled`` data, or before labelling on the same conformations unlabelled."""
    timed, config = {}, inputs.config
    teach = teacher_jobs(directory / "teachers", config, [m for m in inputs.members if not m.pretrained], *inputs.energy_only, inputs.published)
    parts = [(labelled if labelled is not None else inputs.data).subset(index) for index in inputs.split_index[:2]]
    jobs = student_jobs(directory, config, *parts, {}) + (student_jobs(directory, config, *inputs.energy_only, {}, baseline=True) if config.student.baseline else [])
    return {"teach": stage_seconds(teach, config.jobs, timed),
            "students and baselines" if config.student.baseline else "students": stage_seconds(jobs, config.jobs, timed)}


def describe_sizes(config: RunConfig, members: list[TeacherMember]) -> str:
    """One line: the model size chosen and each trained backend's options at that size."""
    size = config.resolved_size()
    why = {"small": "sized for a CPU", "upstream": "the libraries' own sizes"}[size]
    started = " (the teachers keep their start models' architecture: teachers.init_from)" if config.teachers.init_from else ""
    teachers = set() if started else {m.backend for m in members if not m.pretrained}
    sized = "; ".join(f"{b}: {config.sized_options(b, {}) or 'its defaults'}" for b in sorted(teachers | {config.student.backend}))
    return f"ekd: model size {size} ({why}; size: small|upstream overrides, your options win): {sized}{started}"
