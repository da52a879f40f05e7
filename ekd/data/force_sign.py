"""Measure from the data whether stored forces are forces (−dE/dx) or gradients.

For pairs of nearby conformations of one molecule (same atoms, same order) the energy step
ΔE = E_b − E_a must match the work predicted by the forces, −½(F_a + F_b)·(x_b − x_a) (trapezoid
rule). The least-squares slope of ΔE against that prediction is ≈ +1 when the forces carry the
right sign and ≈ −1 when they are gradients.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ekd.data.frames import Dataset

__all__ = ["SignCheck", "measure_force_sign"]


@dataclasses.dataclass(frozen=True)
class SignCheck:
    """Result of :func:`measure_force_sign`: the fitted slope and how many pairs it used."""

    slope: float
    n_pairs: int

    @property
    def verdict(self) -> str:
        """``consistent`` (slope ≈ +1), ``flipped`` (≈ −1), ``scale`` (|slope| far from 1:
        energies and forces in different units, e.g. 23.06 for kcal/mol energies read as eV) or
        ``inconclusive``."""
        if self.n_pairs < 5 or not np.isfinite(self.slope):
            return "inconclusive"
        if 0.5 < abs(self.slope) < 2:
            return "consistent" if self.slope > 0 else "flipped"
        return "scale" if abs(self.slope) >= 2 or abs(self.slope) < 0.2 else "inconclusive"


def _pairs_of_group(frames: Dataset, index: np.ndarray, max_displacement: float, rng) -> list[tuple[int, int]]:
    """Each conformation paired with its nearest neighbour (largest atom displacement below the cap)."""
    if len(index) > 200:
        index = np.sort(rng.choice(index, 200, replace=False))
    xyz = np.stack([frames.positions[frames.atoms_of(i)] for i in index])
    # largest single-atom displacement between every two conformations
    worst = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1).max(axis=-1)
    np.fill_diagonal(worst, np.inf)
    pairs = set()
    for a, b in enumerate(worst.argmin(axis=1)):
        if worst[a, b] <= max_displacement:
            pairs.add((int(index[min(a, b)]), int(index[max(a, b)])))
    return sorted(pairs)


def measure_force_sign(frames: Dataset, max_displacement: float = 0.5, seed: int = 0) -> SignCheck:
    """Fit ΔE against −F̄·Δx over nearby conformation pairs (see module docstring).

    Args:
        max_displacement: largest single-atom displacement (Å) for two conformations to count as
            nearby.
    Returns a :class:`SignCheck`; with no energies or forces it has ``n_pairs = 0``.
    """
    if frames.energy is None or frames.forces is None:
        return SignCheck(float("nan"), 0)
    rng = np.random.default_rng(seed)
    steps, works = [], []
    for name in frames.molecules:
        members = np.flatnonzero(frames.molecule == name)
        by_numbers: dict[bytes, list[int]] = {}
        for i in members:
            by_numbers.setdefault(frames.numbers[frames.atoms_of(i)].tobytes(), []).append(int(i))
        for group in by_numbers.values():
            for a, b in _pairs_of_group(frames, np.array(group), max_displacement, rng):
                ra, rb = frames.atoms_of(a), frames.atoms_of(b)
                dx = frames.positions[rb] - frames.positions[ra]
                works.append(-0.5 * np.sum((frames.forces[ra] + frames.forces[rb]) * dx))
                steps.append(frames.energy[b] - frames.energy[a])
    works, steps = np.asarray(works), np.asarray(steps)
    if len(works) == 0 or not np.any(works):
        return SignCheck(float("nan"), 0)
    return SignCheck(float(np.dot(works, steps) / np.dot(works, works)), len(works))
