"""Plots (PNG): parity (predicted against reference relative energies and force components) and
the materials checks' errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ekd._io import atomic_path
from ekd.units import KCAL_PER_MOL

__all__ = ["materials_errors", "materials_plot", "parity_plots", "save_figure"]

#: colour and marker of each role in the materials plot
ROLE_STYLE = {"teacher ensemble": ("black", "D"), "student": ("tab:blue", "o"), "baseline": ("tab:orange", "s")}


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
        written.append(save_figure(figure, out_dir / f"parity_{name.replace('/', '_').replace(' ', '_')}.png"))
    return written


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib figure as a PNG atomically (parent folders made) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def materials_errors(materials: dict) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Property → role (``teacher ensemble``, ``student``, ``baseline``) → (system, signed error
    model − ground truth, in the property's unit), one per model and system that has the property
    (a model that failed on a system has none there), from a report's ``materials`` block."""
    truth = materials["ground_truth"]
    errors: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for prop in materials["units"]:
        by_role = {role: [(system, model[system][prop] - truth[system][prop]) for name, model in materials["models"].items() if name.startswith(role)
                          for system in truth if prop in truth[system] and prop in model.get(system, {})] for role in ROLE_STYLE}
        if any(by_role.values()):
            errors[prop] = by_role
    return errors


def materials_plot(materials: dict, path: Path) -> Path | None:
    """One panel per property: each model's error against the ground truth per system, the
    ensemble, every student and every baseline side by side (None when nothing was checked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = materials_errors(materials)
    if not errors:
        return None
    figure, axes = plt.subplots(1, len(errors), figsize=(3.4 * len(errors), 3.6), squeeze=False)
    for axis, (prop, by_role) in zip(axes[0], errors.items()):
        systems = [s for s, truth in materials["ground_truth"].items() if prop in truth]
        for offset, (role, points) in zip((-0.2, 0.0, 0.2), by_role.items()):
            color, marker = ROLE_STYLE[role]
            if points:
                axis.scatter([systems.index(s) + offset for s, _ in points], [e for _, e in points], color=color, marker=marker, s=20, alpha=0.8, label=role)
        axis.axhline(0.0, color="grey", lw=0.8)
        axis.set_xticks(range(len(systems)), systems)
        axis.set_title(prop.replace("_", " "), fontsize=10)
        axis.set_ylabel(f"model − {materials.get('level_of_theory') or 'ground truth'} ({materials['units'][prop]})")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path)
