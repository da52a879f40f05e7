"""Independent trainings (ensemble members, student and baseline seeds) side by side.

Small models on CPU use one core about as well as two, so ``jobs`` trainings in separate
processes, each with ``cpu_count // jobs`` threads, finish nearly ``jobs`` times sooner than one
after another. A count of trainings that the cores do not divide runs all at once (up to two per
core) rather than in waves that leave cores idle: three students on two cores take 1.5 times one
training instead of twice (measured: 4.55 s per epoch each, three at a time, against 2.95 s two at
a time). Every job is a resumable :class:`~ekd.stages.Stage`; finished ones are skipped.
Results are reproducible for a fixed ``jobs`` (the thread count can change the last bits).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_module
import sys

import torch

from ekd import distributed
from ekd.data import Dataset
from ekd.plugins import registered_in_process
from ekd.progress import ProgressCallback, ProgressEvent, StageEstimate, notify, progress_bar
from ekd.stages import Stage
from ekd.train import TrainConfig, train

__all__ = ["TrainJob", "default_jobs", "run_jobs"]


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One training whose output is the stage directory (``model.pt``, ``history.csv``, ...)."""

    stage: Stage
    backend: str
    train_frames: Dataset
    val_frames: Dataset
    config: TrainConfig
    options: dict
    info: dict

    @property
    def name(self) -> str:
        return f"{self.stage.directory.parent.name}/{self.stage.directory.name}"


def default_jobs(pending: int | None = None) -> int:
    """Trainings side by side for ``pending`` of them: on CUDA one (they would share the GPU); on
    CPU one per core, or more (at most two per core) where that leaves no core idle in a last wave."""
    if torch.cuda.is_available():
        return 1
    cores = max(1, os.cpu_count() or 1)
    if pending is None or pending <= cores:
        return cores
    # wall time with w workers on the cores: ceil(pending / w) waves of w / cores trainings' time each
    return min(range(cores, 2 * cores + 1), key=lambda w: -(-pending // w) * w)


def run_jobs(jobs: list[TrainJob], workers: int | None = None, show_progress: bool = True, description: str = "train",
             on_progress: ProgressCallback | None = None) -> None:
    """Run the unfinished ``jobs``, ``workers`` at a time (None: :func:`default_jobs`).

    ``on_progress`` gets a :class:`ProgressEvent` per finished epoch, in this process; when it
    returns False the workers are stopped (each keeps its last finished epoch) and
    :class:`ekd.errors.Cancelled` is raised.
    """
    pending = [job for job in jobs if not job.stage.done]
    if distributed.world() > 1:
        _run_on_ranks(pending, show_progress, on_progress, description)
        return
    workers = min(workers or default_jobs(len(pending)), len(pending))
    local = sorted({job.backend for job in pending if registered_in_process(job.backend)})
    if workers > 1 and local:
        print(f"ekd: backend {', '.join(local)} is registered in this process, not by an installed plugin, so worker processes "
              f"cannot build it: its {len(pending)} trainings run here, one at a time (install it as a plugin to train {workers} at a time)",
              file=sys.stderr)
        workers = 1
    event = lambda job, epoch, row: ProgressEvent(description, job.name, epoch, job.config.epochs, row)  # noqa: E731
    estimate = StageEstimate(description, sum(job.config.epochs for job in pending), workers, write=None if show_progress else lambda line: None)
    if workers <= 1:
        for job in pending:
            def on_epoch(epoch, row, job=job):
                estimate.epoch_done(row["seconds"])
                notify(on_progress, event(job, epoch, row))

            _run(job, show_progress, on_epoch)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    threads = max(1, (os.cpu_count() or 1) // workers)
    by_name = {job.name: job for job in pending}
    epochs_seen = {job.name: 0 for job in pending}
    epochs = context.Queue()  # handed to the workers at start: no manager process to outlive the run
    try:
        with (
            context.Pool(workers, initializer=_init_worker, initargs=(threads, os.getpid(), epochs)) as pool,
            progress_bar(f"{description} ({len(pending)} models, {workers} at a time)", sum(j.config.epochs for j in pending), show_progress) as bar,
        ):
            running = {job.name: (job, pool.apply_async(_run_in_worker, (job,))) for job in pending}
            while running:
                try:
                    name, epoch, row = epochs.get(timeout=0.2)
                    bar.update(advance=epoch - epochs_seen[name], info=f"{name} epoch {epoch}")
                    epochs_seen[name] = epoch
                    estimate.epoch_done(row["seconds"])
                    notify(on_progress, event(by_name[name], epoch, row))
                except queue_module.Empty:
                    pass
                for name, (job, result) in list(running.items()):
                    if result.ready():
                        result.get()  # re-raises the worker's error here (the pool's exit stops the others)
                        bar.advance(job.config.epochs - epochs_seen[name])  # early stop: the rest of the bound
                        epochs_seen[name] = job.config.epochs
                        del running[name]
            pool.close()
            pool.join()
    finally:
        epochs.close()
        epochs.join_thread()


def _run_on_ranks(pending: list[TrainJob], show_progress: bool, on_progress: ProgressCallback | None, description: str) -> None:
    """Under ``torchrun``: with at least as many trainings as ranks, rank r trains trainings
    r, r + W, ... by itself; with fewer, each training runs data-parallel across all ranks, one
    after another. Every rank returns when all are done."""
    ranks, me = distributed.world(), distributed.rank()
    notify_here = lambda job: (lambda epoch, row: notify(on_progress, ProgressEvent(description, job.name, epoch, job.config.epochs, row)))  # noqa: E731
    if len(pending) >= ranks:
        for job in pending[me::ranks]:
            with distributed.alone():
                _run(job, show_progress, notify_here(job))
        distributed.barrier()
    else:
        for job in pending:
            _run(job, show_progress and distributed.is_main(), notify_here(job))


def _init_worker(threads: int, parent: int, epochs) -> None:
    global _PARENT, _EPOCHS
    torch.set_num_threads(threads)
    _PARENT, _EPOCHS = parent, epochs


_PARENT: int | None = None
_EPOCHS = None


def _run_in_worker(job: TrainJob) -> None:
    def report(epoch: int, row: dict) -> None:
        if os.getppid() != _PARENT:
            os._exit(1)  # the parent is gone (killed): don't train on beside a rerun
        _EPOCHS.put((job.name, epoch, row))

    _run(job, False, report)


def _run(job: TrainJob, show_progress: bool, on_epoch_end) -> None:
    def epoch_saved(epoch: int, row: dict) -> None:  # (the trainer calls it on rank 0 only)
        job.stage.record_time()  # a training killed later keeps its cost up to this epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    main = distributed.is_main()  # (data-parallel: rank 0 writes the stage's record)
    if main:
        job.stage.start()
    distributed.barrier()  # start() clears outputs of other inputs before any rank reads the folder
    train(job.backend, job.train_frames, job.val_frames, job.stage.directory, job.config, job.options, info=job.info, show_progress=show_progress, on_epoch_end=epoch_saved)
    if main:
        job.stage.finish(outputs=("model.pt",))
    distributed.barrier()
