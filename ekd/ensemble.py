"""Teacher ensembles: several models predicting together (mean, spread and per-member outputs)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from typing import Sequence

import numpy as np
from ase import Atoms

import torch

from ekd.backend import SharedFeatures
from ekd.data import Dataset
from ekd.errors import ConfigError, DataError
from ekd.model import Model, Prediction, as_dataset
from ekd.progress import progress_bar

__all__ = ["Ensemble", "EnsemblePrediction", "PRETRAINED", "load_pretrained", "load_predictor", "pretrained_spec", "shared_predictions"]

#: suffix of a backend name that marks a published ensemble: ``ani-pretrained:PATH``
PRETRAINED = "-pretrained"


@dataclasses.dataclass(frozen=True)
class EnsemblePrediction(Prediction):
    """Mean energy (N,) eV and forces (A, 3) eV/Å, every member's ((M, N) and (M, A, 3)), and
    the committee's spread: energy (N,) eV and per-atom force (A,) eV/Å, each the root mean
    square deviation of the members from their mean."""

    member_energy: np.ndarray | None = None
    member_forces: np.ndarray | None = None
    member_stress: np.ndarray | None = None  # (M, N, 6) eV/Å³, when asked
    sizes: np.ndarray | None = None  # (N,) atoms of each conformation

    def per_conformation(self, atom_values: np.ndarray) -> list[np.ndarray]:
        """Per-atom values (A, ...) split into one array per conformation (n_i, ...)."""
        if self.sizes is None:
            raise ValueError("per_conformation: this prediction does not record its conformations' sizes")
        return np.split(np.asarray(atom_values), np.cumsum(self.sizes)[:-1])

    def force_spread_per_conformation(self) -> list[np.ndarray]:
        """:attr:`force_spread` of each conformation: one (n_i,) eV/Å array per conformation."""
        return self.per_conformation(self.force_spread)

    @property
    def energy_spread(self) -> np.ndarray:
        """(N,) eV: standard deviation of the members' energies."""
        return self.member_energy.std(axis=0)

    @property
    def force_spread(self) -> np.ndarray | None:
        """(A,) eV/Å: sqrt(mean over members of |F_m − F_mean|²) per atom; None without forces."""
        if self.member_forces is None:
            return None
        return np.sqrt(((self.member_forces - self.forces) ** 2).sum(axis=-1).mean(axis=0))


@dataclasses.dataclass
class Ensemble:
    """Models whose mean prediction is the ensemble's (eV, eV/Å); ``names`` label the members."""

    models: list[Model]
    names: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("an ensemble needs at least one model")
        self.names = list(self.names) if self.names is not None else [f"member {i}" for i in range(len(self.models))]
        if len(self.names) != len(self.models):
            raise ConfigError(f"{len(self.names)} names for {len(self.models)} ensemble members")

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"Ensemble({len(self.models)} members: {', '.join(f'{n} ({m.backend.name})' for n, m in zip(self.names, self.models))})"

    def predict(self, frames: Dataset | Sequence[Atoms], forces: bool = True, batch_size: int = 256, stress: bool = False,
                show_progress: bool = False) -> EnsemblePrediction:
        """Mean, spread and per-member predictions on a Dataset or a list of ASE ``Atoms``
        (stress: the members' mean, eV/Å³, as :meth:`Model.predict`); members that share their
        features (:meth:`sharing`) run in one pass; ``show_progress``: a bar over the members."""
        frames = as_dataset(frames)
        members: list[Prediction | None] = [None] * len(self.models)
        with progress_bar("teachers", len(self.models), enabled=show_progress, unit="teacher") as bar:
            for group in self.sharing(stress):
                predictions = (shared_predictions([self.models[k] for k in group], frames, forces, batch_size) if len(group) > 1
                               else [self.models[group[0]].predict(frames, forces=forces, batch_size=batch_size, stress=stress)])
                for k, prediction in zip(group, predictions):
                    members[k] = prediction
                bar.update(advance=len(group), info=", ".join(self.names[k] for k in group))
        energy = np.stack([m.energy for m in members])
        member_forces = np.stack([m.forces for m in members]) if forces else None
        member_stress = np.stack([m.stress for m in members]) if stress else None
        return EnsemblePrediction(
            energy=energy.mean(0),
            forces=None if member_forces is None else member_forces.mean(0),
            stress=None if member_stress is None else member_stress.mean(0),
            member_energy=energy,
            member_forces=member_forces,
            member_stress=member_stress,
            sizes=frames.sizes,
        )

    @property
    def species(self) -> list[int]:
        return sorted(set.intersection(*(set(m.species) for m in self.models)))

    def sharing(self, stress: bool = False) -> list[list[int]]:
        """Members (indices) that run in one pass: those whose backend declares
        :class:`ekd.backend.SharedFeatures` and that have equal feature keys, elements, dtype and
        device (a published ANI ensemble: all of them); every other member runs alone, as does
        everyone when stress is asked."""
        groups: dict = {}
        for k, model in enumerate(self.models):
            shares = isinstance(model.backend, SharedFeatures) and not stress
            key = (model.backend.name, model.backend.feature_key(model.options), tuple(model.species), model.dtype, str(model.device)) if shares else k
            groups.setdefault(key, []).append(k)
        return list(groups.values())

    def calculator(self):
        """An ASE calculator of the committee: ``energy`` and ``forces`` are the mean; it also
        returns ``energy_spread`` (eV), ``force_spread`` (n_atoms,) eV/Å, ``energies`` (M,) and
        ``forces_comm`` (M, n_atoms, 3), the members' (as MACE's committee calculator)."""
        from ekd.calculator import EkdCalculator

        return EkdCalculator(self)


def shared_predictions(models: list[Model], frames: Dataset, forces: bool = True, batch_size: int = 256) -> list[Prediction]:
    """Each member's energies (N,) eV and forces (A, 3) eV/Å for members that share their
    features (:meth:`Ensemble.sharing`): per batch the features are computed once, each member
    reads them out, and its forces are −∂E/∂x through the features (one backward pass over the
    features per member; the readouts are not differentiated twice)."""
    first = models[0]
    energies: list[list[np.ndarray]] = [[] for _ in models]
    member_forces: list[list[np.ndarray]] = [[] for _ in models]
    modes = [model.module.training for model in models]
    for model in models:
        model.module.eval()
    try:
        for part in frames.batches(batch_size):
            batch = first.batch(part)
            with torch.set_grad_enabled(forces):
                batch = dataclasses.replace(batch, positions=batch.positions.detach().requires_grad_(forces))
                features = first.backend.features(first.module, batch)
                readable = features.detach().requires_grad_(forces)
                for k, model in enumerate(models):
                    energy = model.backend.readout(model.module, batch, readable)
                    energies[k].append(energy.detach().cpu().double().numpy())
                    if forces:
                        (slope,) = torch.autograd.grad(energy.sum(), readable)
                        (gradient,) = torch.autograd.grad(features, batch.positions, grad_outputs=slope, retain_graph=k + 1 < len(models))
                        member_forces[k].append(-gradient.detach().cpu().double().numpy())
    finally:
        for model, mode in zip(models, modes):
            model.module.train(mode)
    return [Prediction(np.concatenate(e), np.concatenate(f) if forces else None) for e, f in zip(energies, member_forces)]


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

    from ekd.backend import Pretrained

    found = get_backend(backend)
    if not isinstance(found, Pretrained):
        raise ConfigError(f"backend '{backend}' cannot load pretrained models ('{backend}{PRETRAINED}:PATH')")
    return found.pretrained(Path(path), dtype or torch.float64, device)


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
    return Ensemble([Model.load(p, device=device) for p in members], [p.parent.name for p in members])
