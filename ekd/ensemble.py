"""Teacher ensembles: several models predicting together (mean and per-member outputs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ekd.data import Frames
from ekd.errors import DataError
from ekd.model import Model, Prediction

__all__ = ["Ensemble", "EnsemblePrediction", "load_predictor"]


@dataclasses.dataclass(frozen=True)
class EnsemblePrediction(Prediction):
    """Mean energy (N,) and forces (A, 3), plus every member's: (M, N) and (M, A, 3)."""

    member_energy: np.ndarray | None = None
    member_forces: np.ndarray | None = None


@dataclasses.dataclass
class Ensemble:
    """Models whose mean prediction is the ensemble's (eV, eV/Å)."""

    models: list[Model]

    def predict(self, frames: Frames, forces: bool = True, batch_size: int = 256) -> EnsemblePrediction:
        members = [model.predict(frames, forces=forces, batch_size=batch_size) for model in self.models]
        energy = np.stack([m.energy for m in members])
        member_forces = np.stack([m.forces for m in members]) if forces else None
        return EnsemblePrediction(
            energy=energy.mean(0),
            forces=None if member_forces is None else member_forces.mean(0),
            member_energy=energy,
            member_forces=member_forces,
        )

    @property
    def species(self) -> list[int]:
        return sorted(set.intersection(*(set(m.species) for m in self.models)))


def load_predictor(path: str | os.PathLike, device: str = "auto") -> Model | Ensemble:
    """A model file, a directory with ``model.pt``, or a directory of member directories."""
    path = Path(path)
    if path.is_file():
        return Model.load(path, device=device)
    if (path / "model.pt").is_file():
        return Model.load(path / "model.pt", device=device)
    members = sorted(p for p in path.glob("*/model.pt")) if path.is_dir() else []
    if not members:
        raise DataError(f"{path}: no model.pt in it or in its sub-directories")
    return Ensemble([Model.load(p, device=device) for p in members])
