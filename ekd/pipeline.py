"""The Python twins of ekd's commands. The CLI only parses arguments and calls these."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ekd._io import atomic_path
from ekd.config import dump_yaml, load_yaml, validate
from ekd.data import DEFAULT_DATASET, Frames, ReadOptions, random_split, read
from ekd.errors import ConfigError, DataError
from ekd.metrics import energy_errors, force_errors
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.provenance import package_versions
from ekd.train import TrainConfig, train

__all__ = ["train_model", "score_model", "DEFAULT_FORCE_WEIGHT"]

#: force weight used by ``--forces`` when the config sets none
DEFAULT_FORCE_WEIGHT = 0.1


def score_model(model: Model, frames: Frames) -> dict:
    """Energy (and, where the frames have forces, force) errors in kcal/mol and kcal/mol/Å."""
    prediction = model.predict(frames, forces=frames.forces is not None)
    scores = {"n_conformations": len(frames)}
    if frames.energy is not None:
        scores.update(energy_errors(prediction.energy, frames.energy))
    if frames.forces is not None:
        scores.update(force_errors(prediction.forces, frames.forces))
    return scores


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
    **overrides,
) -> dict:
    """``ekd train``: train one model and score it on a held-out test split.

    Args:
        backend: installed backend name.
        out: run directory (resumed if it holds an unfinished run of the same settings).
        data: dataset path; default: the embedded reference set.
        forces: train on the data's reference forces too (otherwise they are never seen).
        config: YAML path or mapping with sections ``train`` (:class:`TrainConfig`) and
            ``options`` (the backend's hyperparameters).
        overrides: ``TrainConfig`` fields that win over the config (e.g. ``epochs=20``).
    Returns the summary written to ``out/summary.json``.
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
    if train_config.force_weight > 0 and not forces:
        raise ConfigError("train.force_weight > 0 trains on reference forces: pass --forces to confirm")

    path = Path(data) if data is not None else DEFAULT_DATASET
    frames = read(path, read_options or ReadOptions())
    if frames.energy is None:
        raise DataError(f"{path}: no energies to train on")
    if forces and frames.forces is None:
        raise DataError(f"{path}: --forces needs forces in the data, and it has none")
    fractions = (1 - train_config.val_fraction - train_config.test_fraction, train_config.val_fraction, train_config.test_fraction)
    train_part, val_part, test_part = random_split(frames, fractions, seed=train_config.seed)
    if not forces:  # the reference forces are held-out truth
        train_part, val_part = train_part.without_forces(), val_part.without_forces()

    out = Path(out)
    effective = {"backend": backend, "data": str(path), "forces": forces, "train": train_config.model_dump(), "options": sections.get("options", {})}
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "config.yaml", dump_yaml(effective))
    info = {"config": effective, "data_sha256": frames.metadata.get("sha256"), "versions": package_versions()}
    result = train(backend, train_part, val_part, out, train_config, sections.get("options"), info=info, show_progress=show_progress)

    summary = {
        "backend": backend,
        "trained_on": "energies and forces" if forces else "energies only",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "test": score_model(result.model, test_part) if len(test_part) else {},
        "units": {"energy": "kcal/mol", "forces": "kcal/mol/Å"},
        "data": str(path),
        "data_sha256": frames.metadata.get("sha256"),
    }
    _write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
