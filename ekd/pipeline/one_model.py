"""``ekd train``: one model of any backend on a dataset's energies (and, with ``forces``, its
reference forces), scored on a held-out test split; resumable."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ekd import distributed
from ekd._io import atomic_path
from ekd.backend import validate_options
from ekd.config import dump_yaml, load_yaml, validate
from ekd.data import DEFAULT_DATASET, Dataset, ReadOptions
from ekd.data import stream as streamed
from ekd.data.embedded import resolve
from ekd.errors import ConfigError, DataError
from ekd.evaluate import evaluate_streamed
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.provenance import package_versions
from ekd.report import Scores
from ekd.train import TrainConfig, train

__all__ = ["DEFAULT_FORCE_WEIGHT", "TrainSummary", "train_model"]

#: force weight used by ``--forces`` when the config sets none
DEFAULT_FORCE_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """One trained model (``ekd train``) and its scores on the held-out test split
    (:class:`ekd.report.Scores`, kcal/mol and kcal/mol/Å; None when the split is empty)."""

    model: Model
    trained_on: str
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    test: Scores | None
    data: str
    data_sha256: str | None

    def to_dict(self) -> dict:
        """``summary.json``: the fields, the model as its backend name and checkpoint path."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "test")}
        test = {k: v for k, v in dataclasses.asdict(self.test).items() if v is not None} if self.test else {}
        return {"backend": self.model.backend.name, "model": str(self.model.path), **values, "test": test,
                "units": {"energy": "kcal/mol", "forces": "kcal/mol/Å"}}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)

def train_model(
    backend: str,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    forces: bool = False,
    config: str | os.PathLike | dict | None = None,
    read_options: ReadOptions | None = None,
    show_progress: bool = True,
    stream: bool = False,
    **overrides,
) -> "TrainSummary":
    """``ekd train``: train one model and score it on a held-out test split.

    Args:
        backend: installed backend name.
        out: run directory (resumed if it holds an unfinished run of the same settings).
        data: dataset path; default: the embedded reference set.
        forces: train on the data's reference forces too (otherwise they are never seen).
        config: YAML path or mapping with sections ``train`` (:class:`TrainConfig`) and
            ``options`` (the backend's hyperparameters).
        stream: read the data lazily, a batch at a time (an ekd HDF5 file; for data larger than
            memory, see :func:`ekd.data.stream`); only the held-out test split is loaded whole.
        overrides: ``TrainConfig`` fields that win over the config (e.g. ``epochs=20``).
    Returns the :class:`TrainSummary` written to ``out/summary.json``.
    """
    get_backend(backend)  # an unknown name fails before any data is read
    sections = config if isinstance(config, dict) else load_yaml(config)
    unknown = set(sections) - {"train", "options"}
    if unknown:
        raise ConfigError(f"config: unknown section(s) {', '.join(sorted(unknown))}; expected 'train' and 'options'")
    train_values = {**sections.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    if forces and "force_weight" not in train_values:
        train_values["force_weight"] = DEFAULT_FORCE_WEIGHT
    train_config = validate(TrainConfig, train_values, "train")
    validate_options(get_backend(backend), sections.get("options"), "options")
    for key in ("force_weight", "stress_weight"):
        if getattr(train_config, key) > 0 and not forces:
            raise ConfigError(f"train.{key} > 0 trains on reference forces and stresses: pass --forces to confirm")

    path = Path(data) if data is not None else DEFAULT_DATASET
    if stream and (read_options or ReadOptions()).given():
        raise ConfigError(f"{path}: reading options do not apply with --stream (the file is ekd HDF5: convert it with them first)")
    frames = streamed(resolve(path)) if stream else Dataset.read(path, read_options or ReadOptions())
    if frames.energy is None:
        raise DataError(f"{path}: no energies to train on")
    if forces and not frames.has_forces:
        raise DataError(f"{path}: --forces needs forces in the data, and it has none")
    fractions = (1 - train_config.val_fraction - train_config.test_fraction, train_config.val_fraction, train_config.test_fraction)
    train_part, val_part, test_part = frames.split(fractions, seed=train_config.seed)
    if not forces:  # the reference forces and stresses are held-out truth
        train_part, val_part = train_part.without_forces(), val_part.without_forces()

    out = Path(out)
    effective = {"backend": backend, "data": str(path), "forces": forces, "train": train_config.model_dump(), "options": sections.get("options", {})}
    out.mkdir(parents=True, exist_ok=True)
    main = distributed.is_main()  # under torchrun the training is data-parallel; rank 0 writes
    if main:
        _write_text(out / "config.yaml", dump_yaml(effective))
    info = {"config": effective, "data_sha256": frames.metadata.get("sha256"), "versions": package_versions()}
    result = train(backend, train_part, val_part, out, train_config, sections.get("options"), info=info, show_progress=show_progress and main)

    summary = TrainSummary(
        model=result.model,
        trained_on="energies and forces" if forces else "energies only",
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        seconds=round(result.seconds, 1),
        test=Scores(**evaluate_streamed(result.model, test_part)) if len(test_part) else None,  # a block at a time: streamed or not
        data=str(path),
        data_sha256=frames.metadata.get("sha256"),
    )
    if main:
        _write_text(out / "summary.json", json.dumps(summary.to_dict(), indent=2))
    return summary
