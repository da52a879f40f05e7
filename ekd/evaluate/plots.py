"""Parity plots (PNG): predicted against reference relative energies and force components."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ekd._io import atomic_path
from ekd.units import KCAL_PER_MOL

__all__ = ["parity_plots"]


def _relative(energy: np.ndarray, molecule: np.ndarray) -> np.ndarray:
    """Energies relative to each molecule's mean (so molecules of any size share one axis)."""
    out = np.empty_like(energy)
    for name in np.unique(molecule):
        rows = molecule == name
        out[rows] = energy[rows] - energy[rows].mean()
    return out


def parity_plots(curves: dict, out_dir: Path) -> list[Path]:
    """One figure per dataset with an energy and (if present) a force parity panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (frames, energy, forces) in curves.items():
        panels = [("relative energy (kcal/mol)", _relative(frames.energy, frames.molecule), _relative(energy, frames.molecule))]
        if forces is not None and frames.forces is not None:
            panels.append(("force component (kcal/mol/Å)", frames.forces.reshape(-1), forces.reshape(-1)))
        figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
        for axis, (label, reference, predicted) in zip(axes[0], panels):
            reference, predicted = reference / KCAL_PER_MOL, predicted / KCAL_PER_MOL
            axis.scatter(reference, predicted, s=3, alpha=0.4)
            low, high = min(reference.min(), predicted.min()), max(reference.max(), predicted.max())
            axis.plot([low, high], [low, high], color="black", lw=0.8)
            axis.set_xlabel(f"reference {label}")
            axis.set_ylabel(f"predicted {label}")
            mae = np.mean(np.abs(predicted - reference))
            axis.set_title(f"{name}: MAE {mae:.2f}")
        figure.tight_layout()
        path = out_dir / f"parity_{name.replace('/', '_').replace(' ', '_')}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
        plt.close(figure)
        written.append(path)
    return written
