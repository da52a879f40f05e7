"""COMP6 metrics (Smith et al., J. Chem. Phys. 148, 241733, 2018), in kcal/mol and kcal/mol/Å.

- energy: error of each conformation's total energy;
- relative energy: error of E_a − E_b over all pairs of conformations of the same molecule;
- forces: error of each Cartesian force component.
Errors are pooled (not averaged per molecule) and never divided by the number of atoms.
"""

from __future__ import annotations

import numpy as np

from ekd.data import Dataset
from ekd.units import KCAL_PER_MOL

__all__ = ["relative_energy_errors", "comp6_errors", "comp6_metrics", "refit_offsets"]


def mae_rmse(errors: np.ndarray) -> tuple[float, float]:
    """Mean absolute and root-mean-square of an error array."""
    errors = np.asarray(errors, dtype=float).reshape(-1)
    return float(np.mean(np.abs(errors))), float(np.sqrt(np.mean(errors**2)))


def relative_energy_errors(predicted: np.ndarray, reference: np.ndarray, molecule: np.ndarray) -> np.ndarray:
    """(E_a − E_b)_pred − (E_a − E_b)_ref over every pair a < b of the same molecule (input units)."""
    errors = []
    residual = np.asarray(predicted, float) - np.asarray(reference, float)
    for name in np.unique(molecule):
        r = residual[molecule == name]
        a, b = np.triu_indices(len(r), 1)
        errors.append(r[a] - r[b])
    return np.concatenate(errors) if errors else np.zeros(0)


def refit_offsets(frames: Dataset, predicted: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Predicted energies plus the per-element offsets (eV) that best fit the reference.

    For models whose energies sit on another reference (another level of theory, other
    self-atomic energies): relative energies and forces are unchanged by it.
    """
    species = frames.elements
    counts = frames.composition(species)
    offsets, *_ = np.linalg.lstsq(counts, frames.energy - predicted, rcond=None)
    return predicted + counts @ offsets, {int(z): float(o) for z, o in zip(species, offsets)}


def comp6_errors(frames: Dataset, energy: np.ndarray, forces: np.ndarray | None) -> dict[str, np.ndarray]:
    """The raw error arrays (kcal/mol, kcal/mol/Å) of one dataset, for pooling across files."""
    errors = {}
    if frames.energy is not None:
        errors["energy"] = (energy - frames.energy) / KCAL_PER_MOL
        errors["relative_energy"] = relative_energy_errors(energy, frames.energy, frames.molecule) / KCAL_PER_MOL
    if frames.forces is not None and forces is not None:
        errors["force"] = ((forces - frames.forces) / KCAL_PER_MOL).reshape(-1)
    return errors


def comp6_metrics(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """``energy_mae``, ``energy_rmse``, ``relative_energy_mae``/``rmse``, ``force_mae``/``rmse``."""
    metrics = {}
    for key, values in errors.items():
        if len(values):
            mae, rmse = mae_rmse(values)
            metrics[f"{key}_mae"], metrics[f"{key}_rmse"] = mae, rmse
    return metrics
