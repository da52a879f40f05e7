"""Error metrics in the COMP6 convention: kcal/mol and kcal/mol/Å, per conformation, not per atom."""

from __future__ import annotations

import numpy as np

from ekd.units import KCAL_PER_MOL

__all__ = ["energy_errors", "force_errors", "mae_rmse"]


def mae_rmse(errors: np.ndarray) -> tuple[float, float]:
    errors = np.asarray(errors, dtype=float).reshape(-1)
    return float(np.mean(np.abs(errors))), float(np.sqrt(np.mean(errors**2)))


def energy_errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``energy_mae`` and ``energy_rmse`` in kcal/mol from energies in eV."""
    mae, rmse = mae_rmse((np.asarray(predicted) - np.asarray(reference)) / KCAL_PER_MOL)
    return {"energy_mae": mae, "energy_rmse": rmse}


def force_errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``force_mae`` and ``force_rmse`` over Cartesian components, kcal/mol/Å, from eV/Å."""
    mae, rmse = mae_rmse((np.asarray(predicted) - np.asarray(reference)) / KCAL_PER_MOL)
    return {"force_mae": mae, "force_rmse": rmse}
