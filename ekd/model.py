"""A trained (or fresh) model of any backend: build, predict energies and forces, save and load.

Forces are −∂E/∂x by autograd, here and nowhere else, so every backend gets them the same way.
The checkpoint format is one for all backends: a ``torch.save`` dict of plain types holding the
backend name, its options, the species, the reference energies and the state dict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from ase import Atoms

from ekd._io import atomic_named_path, atomic_path
from ekd.backend import Backend, BackendOptions, Batch, Converts, Exportable, Periodic, Statistics, validate_options
from ekd.data import Dataset
from ekd.data.frames import VOIGT
from ekd.errors import BackendError, DataError
from ekd.plugins import get_backend
from ekd.provenance import package_versions

__all__ = ["Model", "Prediction", "as_dataset", "energy_level", "resolve_device", "seeded", "to_voigt"]

CHECKPOINT_FORMAT = "ekd-model-2"  # 2: statistics (reference energies, average neighbours, scales)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, dtype: torch.dtype | None = None):
    """Seed torch's global RNG (and set the default dtype) inside; restore both on exit.

    Backends build their modules inside this, so their parameters and buffers are created in
    the model's dtype and nothing leaks into models built later in the same process.
    """
    state, default_dtype = torch.random.get_rng_state(), torch.get_default_dtype()
    torch.manual_seed(seed)
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
        torch.set_default_dtype(default_dtype)


def to_voigt(stress: torch.Tensor) -> torch.Tensor:
    """(N, 6) Voigt components (xx, yy, zz, yz, xz, xy; ASE's order) of (N, 3, 3) stresses."""
    return stress[(slice(None), *VOIGT)]


def as_dataset(structures: Dataset | Sequence[Atoms]) -> Dataset:
    """A :class:`Dataset` of ``structures`` (a Dataset already, or a list of ASE ``Atoms``)."""
    if isinstance(structures, Dataset):
        return structures
    if isinstance(structures, Atoms):
        raise TypeError("predict takes a list of Atoms; wrap one structure as [atoms]")
    return Dataset.from_atoms(structures)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Energies (N,) in eV and, when asked, forces (A, 3) in eV/Å and stress (N, 6) in eV/Å³
    (ASE's sign and Voigt order xx, yy, zz, yz, xz, xy; NaN for a molecule)."""

    energy: np.ndarray
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None


@dataclasses.dataclass
class Model:
    """A backend's torch module with everything needed to rebuild it.

    Attributes:
        backend: the :class:`Backend` that built it.
        module: the torch module (``backend.energy`` runs it).
        options: the backend options it was built with.
        species: atomic numbers it handles.
        statistics: the training data's statistics it was built with (reference energies in eV
            per element, included in its output; average neighbours; scales).
        info: free-form provenance saved with the checkpoint (config, seed, data hashes, ...).
        path: the checkpoint it was loaded from, or None (not saved).
    """

    backend: Backend
    module: torch.nn.Module
    options: BackendOptions
    species: list[int]
    statistics: Statistics
    info: dict = dataclasses.field(default_factory=dict)
    path: Path | None = dataclasses.field(default=None, compare=False)

    def __repr__(self) -> str:
        from ase.data import chemical_symbols

        elements = " ".join(chemical_symbols[z] for z in self.species)
        return f"Model(backend='{self.backend.name}', elements='{elements}', path={str(self.path) if self.path else None!r})"

    @classmethod
    def build(
        cls,
        backend: str | Backend,
        species: Iterable[int],
        statistics: Statistics | dict[int, float] | None = None,
        options: dict | BackendOptions | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> "Model":
        """A new model of ``backend`` for ``species``, initialised from ``seed``."""
        backend = get_backend(backend) if isinstance(backend, str) else backend
        species = sorted(int(z) for z in species)
        if backend.elements is not None and not set(species) <= backend.elements:
            missing = sorted(set(species) - backend.elements)
            raise BackendError(f"backend '{backend.name}' cannot model element(s) with Z = {missing}")
        if not isinstance(statistics, Statistics):  # reference energies alone (eV per element), or none
            statistics = Statistics({int(z): float(e) for z, e in (statistics or {z: 0.0 for z in species}).items()})
        options = validate_options(backend, options)
        with seeded(seed, dtype):
            module = backend.build(options, species, statistics)
        return cls(backend, module.to(device=resolve_device(str(device)), dtype=dtype), options, species, statistics)

    # prediction ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def batch(self, frames: Dataset) -> Batch:
        """A batch of ``frames`` in this model's dtype and device, with the backend inputs cached."""
        frames.check_elements(self.species, f"this {self.backend.name} model")
        if not isinstance(self.backend, Periodic) and frames.periodic.any():
            k = int(np.flatnonzero(frames.periodic)[0])
            raise DataError(f"{frames.metadata.get('source', 'data')}: conformation {k} ({frames.molecule[k]}) is periodic, and backend "
                            f"'{self.backend.name}' does not model periodic cells yet (its 'periodic' capability, docs/plugins.md)")
        batch = Batch.from_frames(frames, self.dtype, self.device, cutoff=self.cutoff)
        if isinstance(self.backend, Converts):
            batch.inputs = self.backend.convert(self.module, batch)
        return batch

    @property
    def cutoff(self) -> float:
        """The backend's declared cutoff (Å) for this model's options."""
        return float(self.backend.cutoff(self.options))

    @property
    def reference_energies(self) -> dict[int, float]:
        """Per-element energies (eV) included in the model's output."""
        return self.statistics.reference_energies

    def energy_forces_stress(self, batch: Batch, forces: bool, stress: bool, create_graph: bool = False):
        """Energies (N,) eV, forces (A, 3) eV/Å = −∂E/∂x if ``forces``, and stress (N, 3, 3)
        eV/Å³ = (1/V) ∂E/∂ε if ``stress``: the derivative with respect to a symmetric strain ε
        applied to positions and cell together (x → x(1 + ε), cell → cell(1 + ε)), which reaches
        the backend through :meth:`Batch.edge_vectors`; zeros for a molecule (no volume)."""
        if not (forces or stress):
            return self.backend.energy(self.module, batch), None, None
        positions = batch.positions.detach().requires_grad_(True)
        wrt = [positions]
        if stress:
            strain = torch.zeros((batch.n_conformations, 3, 3), dtype=positions.dtype, device=positions.device, requires_grad=True)
            deformation = torch.eye(3, dtype=positions.dtype, device=positions.device) + 0.5 * (strain + strain.transpose(1, 2))
            strained = torch.einsum("ai,aij->aj", positions, deformation[batch.conformation])
            batch = dataclasses.replace(batch, positions=strained, cell=torch.bmm(batch.cell, deformation))
            wrt.append(strain)
        else:
            batch = dataclasses.replace(batch, positions=positions)
        energy = self.backend.energy(self.module, batch)
        gradients = torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph)
        virial = None
        if stress:
            volume = torch.linalg.det(batch.cell.detach()).abs()
            virial = gradients[1] / torch.where(volume > 0, volume, torch.inf)[:, None, None]
        return energy, -gradients[0] if forces else None, virial

    def predict(self, frames: Dataset | Sequence[Atoms], forces: bool = True, batch_size: int = 256, stress: bool = False) -> Prediction:
        """Energies (N,) eV and optionally forces (A, 3) eV/Å and stress (N, 6) eV/Å³ (Voigt,
        ASE's order; NaN for molecules) of every conformation (a Dataset or a list of ASE
        ``Atoms``; atoms concatenated in order), in batches, in eval mode."""
        frames = as_dataset(frames)
        energies, all_forces, stresses = [], [], []
        was_training = self.module.training
        self.module.eval()
        try:
            for part in frames.batches(batch_size):
                with torch.set_grad_enabled(forces or stress):
                    energy, force, virial = self.energy_forces_stress(self.batch(part), forces, stress)
                energies.append(energy.detach().cpu().double().numpy())
                if forces:
                    all_forces.append(force.detach().cpu().double().numpy())
                if stress:
                    voigt = to_voigt(virial).detach().cpu().double().numpy()
                    stresses.append(np.where(part.periodic[:, None], voigt, np.nan))
        finally:
            self.module.train(was_training)
        return Prediction(np.concatenate(energies), np.concatenate(all_forces) if forces else None, np.concatenate(stresses) if stress else None)

    # persistence ----------------------------------------------------------------------------
    def state(self) -> dict:
        """The checkpoint dict: plain types and tensors only (loads with ``weights_only=True``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "backend": self.backend.name,
            "options": self.options.model_dump(mode="json"),
            "species": self.species,
            "statistics": self.statistics.to_dict(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "state_dict": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in self.module.state_dict().items()},  # (a module's extra state as it is)
            "versions": package_versions(),
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint atomically."""
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    @classmethod
    def from_state(cls, state: dict, device: str | torch.device = "auto", source: str = "checkpoint") -> "Model":
        """Rebuild a model from :meth:`state`'s dict."""
        if isinstance(state, dict) and state.get("format") == "ekd-model-1":
            raise DataError(f"{source}: written by an older ekd (checkpoint format 1, without the data statistics); train it again")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise DataError(f"{source}: not an ekd model checkpoint")
        backend = get_backend(state["backend"])
        model = cls.build(
            backend,
            state["species"],
            Statistics.from_dict(state["statistics"]),
            state["options"],
            dtype=getattr(torch, state["dtype"]),
            device=device,
        )
        try:
            model.module.load_state_dict(state["state_dict"])
        except RuntimeError as error:
            raise BackendError(f"{source}: weights do not fit the '{backend.name}' model ({str(error).splitlines()[0]})") from None
        model.info = state.get("info", {})
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto", backend: str | None = None) -> "Model":
        """Load a checkpoint written by :meth:`save`; ``backend`` asserts which backend it must be."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such model checkpoint")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise DataError(f"{path}: not a readable ekd model checkpoint ({type(error).__name__})") from None
        if backend is not None and isinstance(state, dict) and state.get("backend") != backend:
            raise BackendError(f"{path}: a '{state.get('backend')}' checkpoint, not a '{backend}' one")
        model = cls.from_state(state, device=device, source=str(path))
        model.path = path
        return model

    def export(self, path: str | os.PathLike) -> None:
        """Write the model in its backend's native format (for the backend's own tools)."""
        if not isinstance(self.backend, Exportable):
            raise BackendError(f"backend '{self.backend.name}' has no native export format")
        with atomic_named_path(path) as staged:  # (nothing half-written is left at ``path``)
            self.backend.export(self.module, staged)

    def calculator(self):
        """An ASE calculator (energy in eV, forces in eV/Å) running this model."""
        from ekd.calculator import EkdCalculator

        return EkdCalculator(self)


def energy_level(models: Iterable[Model]) -> str | None:
    """The reference the models' energies are on (a published level, or the training data's);
    None when unrecorded or when they differ."""
    levels = {(m.info.get("pretrained") or {}).get("level_of_theory") or m.info.get("level_of_theory") for m in models}
    return levels.pop() if len(levels) == 1 else None
