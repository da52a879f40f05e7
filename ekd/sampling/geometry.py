"""Geometries made from a seed: random rattles, thermal displacements along the softest normal
modes of the teachers' Hessian, and pairs of molecules placed at a given closest contact.
Positions in Å, energies in eV, masses in amu (``ase.data``)."""

from __future__ import annotations

import numpy as np
from ase import units
from ase.data import atomic_masses

from ekd.data import Dataset

__all__ = ["closest_contact", "hessian", "placed_pair", "random_rotation", "rattled", "soft_mode_displacements"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix (3, 3) drawn uniformly (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rattled(positions: np.ndarray, sigma: float, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` copies of ``positions`` with Gaussian noise of ``sigma`` Å on every coordinate."""
    return [positions + rng.normal(scale=sigma, size=positions.shape) for _ in range(count)]


def hessian(ensemble, numbers: np.ndarray, positions: np.ndarray, step: float = 0.005) -> np.ndarray:
    """(3n, 3n) eV/Å² Hessian of the ensemble's mean energy by central differences of its forces
    (all 6n displaced geometries in one prediction), symmetrised."""
    n = len(numbers)
    displaced = []
    for k in range(3 * n):
        for sign in (1, -1):
            moved = positions.copy().reshape(-1)
            moved[k] += sign * step
            displaced.append(moved.reshape(n, 3))
    frames = Dataset.from_arrays([numbers] * len(displaced), displaced, ["hessian"] * len(displaced))
    forces = ensemble.predict(frames).forces.reshape(3 * n, 2, 3 * n)
    matrix = -(forces[:, 0] - forces[:, 1]) / (2 * step)
    return (matrix + matrix.T) / 2


def _rigid_modes(numbers: np.ndarray, positions: np.ndarray) -> int:
    """Translations and rotations of a molecule: 6, 5 when linear, 3 for one atom."""
    if len(numbers) == 1:
        return 3
    centred = positions - positions.mean(0)
    return 5 if np.linalg.matrix_rank(centred, tol=1e-3) < 2 else 6


def soft_mode_displacements(numbers: np.ndarray, positions: np.ndarray, matrix: np.ndarray, modes: int, count: int,
                            temperature_K: float, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` geometries displaced along a random mix of the ``modes`` softest vibrations of
    the Hessian ``matrix`` (eV/Å²), each with a classical thermal amplitude at ``temperature_K``
    (a mode of curvature λ in mass-weighted units gets a normal amplitude of sqrt(kT/λ))."""
    masses = np.repeat(atomic_masses[numbers], 3)
    weighted = matrix / np.sqrt(np.outer(masses, masses))
    curvature, vectors = np.linalg.eigh(weighted)
    vibrations = np.arange(_rigid_modes(numbers, positions), len(curvature))[:modes]
    vibrations = vibrations[curvature[vibrations] > 1e-4]  # a numerically flat or unstable mode is left alone
    if not len(vibrations):
        return []
    kT = units.kB * temperature_K
    out = []
    for _ in range(count):
        amplitudes = rng.normal(size=len(vibrations)) * np.sqrt(kT / curvature[vibrations])
        step = (vectors[:, vibrations] @ amplitudes) / np.sqrt(masses)
        out.append(positions + step.reshape(-1, 3))
    return out


def closest_contact(first: np.ndarray, second: np.ndarray) -> float:
    """Å between the closest atom of ``first`` (n, 3) and of ``second`` (m, 3)."""
    return float(np.min(np.linalg.norm(first[:, None] - second[None], axis=-1)))


def placed_pair(first: np.ndarray, second: np.ndarray, contact: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (n + m, 3) of two molecules, each turned at random about its centroid, the
    second moved along a random direction until its closest atom is ``contact`` Å from the first's."""
    a = (first - first.mean(0)) @ random_rotation(rng).T
    b = (second - second.mean(0)) @ random_rotation(rng).T
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    near, far = 0.0, float(np.ptp(a, axis=0).max() + np.ptp(b, axis=0).max() + contact + 1.0)
    for _ in range(60):  # bisection: the contact grows with the distance between centroids
        middle = (near + far) / 2
        if closest_contact(a, b + middle * direction) < contact:
            near = middle
        else:
            far = middle
    return np.concatenate([a, b + far * direction])
