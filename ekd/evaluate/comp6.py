"""COMP6 metrics (Smith et al., J. Chem. Phys. 148, 241733, 2018), in kcal/mol and kcal/mol/Å.

- energy: error of each conformation's total energy;
- relative energy: error of E_a − E_b over all pairs of conformations of the same molecule;
- forces: error of each Cartesian force component.
Errors are pooled (not averaged per molecule) and never divided by the number of atoms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ekd.data import Dataset
from ekd.train.reference import fit_per_element, per_element_sum
from ekd.units import KCAL_PER_MOL

__all__ = ["ErrorSums", "comp6_errors", "comp6_metrics", "refit_offsets", "relative_energy_sums"]


class ErrorSums(NamedTuple):
    """What MAE and RMSE need of a set of errors, which pools across datasets by addition:
    their count, the sum of their absolute values and the sum of their squares."""

    count: int
    absolute: float
    squared: float

    @classmethod
    def of(cls, errors: np.ndarray) -> "ErrorSums":
        errors = np.asarray(errors, dtype=float).reshape(-1)
        return cls(len(errors), float(np.abs(errors).sum()), float((errors**2).sum()))

    def __add__(self, other: "ErrorSums") -> "ErrorSums":
        return ErrorSums(self.count + other.count, self.absolute + other.absolute, self.squared + other.squared)

    def scaled(self, factor: float) -> "ErrorSums":
        """The sums of the errors multiplied by ``factor`` > 0 (a change of unit)."""
        return ErrorSums(self.count, self.absolute * factor, self.squared * factor**2)

    def mae_rmse(self) -> tuple[float, float]:
        """Mean absolute and root-mean-square error."""
        return self.absolute / self.count, float(np.sqrt(self.squared / self.count))


def relative_energy_sums(predicted: np.ndarray, reference: np.ndarray, molecule: np.ndarray) -> ErrorSums:
    """Sums of the errors (E_a − E_b)_pred − (E_a − E_b)_ref over every pair a < b of the same
    molecule (input units; ``molecule``: any (N,) ids, e.g. ``frames.molecule_ids``), from each
    molecule's sorted residuals: O(n log n) time and O(n) memory, where the pairs themselves
    would take O(n²) (16.7 million for 10,000 conformations of three molecules)."""
    total = ErrorSums(0, 0.0, 0.0)
    residual = np.asarray(predicted, float) - np.asarray(reference, float)
    _, group, sizes = np.unique(molecule, return_inverse=True, return_counts=True)
    order = np.argsort(group.reshape(-1), kind="stable")
    for members in np.split(order, np.cumsum(sizes)[:-1]):  # each molecule's conformations
        r = np.sort(residual[members])
        n = len(r)
        # Σ_{i<j} |r_j − r_i| = Σ_k r_k (2k − n + 1) over sorted r; Σ_{i<j} (r_i − r_j)² = n Σ (r − r̄)²
        absolute = float(np.dot(r, 2 * np.arange(n) - n + 1))
        squared = float(n * ((r - r.mean()) ** 2).sum()) if n else 0.0
        total = total + ErrorSums(n * (n - 1) // 2, absolute, squared)
    return total


def refit_offsets(frames: Dataset, predicted: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Predicted energies plus the per-element offsets (eV) that best fit the reference.

    For models whose energies sit on another reference (another level of theory, other
    self-atomic energies): relative energies and forces are unchanged by it.
    """
    species = frames.elements
    offsets = fit_per_element(frames, frames.energy - predicted, species)
    return predicted + per_element_sum(frames, offsets, species), {int(z): float(o) for z, o in zip(species, offsets)}


def comp6_errors(frames: Dataset, energy: np.ndarray, forces: np.ndarray | None) -> dict[str, ErrorSums]:
    """The error sums (kcal/mol, kcal/mol/Å) of one dataset, which pool across files by addition."""
    errors = {}
    if frames.energy is not None:
        errors["energy"] = ErrorSums.of((energy - frames.energy) / KCAL_PER_MOL)
        errors["relative_energy"] = relative_energy_sums(energy, frames.energy, frames.molecule_ids).scaled(1 / KCAL_PER_MOL)
    if forces is not None and frames.forces is not None:  # (a streamed dataset has no forces attribute: its forces are scored a block at a time)
        errors["force"] = ErrorSums.of((forces - frames.forces) / KCAL_PER_MOL)
    return errors


def comp6_metrics(errors: dict[str, ErrorSums]) -> dict[str, float]:
    """``energy_mae``, ``energy_rmse``, ``relative_energy_mae``/``rmse``, ``force_mae``/``rmse``."""
    metrics = {}
    for key, sums in errors.items():
        if sums.count:
            metrics[f"{key}_mae"], metrics[f"{key}_rmse"] = sums.mae_rmse()
    return metrics
