"""What ``ekd data info`` reports about a dataset file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from ase.data import chemical_symbols

from ekd.data.force_sign import measure_force_sign
from ekd.data.frames import Dataset

__all__ = ["available_keys", "summarize"]


def available_keys(path: Path) -> list[str]:
    """Names of the arrays stored in a file (HDF5 dataset names, or extxyz info/arrays keys)."""
    if h5py.is_hdf5(path):
        names = set()
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, obj: names.add(name.rsplit("/", 1)[-1]) if isinstance(obj, h5py.Dataset) else None)
        return sorted(names)
    import ase.io

    first = ase.io.read(path, index=0)
    keys = set(first.info) | set(first.arrays)
    if first.calc is not None:
        keys |= set(first.calc.results)
    return sorted(keys)


def summarize(frames: Dataset, path: Path) -> dict:
    """A JSON-ready summary: counts, elements, sizes, keys, units, energy range and sign check."""
    sign = measure_force_sign(frames)
    meta = frames.metadata
    summary = {
        "path": str(path),
        "format": meta.get("format"),
        "sha256": meta.get("sha256"),
        "n_conformations": len(frames),
        "n_molecules": len(frames.molecules),
        "elements": [chemical_symbols[z] for z in frames.elements],
        "atoms_min": int(frames.sizes.min()),
        "atoms_max": int(frames.sizes.max()),
        "has_energies": frames.energy is not None,
        "has_forces": frames.forces is not None,
        "energy_key": meta.get("energy_key"),
        "force_key": meta.get("force_key"),
        "force_sign": meta.get("force_sign"),
        "level_of_theory": meta.get("level_of_theory"),
        "available_keys": available_keys(path),
        "n_periodic": int(frames.periodic.sum()),
        "periodic_axes": {" ".join("T" if a else "F" for a in axes): int(n) for axes, n in zip(*np.unique(frames.periodic_axes[frames.periodic], axis=0, return_counts=True))},
        "has_stress": frames.stress is not None,
        "units": {"positions": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å³"},
        "force_sign_check": {"slope": None if np.isnan(sign.slope) else sign.slope, "n_pairs": sign.n_pairs, "verdict": sign.verdict},
    }
    if frames.energy is not None:
        summary["energy_min_eV"] = float(frames.energy.min())
        summary["energy_max_eV"] = float(frames.energy.max())
    return summary
