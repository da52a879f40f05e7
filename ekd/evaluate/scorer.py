"""Score a model or ensemble on several datasets, per dataset and pooled over all of them; for
periodic data also in meV/atom, meV/Å and GPa."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ekd.data import Dataset
from ekd.data.frames import PerConformation
from ekd.evaluate.comp6 import ErrorSums, comp6_errors, comp6_metrics, refit_offsets
from ekd.evaluate.materials import materials_metrics
from ekd.units import KCAL_PER_MOL

__all__ = ["evaluate", "evaluate_streamed"]


def evaluate(predictor, datasets: dict[str, Dataset], refit: bool = False, plot_dir: str | Path | None = None, predictions: dict | None = None) -> dict:
    """COMP6 metrics of ``predictor`` on each dataset and over all (``"all"``), kcal/mol(/Å); on
a dataset with periodic conformations also their :func:`materials_metrics` (meV/atom, meV/Å, GPa).

    Args:
        predictor: an :class:`ekd.model.Model` or :class:`ekd.ensemble.Ensemble`.
        datasets: name → frames with reference energies (and forces, if forces are scored).
        refit: add least-squares per-element offsets to the predicted energies of each dataset
            first (for models on another energy reference); the offsets are reported.
        plot_dir: write energy and force parity plots (PNG) there.
        predictions: if given, filled with dataset name → the predictor's prediction (for
            further use without predicting again).
    """
    results, pooled, curves = {}, {}, {}
    for name, frames in datasets.items():
        periodic = bool(frames.periodic.any())
        stress = {"stress": True} if periodic and frames.stress is not None else {}  # asked only of periodic data with stresses
        prediction = predictor.predict(frames, forces=frames.forces is not None, **stress)
        if predictions is not None:
            predictions[name] = prediction
        energy = prediction.energy
        entry = {"n_conformations": len(frames), "n_molecules": len(frames.molecules)}
        if refit and frames.energy is not None:
            energy, offsets = refit_offsets(frames, energy)
            entry["refit_offsets_eV"] = {str(z): o for z, o in offsets.items()}
        errors = comp6_errors(frames, energy, prediction.forces)
        entry.update(comp6_metrics(errors))
        if periodic:
            entry.update(materials_metrics(frames, energy, prediction.forces, getattr(prediction, "stress", None)))
        results[name] = entry
        for key, sums in errors.items():
            pooled[key] = pooled[key] + sums if key in pooled else sums
        curves[name] = (frames, energy, prediction.forces)
    if len(datasets) > 1:
        results["all"] = comp6_metrics(pooled)
    if plot_dir is not None:
        from ekd.evaluate.plots import parity_plots

        parity_plots(curves, Path(plot_dir))
    return results


def evaluate_streamed(predictor, frames: PerConformation, block: int = 4096, refit: bool = False) -> dict:
    """:func:`evaluate`'s scores of one dataset larger than memory (a streamed one; any
    :class:`PerConformation`), predicted ``block`` conformations at a time: only per-conformation
    arrays (energies, stresses) are held whole, the force errors are summed block by block;
    ``refit`` as in :func:`evaluate` (it needs only the per-conformation energies)."""
    energies, stresses = [], []
    force = periodic_force = ErrorSums(0, 0.0, 0.0)  # kcal/mol/Å; eV/Å of periodic conformations' atoms
    for _, part in frames.blocks(block):
        stress = {"stress": True} if part.periodic.any() and part.stress is not None else {}
        prediction = predictor.predict(part, forces=part.forces is not None, **stress)
        energies.append(prediction.energy)
        stresses.append(getattr(prediction, "stress", None) if stress else np.full((len(part), 6), np.nan))
        if part.forces is not None:
            error = prediction.forces - part.forces
            force = force + ErrorSums.of(error / KCAL_PER_MOL)
            periodic_force = periodic_force + ErrorSums.of(error[part.periodic[part.conformation_index]])
    energy = np.concatenate(energies) if energies else np.zeros(0)
    entry = {"n_conformations": len(frames), "n_molecules": len(frames.molecules)}
    if refit and frames.energy is not None:
        energy, offsets = refit_offsets(frames, energy)
        entry["refit_offsets_eV"] = {str(z): o for z, o in offsets.items()}
    errors = comp6_errors(frames, energy, None) | ({"force": force} if force.count else {})
    entry.update(comp6_metrics(errors))
    if frames.periodic.any():
        entry.update(materials_metrics(frames, energy, None, np.concatenate(stresses)))
        if periodic_force.count:
            entry["force_mae_meV"] = periodic_force.mae_rmse()[0] * 1000
    return entry
