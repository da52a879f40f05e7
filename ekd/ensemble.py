"""Teacher ensembles: several models predicting together (mean and per-member outputs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ekd.data import Frames
from ekd.errors import ConfigError, DataError
from ekd.model import Model, Prediction

__all__ = ["Ensemble", "EnsemblePrediction", "PRETRAINED", "load_pretrained", "load_predictor", "pretrained_spec"]

#: suffix of a backend name that marks a published ensemble: ``ani-pretrained:PATH``
PRETRAINED = "-pretrained"


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


def pretrained_spec(text: str) -> tuple[str, str] | None:
    """``("ani", PATH)`` for ``"ani-pretrained:PATH"``; None for anything else."""
    name, _, path = text.partition(":")
    if not name.endswith(PRETRAINED):
        return None
    if not path:
        raise ConfigError(f"'{text}': a pretrained ensemble needs its path, e.g. {name}:PATH")
    return name.removesuffix(PRETRAINED), path


def load_pretrained(backend: str, path: str | os.PathLike, dtype=None, device: str = "auto") -> list[Model]:
    """The members of a published ensemble, frozen, by the backend that reads its format."""
    import torch

    from ekd.plugins import get_backend

    reader = getattr(get_backend(backend), "pretrained", None)
    if reader is None:
        raise ConfigError(f"backend '{backend}' cannot load pretrained models ('{backend}{PRETRAINED}:PATH')")
    return reader(Path(path), dtype or torch.float64, device)


def load_predictor(path: str | os.PathLike, device: str = "auto") -> Model | Ensemble:
    """A model file, a directory with ``model.pt``, a directory of member directories, or a
    published ensemble (``ani-pretrained:PATH``)."""
    spec = pretrained_spec(str(path))
    if spec is not None:
        return Ensemble(load_pretrained(*spec, device=device))
    path = Path(path)
    if path.is_file():
        return Model.load(path, device=device)
    if (path / "model.pt").is_file():
        return Model.load(path / "model.pt", device=device)
    members = sorted(p for p in path.glob("*/model.pt")) if path.is_dir() else []
    if not members:
        raise DataError(f"{path}: no model.pt in it or in its sub-directories (a published ensemble: ani-pretrained:{path})")
    return Ensemble([Model.load(p, device=device) for p in members])
