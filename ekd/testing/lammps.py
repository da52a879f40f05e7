"""Helpers for checking an exported model in a library's LAMMPS route without LAMMPS: the box as
LAMMPS holds it, and ekd's stress as the virial LAMMPS adds up."""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ["lammps_box", "lammps_virial"]


def lammps_box(atoms: Atoms) -> Atoms:
    """``atoms`` as LAMMPS holds them: the cell rotated to LAMMPS's lower-triangular form (a along
    x, b in the xy plane; ``domain->h``) and the atoms wrapped into it (periodic axes)."""
    atoms = atoms.copy()
    cell, rotation = atoms.cell.standard_form()  # cell @ rotation = the old cell
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions = atoms.positions @ rotation.T
    atoms.wrap()
    return atoms


def lammps_virial(stress: np.ndarray, volume: float) -> np.ndarray:
    """(3, 3) eV: the virial −∂E/∂ε that LAMMPS (and MACE's and nequip's LAMMPS models) add up,
    from ekd's (ASE's) Voigt stress (xx, yy, zz, yz, xz, xy) = (1/V) ∂E/∂ε in eV/Å³."""
    xx, yy, zz, yz, xz, xy = stress
    return -np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) * volume
