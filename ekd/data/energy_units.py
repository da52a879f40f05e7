"""Energies in another unit than they are read in, found from the data themselves.

A molecule's total energy (eV) is close to the sum of its free atoms' energies (within a few per
cent: the binding energy is small beside them). :func:`check_energy_units` compares each
conformation's energy with that sum for molecules of the elements in :data:`ATOM_ENERGY_EV`:
energies that are a known unit's factor times it (23.06 for kcal/mol, 96.49 for kJ/mol, 1/27.21
for hartree, 1000 for meV) were read in the wrong unit. Energies relative to the atoms
(atomization energies) and other elements (metals) are left alone.
"""

from __future__ import annotations

import numpy as np

from ekd.data.frames import Dataset
from ekd.errors import DataError
from ekd.units import ENERGY_UNITS

__all__ = ["ATOM_ENERGY_EV", "check_energy_units"]

#: free-atom energies, eV (wB97X/6-31G(d), the ANI-1x level; other levels differ by under 1 %)
ATOM_ENERGY_EV = {1: -13.61, 6: -1027.6, 7: -1484.4, 8: -2041.3, 9: -2712.9, 16: -10828.5, 17: -12525.0}
#: how close (relative) an energy / atoms ratio must be to a unit's factor to be read as that unit
_TOLERANCE = 0.1


def check_energy_units(frames: Dataset) -> None:
    """A DataError naming the file and the likely unit when the energies look like another unit
    than eV (every conformation of known elements), or like two units at once."""
    known = np.isin(frames.numbers, list(ATOM_ENERGY_EV))
    if frames.energy is None or not len(frames) or not known.all():
        return
    atoms = np.add.reduceat(np.vectorize(ATOM_ENERGY_EV.get)(frames.numbers), frames.ptr[:-1]) if frames.n_atoms else np.zeros(0)
    ratio = frames.energy / atoms
    units = {name: 1 / factor for name, factor in ENERGY_UNITS.items()}  # energy in that unit / energy in eV
    found = np.array([next((name for name, scale in units.items() if abs(r / scale - 1) < _TOLERANCE), "") for r in ratio])
    named = sorted(set(found) - {""})
    where = frames.metadata.get("source", "data")
    if len(named) > 1:
        counts = ", ".join(f"{np.sum(found == n)} like {n}" for n in named)
        raise DataError(f"{where}: the energies look like several units at once ({counts}): convert them to one unit first")
    if named and named[0] != "eV" and (found == named[0]).all():
        raise DataError(f"{where}: the energies look like {named[0]}, not eV (each is {units[named[0]]:.4g} times its free atoms' energy in eV): "
                        f"read them with --energy-unit {named[0]} (energy_unit) where the format takes a unit, or convert them to eV")
