"""Score a model or ensemble on several datasets, per dataset and pooled over all of them; for
periodic data also in meV/atom, meV/Å and GPa."""

from __future__ import annotations

from pathlib import Path


from ekd.data import Dataset
from ekd.evaluate.comp6 import comp6_errors, comp6_metrics, refit_offsets
from ekd.evaluate.materials import materials_metrics

__all__ = ["evaluate"]


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
