"""Independent trainings (ensemble members, student and baseline seeds) side by side.

Small models on CPU use one core about as well as two, so ``jobs`` trainings in separate
processes, each with ``cpu_count // jobs`` threads, finish nearly ``jobs`` times sooner than one
after another. Every job is a resumable :class:`~ekd.stages.Stage`; finished ones are skipped.
Results are reproducible for a fixed ``jobs`` (the thread count can change the last bits).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_module
from typing import Callable

import torch

from ekd.data import Frames
from ekd.progress import progress_bar
from ekd.stages import Stage
from ekd.train import TrainConfig, train

__all__ = ["TrainJob", "default_jobs", "run_jobs"]


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One training whose output is the stage directory (``model.pt``, ``history.csv``, ...)."""

    stage: Stage
    backend: str
    train_frames: Frames
    val_frames: Frames
    config: TrainConfig
    options: dict
    info: dict
    on_epoch_end: Callable[[int, dict], None] | None = None  # picklable (a module-level function)

    @property
    def name(self) -> str:
        return f"{self.stage.directory.parent.name}/{self.stage.directory.name}"


def default_jobs() -> int:
    """One training per CPU core (on CUDA, one: the trainings would share the GPU)."""
    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def run_jobs(jobs: list[TrainJob], workers: int | None = None, show_progress: bool = True, description: str = "train") -> None:
    """Run the unfinished ``jobs``, ``workers`` at a time (None: :func:`default_jobs`)."""
    pending = [job for job in jobs if not job.stage.done]
    workers = min(workers or default_jobs(), len(pending))
    if workers <= 1:
        for job in pending:
            _run(job, show_progress=show_progress)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    threads = max(1, (os.cpu_count() or 1) // workers)
    epochs_seen = {job.name: 0 for job in pending}
    with (
        context.Manager() as manager,
        context.Pool(workers, initializer=_init_worker, initargs=(threads, os.getpid())) as pool,
        progress_bar(f"{description} ({len(pending)} models, {workers} at a time)", sum(j.config.epochs for j in pending), show_progress) as bar,
    ):
        epochs = manager.Queue()
        running = {job.name: (job, pool.apply_async(_run, (job, False, epochs))) for job in pending}
        while running:
            try:
                name, epoch = epochs.get(timeout=0.2)
                bar.update(advance=epoch - epochs_seen[name], info=f"{name} epoch {epoch}")
                epochs_seen[name] = epoch
            except queue_module.Empty:
                pass
            for name, (job, result) in list(running.items()):
                if result.ready():
                    result.get()  # re-raises the worker's error here
                    bar.advance(job.config.epochs - epochs_seen[name])  # early stop: the rest of the bound
                    epochs_seen[name] = job.config.epochs
                    del running[name]
        pool.close()
        pool.join()


def _init_worker(threads: int, parent: int) -> None:
    global _PARENT
    torch.set_num_threads(threads)
    _PARENT = parent


_PARENT: int | None = None


def _run(job: TrainJob, show_progress: bool, epochs=None) -> None:
    def report(epoch: int, row: dict) -> None:
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)  # the parent is gone (killed): don't train on beside a rerun
        if epochs is not None:
            epochs.put((job.name, epoch))
        if job.on_epoch_end is not None:
            job.on_epoch_end(epoch, row)

    job.stage.start()
    train(job.backend, job.train_frames, job.val_frames, job.stage.directory, job.config, job.options, info=job.info, show_progress=show_progress, on_epoch_end=report)
    job.stage.finish()
