"""Train one model of any backend: AdamW, plateau LR, EMA, early stopping, exact resume.

Under ``torchrun`` the same call trains data-parallel (:mod:`ekd.distributed`): every batch of
``batch_size`` conformations (the global batch) is shared among the ranks by atoms, each rank's
loss uses the whole batch's denominators and gradients are summed, so the weights do not depend
on the number of ranks; validation is shared the same way, without padding or dropping. Rank 0
alone writes files. SIGTERM or SIGUSR1 (a scheduler's pre-emption) saves a checkpoint at the step
reached and stops with :class:`ekd.errors.Preempted`; the same call resumes from it, with any
number of ranks.

The run directory holds::

    checkpoint.pt   everything needed to resume (written atomically after every epoch)
    model.pt        the best model so far (EMA weights, lowest validation loss)
    history.csv     one row per epoch: losses, learning rate, time

Starting :func:`train` again on the same directory with the same inputs resumes after the last
finished epoch and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import signal
import time
from pathlib import Path
from typing import Callable, NoReturn

import numpy as np
import torch

from ekd._io import atomic_path
from ekd.data.frames import PerConformation
from ekd.graph import check_geometries
from ekd import distributed
from ekd.errors import ConfigError, DataError, Preempted, TrainingDiverged
from ekd.model import Model, resolve_device, to_voigt
from ekd.progress import progress_bar
from ekd.provenance import sha256_file, sha256_json
from ekd.train.config import TrainConfig
from ekd.train.loss import LossTotals, ekd_loss
from ekd.train.start import freeze, load_start, started_from
from ekd.backend import Backend, Batch, Statistics, validate_options
from ekd.plugins import get_backend

__all__ = ["TrainResult", "batch_loss", "build_from_data", "optimizer_step", "train"]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished training run left behind."""

    model: Model
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    seconds: float


def _inputs_sha256(backend: str, options: dict, config: TrainConfig, train_frames: PerConformation, val_frames: PerConformation) -> str:
    """What a checkpoint must match to be resumed (the epoch bound and device may change)."""
    start = sha256_file(config.init_from) if config.init_from else None
    return sha256_json(backend, options, config.hashed("epochs", "device"), start, train_frames.sha256(), val_frames.sha256())


def train(
    backend: str,
    train_frames: PerConformation,
    val_frames: PerConformation,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    options: dict | None = None,
    info: dict | None = None,
    show_progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train a ``backend`` model on ``train_frames``, selecting on ``val_frames`` (each a
    :class:`ekd.data.Dataset` or, for data larger than memory, a streamed one:
    :func:`ekd.data.stream`); resumable.

    Args:
        config: training options; ``config.force_weight > 0`` needs force labels,
            ``config.stress_weight > 0`` stress labels on the periodic conformations.
        options: the backend's hyperparameters (validated by its ``Options``).
        info: provenance stored in the saved model (config, seeds, input hashes, ...).
        on_epoch_end: called with (epoch, history row) after each epoch is saved.
    """
    config = config or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_data(train_frames, val_frames, config)
    run = _start(backend, train_frames, val_frames, out_dir, config, options, info)
    _resume(run)
    train_batches, val_batches = _batches(run, train_frames, val_frames)

    started = time.perf_counter()
    with progress_bar(f"train {run.model.backend.name}", config.epochs, enabled=show_progress and run.main) as bar, _preemption() as asked_to_stop:
        bar.advance(run.state["epoch"])
        while not run.finished:
            epoch = run.state["epoch"] + 1
            train_loss, epoch_start = _train_epoch(run, epoch, train_batches, asked_to_stop)
            val_loss = _validation_loss(run, epoch, val_batches)
            row = _end_epoch(run, epoch, train_loss, val_loss, epoch_start)
            bar.update(advance=1, info=f"loss {row['train_loss']:.3g} val {val_loss:.3g} best@{run.state['best_epoch']}")
            if on_epoch_end is not None and run.main:
                on_epoch_end(epoch, row)

    distributed.barrier()  # model.pt is rank 0's
    best = Model.load(out_dir / "model.pt", device=run.model.device)
    return TrainResult(best, run.state["best_epoch"], run.state["best_val"], run.state["epoch"], run.stopped_early, time.perf_counter() - started)


def _check_data(train_frames: PerConformation, val_frames: PerConformation, config: TrainConfig) -> None:
    """Raise :class:`DataError` unless both parts are non-empty, have the labels ``config``
    trains on, and valid geometries."""
    for name, frames in (("training", train_frames), ("validation", val_frames)):
        where = frames.metadata.get("source", name)
        if frames.energy is None:
            raise DataError(f"{where}: the {name} data have no energies")
        if config.force_weight > 0 and not frames.has_forces:
            raise DataError(f"{where}: force_weight > 0 but the {name} data have no forces")
        if config.stress_weight > 0 and (frames.stress is None or not np.isfinite(frames.stress[frames.periodic]).all() or not frames.periodic.any()):
            raise DataError(f"{where}: stress_weight > 0 but the {name} data have no stress on every periodic conformation "
                            f"({int(frames.periodic.sum())} periodic of {len(frames)})")
        if len(frames) == 0:
            raise DataError(f"the {name} split is empty")
    for frames in (train_frames, val_frames):
        check_geometries(frames)


@dataclasses.dataclass
class _Training:
    """One training run's moving parts, read and updated by the steps of :func:`train`.

    ``state`` is what the checkpoint keeps besides the weights and optimizer: epoch, best_val,
    best_epoch, bad_epochs, history and, after a pre-emption, the epoch's ``partial`` progress.
    """

    model: Model
    ema: _Ema
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    config: TrainConfig
    out_dir: Path
    inputs_sha256: str
    state: dict
    main: bool  # this rank writes the files

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def stopped_early(self) -> bool:
        """The early-stopping rule: ``config.early_stopping`` epochs in a row without improvement."""
        return self.state["bad_epochs"] >= self.config.early_stopping

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.state["epoch"] >= self.config.epochs

    def save_checkpoint(self) -> None:
        _save_checkpoint(self.checkpoint_path, self.inputs_sha256, self.model, self.ema, self.optimizer, self.scheduler, self.state)


def _start(backend: str, train_frames: PerConformation, val_frames: PerConformation, out_dir: Path,
           config: TrainConfig, options: dict | None, info: dict | None) -> _Training:
    """A fresh run: the model (built from the data's statistics, or started from
    ``config.init_from`` with its reference energies refit), its frozen parameters, EMA,
    optimizer, plateau scheduler and the state before the first epoch."""
    if config.init_from:
        start = load_start(config.init_from, backend if isinstance(backend, str) else backend.name, options, device=resolve_device(config.device))
        val_frames.check_elements(start.species, f"init_from {config.init_from}")
        model = started_from(start, train_frames, config.seed, getattr(torch, config.dtype), config.device)
    else:
        model = build_from_data(backend, train_frames, val_frames, options, config)
    model.info = {**(info or {}), **model.info, "train_config": config.model_dump(), "ranks": distributed.world()}
    inputs_sha256 = _inputs_sha256(model.backend.name, model.options.model_dump(mode="json"), config, train_frames, val_frames)
    freeze(model, config.freeze)
    ema = _Ema(model.module, config.ema_decay)
    # foreach: one kernel per step over all parameters, which torch picks by itself on CUDA only;
    # on a CPU it shortens a small model's step (HIP-NN energy-only epoch: docs/benchmarks.md)
    optimizer = torch.optim.AdamW(_trained(model), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "bad_epochs": 0, "history": []}
    return _Training(model, ema, optimizer, scheduler, config, out_dir, inputs_sha256, state, distributed.is_main())


def _trained(model: Model) -> list[torch.nn.Parameter]:
    """The parameters the optimizer moves (all but the frozen ones)."""
    return [p for p in model.module.parameters() if p.requires_grad]


def _resume(run: _Training) -> None:
    """Load the run directory's checkpoint, if any, into ``run``; :class:`ConfigError` if it
    belongs to another run (other data, options or settings)."""
    if not run.checkpoint_path.exists():
        return
    try:
        saved = torch.load(run.checkpoint_path, map_location=run.model.device, weights_only=False)
    except Exception as error:  # (truncated by a full disk, or not a checkpoint)
        raise DataError(f"{run.checkpoint_path}: not a readable checkpoint ({type(error).__name__}); delete it to start this training over") from None
    if saved["fingerprint"] != run.inputs_sha256:
        raise ConfigError(
            f"{run.out_dir} holds a training run with other data, options or settings; "
            "use another output directory or delete it to start over"
        )
    run.model.module.load_state_dict(saved["module"])
    run.ema.load_state_dict(saved["ema"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.state = saved["state"]


def _batches(run: _Training, train_frames: PerConformation, val_frames: PerConformation) -> tuple[_SharedBatches | list, _SharedBatches | list]:
    """The training batches (fixed by ``config.seed``) and validation batches, this rank's part
    of each; none for a finished run. Conversion (padding, graphs, ...) happens once and
    epochs reuse the batches kept in the shared cache."""
    if run.finished:
        return [], []
    config = run.config
    cache = _BatchCache(config.batch_cache_mb * 2**20)
    return (_SharedBatches(run.model, train_frames, train_frames.batch_indices(config.batch_size, True, config.seed), cache),
            _SharedBatches(run.model, val_frames, val_frames.batch_indices(max(config.batch_size, 256)), cache))


def _train_epoch(run: _Training, epoch: int, batches: _SharedBatches, asked_to_stop: Callable[[], bool]) -> tuple[float, float]:
    """The optimizer steps of ``epoch``, in an order fixed by the seed and epoch, from the step
    a pre-emption stopped at if the epoch was begun. Raises :class:`TrainingDiverged` on a
    non-finite loss and, once a rank was asked to stop, :func:`_stop_preempted`.

    Returns the mean training loss per conformation and the epoch's start time (earlier by the
    time spent before a pre-emption)."""
    partial = run.state.pop("partial", None) or {"step": 0, "train_loss": 0.0, "n_seen": 0, "seconds": 0.0}
    epoch_start = time.perf_counter() - partial["seconds"]
    run.model.module.train()
    order = np.random.default_rng([run.config.seed, epoch]).permutation(len(batches))
    train_loss, n_seen = partial["train_loss"], partial["n_seen"]
    for step in range(partial["step"], len(order)):
        batch, totals = batches[order[step]]
        loss = optimizer_step(run.model, batch, run.optimizer, run.config, totals)
        if not torch.isfinite(loss):
            raise TrainingDiverged(_divergence(run.model, run.out_dir, epoch, float(loss.detach()), run.config))
        run.ema.update()
        train_loss += float(loss.detach()) * totals.conformations
        n_seen += totals.conformations
        if distributed.all_sum(torch.tensor(float(asked_to_stop()))) > 0 and step + 1 < len(order):
            _stop_preempted(run, epoch, len(order), {"step": step + 1, "train_loss": train_loss, "n_seen": n_seen,
                                                     "seconds": time.perf_counter() - epoch_start})
    return train_loss / n_seen, epoch_start


def _stop_preempted(run: _Training, epoch: int, steps: int, partial: dict) -> NoReturn:
    """Checkpoint the epoch's ``partial`` progress (rank 0) and, once every rank is there,
    raise :class:`Preempted`."""
    run.state["partial"] = partial
    if run.main:
        run.save_checkpoint()
    distributed.barrier()
    raise Preempted(f"training in {run.out_dir} stopped by the scheduler at epoch {epoch}, step {partial['step']} of {steps}: "
                    "checkpoint saved; the same command resumes from there")


def _validation_loss(run: _Training, epoch: int, batches: _SharedBatches) -> float:
    """The EMA weights' loss per conformation on the validation batches, summed over ranks;
    :class:`TrainingDiverged` if it is not finite."""
    derivatives = run.config.force_weight > 0 or run.config.stress_weight > 0
    with run.ema.applied():
        run.model.module.eval()
        total, count = 0.0, 0
        for batch, totals in batches:
            with torch.set_grad_enabled(derivatives):
                loss = batch_loss(run.model, batch, run.config, create_graph=False, totals=totals) if batch is not None else _zero(run.model)
            total += float(distributed.all_sum(loss.detach())) * totals.conformations
            count += totals.conformations
        val_loss = total / count
    if not np.isfinite(val_loss):
        raise TrainingDiverged(_divergence(run.model, run.out_dir, epoch, val_loss, run.config, "validation "))
    return val_loss


def _end_epoch(run: _Training, epoch: int, train_loss: float, val_loss: float, epoch_start: float) -> dict:
    """Close ``epoch``: the scheduler's step, the best model saved if validation improved (else
    one more bad epoch), the history row added, then checkpoint and history written (rank 0).
    Returns the row."""
    run.scheduler.step(val_loss)
    if val_loss < run.state["best_val"]:
        run.state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0)
        if run.main:
            with run.ema.applied():
                run.model.save(run.out_dir / "model.pt")
    else:
        run.state["bad_epochs"] += 1
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - epoch_start,
    }
    run.state["history"].append(row)
    run.state["epoch"] = epoch
    if run.main:
        run.save_checkpoint()
        _write_history(run.out_dir / "history.csv", run.state["history"])
    return row


class _BatchCache:
    """A memory budget (bytes) for converted batches, shared by a training's batch lists. Once
    one batch did not fit, no more are kept (a fixed set is reused every epoch)."""

    def __init__(self, budget: float):
        self.left, self.full = budget, False

    def keep(self, batch: Batch) -> bool:
        """Whether ``batch`` is kept (it is then counted against the budget)."""
        size = _nbytes(batch)
        self.full = self.full or size > self.left
        if self.full:
            return False
        self.left -= size
        return True


class _SharedBatches:
    """The batches ``plan`` (conformation indices) of ``frames``, each as this rank's part of it,
    converted (None when the part is empty), with the whole batch's loss denominators. Parts are
    converted when first used and kept while ``cache`` has room; the others are read and
    converted again at each use (the same batches: the same training, only slower)."""

    def __init__(self, model: Model, frames: PerConformation, plan: list[np.ndarray], cache: _BatchCache):
        self.model, self.frames, self.plan, self.cache = model, frames, plan, cache
        self.kept: dict[int, tuple[Batch | None, LossTotals]] = {}

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> tuple[Batch | None, LossTotals]:
        if k in self.kept:
            return self.kept[k]
        part = self.frames.subset(self.plan[k]).load()
        mine = distributed.shard(part.sizes, distributed.world(), distributed.rank())
        converted = (self.model.batch(part.subset(mine)) if len(mine) else None, LossTotals.of(part))
        if converted[0] is None or self.cache.keep(converted[0]):
            self.kept[k] = converted
        return converted

    def __iter__(self):
        return (self[k] for k in range(len(self)))


def _nbytes(value) -> int:
    """Bytes of the tensors in ``value`` (a tensor, or dataclasses, dicts and sequences of them)."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if dataclasses.is_dataclass(value):
        return sum(_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def _zero(model: Model) -> torch.Tensor:
    """A zero loss joined to every parameter (the loss of a rank with no conformations in a batch)."""
    return sum(p.sum() * 0.0 for p in model.module.parameters())


@contextlib.contextmanager
def _preemption():
    """Inside: SIGTERM and SIGUSR1 are noted, not fatal; yields a function saying whether one came."""
    received = []
    names = [getattr(signal, n) for n in ("SIGTERM", "SIGUSR1") if hasattr(signal, n)]
    try:
        previous = {s: signal.signal(s, lambda number, frame: received.append(number)) for s in names}
    except ValueError:  # not the main thread: signals stay as they are
        previous = {}
    try:
        yield lambda: bool(received)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def build_from_data(backend: str | Backend, train_frames: PerConformation, val_frames: PerConformation, options: dict | None, config: TrainConfig) -> Model:
    """A new model for this training: its statistics measured on ``train_frames`` before it is
    built (as upstream trainers do), species from both parts, seed, dtype and device from ``config``."""
    species = sorted(set(train_frames.elements) | set(val_frames.elements))
    found = get_backend(backend) if isinstance(backend, str) else backend
    statistics = Statistics.of(train_frames, species, found.cutoff(validate_options(found, options)))
    return Model.build(found, species, statistics, options, seed=config.seed, dtype=getattr(torch, config.dtype), device=config.device)


def batch_loss(model: Model, batch: Batch, config: TrainConfig, create_graph: bool, totals: LossTotals | None = None) -> torch.Tensor:
    """The EKD loss of ``model`` on ``batch``: forces and stresses computed only when their
    weights in ``config`` are above 0 (``create_graph`` to train on them); ``totals``: the
    denominators of the whole batch when ``batch`` is one rank's part of it."""
    with_stress = config.stress_weight > 0
    energy, forces, stress = model.energy_forces_stress(batch, config.force_weight > 0, with_stress, create_graph)
    loss, _ = ekd_loss(energy, forces, batch, config.energy_weight, config.force_weight,
                       to_voigt(stress) if with_stress else None, config.stress_weight, totals)
    return loss


def optimizer_step(model: Model, batch: Batch | None, optimizer: torch.optim.Optimizer, config: TrainConfig, totals: LossTotals | None = None) -> torch.Tensor:
    """One step on ``batch`` (this rank's part of a batch with ``totals``; None: an empty part):
    the EKD loss (:func:`batch_loss`) summed over ranks, then backward, gradients summed over
    ranks, clipping and the optimizer's step. A non-finite loss is returned untaken."""
    loss = batch_loss(model, batch, config, create_graph=True, totals=totals) if batch is not None else _zero(model)
    total = distributed.all_sum(loss.detach())
    if torch.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = _trained(model)
        distributed.sync_gradients(parameters)
        torch.nn.utils.clip_grad_norm_(parameters, config.clip_grad, foreach=True)
        optimizer.step()
    return total


def _divergence(model: Model, out_dir: Path, epoch: int, loss: float, config: TrainConfig, which: str = "") -> str:
    """One line: which model, which epoch, and the likely cause of a non-finite loss."""
    weights_finite = all(torch.isfinite(p).all() for p in model.module.parameters())
    if not weights_finite:
        cause = f"the weights blew up: learning rate {config.lr:g} is too high for this model and data (try train.lr {config.lr / 10:g})"
    elif config.dtype == "float32":
        cause = "the model's output overflowed or a geometry is degenerate (check the data; train.dtype float64 is more robust)"
    else:
        cause = "the model's output is not finite for some geometry (check the data for degenerate geometries)"
    return f"training of the {model.backend.name} model in {out_dir} diverged at epoch {epoch} ({which}loss {loss}); likely cause: {cause}"


class _Ema:
    """Exponential moving average of a module's parameters (the weights that are validated and saved).

    Kept as plain tensors rather than a deep copy of the module: copies of e3nn's compiled
    tensor products can hold buffers the original lacks.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.parameters, self.decay = list(module.parameters()), decay
        self.average = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 if self.updates == 0 else 1 - self.decay
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], weight)
        self.updates += 1

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self):
        """The module holds the averaged weights inside the block, its own ones after."""
        live = [p.detach().clone() for p in self.parameters]
        torch._foreach_copy_(self.parameters, self.average)
        try:
            yield
        finally:
            torch._foreach_copy_(self.parameters, live)

    def state_dict(self) -> dict:
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        torch._foreach_copy_(self.average, state["average"])
        self.updates = state["updates"]


def _save_checkpoint(path: Path, inputs_sha256: str, model: Model, ema, optimizer, scheduler, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(
            {
                "fingerprint": inputs_sha256,
                "module": model.module.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
            },
            tmp,
        )


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
