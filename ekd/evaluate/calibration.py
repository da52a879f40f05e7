"""Calibration: how well the teachers' force spread predicts a model's true force error.

Per atom, the spread is the root mean square deviation of the members' forces from their mean
(:attr:`ekd.ensemble.EnsemblePrediction.force_spread`) and the error the length of the model's
force error against the reference; per conformation both are averaged over its atoms. Reported:
Spearman's rank correlation (1: the spread orders the errors perfectly; 0: it says nothing) and
the mean error in bins of equal counts along the spread, in kcal/mol/Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ekd.data import Dataset
from ekd.evaluate.plots import save_figure
from ekd.units import KCAL_PER_MOL

__all__ = ["calibration_plot", "force_calibration", "spearman"]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two (n,) arrays (ties ranked in order: continuous data)."""
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    return float(np.corrcoef(rank(np.asarray(x)), rank(np.asarray(y)))[0, 1])


def _binned(spread: np.ndarray, error: np.ndarray, bins: int) -> list[dict]:
    """Mean spread and error (kcal/mol/Å) in ``bins`` bins of equal counts along the spread."""
    order = np.argsort(spread, kind="stable")
    return [{"spread": float(spread[part].mean() / KCAL_PER_MOL), "error": float(error[part].mean() / KCAL_PER_MOL), "n": int(len(part))}
            for part in np.array_split(order, min(bins, len(order))) if len(part)]


def force_calibration(frames: Dataset, spread: np.ndarray, forces: dict[str, np.ndarray], bins: int = 8) -> dict[str, dict]:
    """How well ``spread`` predicts each model's force error on ``frames`` (which has reference forces).

    Args:
        spread: (A,) eV/Å, the teachers' force spread per atom.
        forces: model name → its predicted forces (A, 3) eV/Å.
    Returns model → ``{"per_atom": {"spearman", "bins"}, "per_conformation": {...}}``; bins hold
    the mean spread and error (kcal/mol/Å) and the count.
    """
    if frames.forces is None:
        raise ValueError("calibration needs reference forces")
    index, counts = frames.conformation_index, np.maximum(frames.sizes, 1)
    per_conformation = lambda values: np.bincount(index, weights=values, minlength=len(frames)) / counts  # noqa: E731
    result = {}
    for name, predicted in forces.items():
        error = np.linalg.norm(predicted - frames.forces, axis=-1)
        levels = {"per_atom": (spread, error), "per_conformation": (per_conformation(spread), per_conformation(error))}
        result[name] = {level: {"spearman": spearman(s, e), "bins": _binned(s, e, bins)} for level, (s, e) in levels.items()}
    return result


def calibration_plot(calibration: dict[str, dict], path: Path, title: str) -> Path:
    """Mean true force error against the teachers' spread, per atom and per conformation (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
    for axis, level in zip(axes, ("per_atom", "per_conformation")):
        highest = 0.0
        for name, result in calibration.items():
            bins = result[level]["bins"]
            spreads, errors = [b["spread"] for b in bins], [b["error"] for b in bins]
            axis.plot(spreads, errors, marker="o", label=f"{name} (ρ = {result[level]['spearman']:.2f})")
            highest = max(highest, *spreads, *errors)
        axis.plot([0, highest], [0, highest], color="black", lw=0.8, ls="--")
        axis.set_xlabel("teachers' force spread (kcal/mol/Å)")
        axis.set_ylabel("mean force error (kcal/mol/Å)")
        axis.set_title(f"{title}: {level.replace('_', ' ')}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)
