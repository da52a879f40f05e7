"""Langevin dynamics of many replicas of one system at once, driven by the teacher ensemble's
mean forces: one ensemble prediction per step for all replicas (far faster on a CPU than one
ASE calculator call per replica). BAOAB splitting (Leimkuhler & Matthews 2013); ASE units
inside (eV, Å, amu, ASE time), settings in fs and K."""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import units
from ase.data import atomic_masses

from ekd.data import Dataset

__all__ = ["Frames", "labelled", "langevin"]


@dataclasses.dataclass
class Frames:
    """Geometries of one system with the teachers' labels: positions (F, n, 3) Å, mean energy
    (F,) eV, mean forces (F, n, 3) eV/Å and the members' force spread (F, n) eV/Å."""

    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    force_spread: np.ndarray

    @classmethod
    def empty(cls, n_atoms: int) -> "Frames":
        return cls(np.zeros((0, n_atoms, 3)), np.zeros(0), np.zeros((0, n_atoms, 3)), np.zeros((0, n_atoms)))

    @classmethod
    def join(cls, parts: list["Frames"]) -> "Frames":
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def take(self, rows: np.ndarray) -> "Frames":
        return Frames(self.positions[rows], self.energy[rows], self.forces[rows], self.force_spread[rows])

    def __len__(self) -> int:
        return len(self.energy)


def labelled(ensemble, numbers: np.ndarray, positions: list[np.ndarray] | np.ndarray) -> Frames:
    """The ensemble's mean energies and forces, and its force spread, at each geometry of one system."""
    n = len(numbers)
    if not len(positions):
        return Frames.empty(n)
    frames = Dataset.from_arrays([numbers] * len(positions), list(positions), ["system"] * len(positions))
    prediction = ensemble.predict(frames)
    return Frames(np.array(positions, dtype=float).reshape(-1, n, 3), prediction.energy,  # (a copy: the caller moves its atoms on)
                  prediction.forces.reshape(-1, n, 3), prediction.force_spread.reshape(-1, n))


def langevin(ensemble, numbers: np.ndarray, starts: np.ndarray, temperatures_K: np.ndarray, steps: int, record_every: int,
             rng: np.random.Generator, timestep_fs: float = 0.5, friction_per_fs: float = 0.01, on_step=None) -> Frames:
    """Langevin runs of ``len(starts)`` replicas (R, n, 3) Å of one system, replica r at
    ``temperatures_K[r]``, from Maxwell-Boltzmann velocities without centre-of-mass motion;
    the labelled geometries every ``record_every`` steps (R · steps // record_every frames,
    step after step). ``on_step()`` is called after each step."""
    masses = atomic_masses[numbers][None, :, None]
    kT = (units.kB * np.asarray(temperatures_K, dtype=float))[:, None, None]
    dt = timestep_fs * units.fs
    decay = np.exp(-friction_per_fs / units.fs * dt)
    noise = np.sqrt((1 - decay**2) * kT / masses)
    positions = np.array(starts, dtype=float)
    velocities = rng.normal(size=positions.shape) * np.sqrt(kT / masses)
    velocities -= (masses * velocities).sum(1, keepdims=True) / masses.sum()
    current = labelled(ensemble, numbers, positions)
    recorded = []
    for step in range(1, steps + 1):
        velocities += 0.5 * dt * current.forces / masses
        positions += 0.5 * dt * velocities
        velocities = decay * velocities + noise * rng.normal(size=positions.shape)
        positions += 0.5 * dt * velocities
        current = labelled(ensemble, numbers, positions)
        velocities += 0.5 * dt * current.forces / masses
        if step % record_every == 0:
            recorded.append(current)
        if on_step is not None:
            on_step()
        if not np.all(np.isfinite(positions)):
            break  # a replica blew up: what was recorded before stays, the filters judge it
    return Frames.join(recorded) if recorded else Frames.empty(len(numbers))
