"""Extended XYZ and every other format ``ase.io`` reads, with key mapping and declared units."""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from ekd._io import atomic_path
from ekd.data.formats import Reader
from ekd.data.options import ReadOptions
from ekd.data.frames import Dataset, formula, voigt_stress
from ekd.data.hdf5 import is_hdf5
from ekd.errors import DataError
from ekd.units import energy_factor

__all__ = ["READER", "write_extxyz"]


def _lookup(atoms: Atoms, key: str, per_atom: bool):
    """A frame's value for ``key`` from ``info``/``arrays`` or the attached calculator's results."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if atoms.calc is not None and key in atoms.calc.results:
        return atoms.calc.results[key]
    return None


def _read_column(images: list[Atoms], path: Path, key: str, explicit: bool, per_atom: bool):
    values = [_lookup(atoms, key, per_atom) for atoms in images]
    missing = [i for i, v in enumerate(values) if v is None]
    if len(missing) == len(values) and not explicit:
        return None
    if missing:
        raise DataError(f"{path}: frame {missing[0]} has no '{key}' ({len(missing)} of {len(values)} frames lack it)")
    return values


def _read_ase(path: Path, options: ReadOptions) -> Dataset:
    try:
        images = ase.io.read(path, index=":")
    except Exception as error:  # ase raises many kinds for unreadable files
        raise DataError(f"{path}: ase.io cannot read it ({type(error).__name__}: {error})") from None
    if not images:
        raise DataError(f"{path}: no frames")
    energy_key, force_key = options.energy_key or "energy", options.force_key
    factor = energy_factor(options.energy_unit or "eV")
    energies = _read_column(images, path, energy_key, options.energy_key is not None, per_atom=False)
    forces = None
    if force_key != "":
        forces = _read_column(images, path, force_key or "forces", force_key is not None, per_atom=True)
    if options.molecule_key:
        molecule = _read_column(images, path, options.molecule_key, True, per_atom=False)
    elif all("molecule" in atoms.info for atoms in images):
        molecule = [atoms.info["molecule"] for atoms in images]
    else:
        molecule = [formula(atoms.numbers) for atoms in images]
    periodic = any(atoms.pbc.any() for atoms in images)
    stress = _read_stress(images, path, options) if periodic else None
    for i, atoms in enumerate(images):
        if forces is not None and np.shape(forces[i]) != (len(atoms), 3):
            raise DataError(f"{path}: frame {i} '{force_key or 'forces'}' has shape {np.shape(forces[i])}, expected ({len(atoms)}, 3)")
    sign = 1 if options.force_sign is None else options.force_sign
    return Dataset.from_arrays(
        numbers=[atoms.numbers for atoms in images],
        positions=[atoms.positions for atoms in images],
        molecule=[str(m) for m in molecule],
        energy=None if energies is None else np.array(energies, dtype=np.float64).reshape(-1) * factor,
        forces=None if forces is None else [np.asarray(f, dtype=np.float64) * factor * sign for f in forces],
        metadata={
            "source": str(path),
            "energy_key": energy_key if energies is not None else None,
            "force_key": (force_key or "forces") if forces is not None else None,
            "force_sign": sign if forces is not None else None,
            "energy_unit_in_file": options.energy_unit or "eV",
        },
        cell=np.array([atoms.cell.array for atoms in images]) if periodic else None,
        pbc=np.array([atoms.pbc for atoms in images]) if periodic else None,
        stress=None if stress is None else stress * factor,
    )


def _read_stress(images: list[Atoms], path: Path, options: ReadOptions) -> np.ndarray | None:
    """(N, 6) Voigt stresses of the periodic frames (NaN rows for molecules), in the file's energy
    unit per Å³, or None when no periodic frame has one (and no key was asked for)."""
    if options.stress_key == "":
        return None
    key = options.stress_key or "stress"
    cells = [atoms for atoms in images if atoms.pbc.any()]
    values = _read_column(cells, path, key, options.stress_key is not None, per_atom=False)
    if values is None:
        return None
    stress, k = np.full((len(images), 6), np.nan), 0
    for i, atoms in enumerate(images):
        if atoms.pbc.any():
            if np.size(values[k]) not in (6, 9):
                raise DataError(f"{path}: frame {i} '{key}' has {np.size(values[k])} values, expected 6 (Voigt) or 9 (3×3)")
            stress[i], k = voigt_stress(values[k]), k + 1
    return stress


def write_extxyz(frames: Dataset, path: str | os.PathLike) -> None:
    """Write Dataset as extended XYZ (energy in eV, forces in eV/Å, stress in eV/Å³), atomically."""
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames.to_atoms(), format="extxyz")


def _detect(path: Path) -> bool:
    return not is_hdf5(path)


READER = Reader(
    "ase",
    "extended XYZ or any format ase.io reads (declare --energy-unit; default eV)",
    _detect,
    _read_ase,
    frozenset({"energy_key", "force_key", "force_sign", "energy_unit", "molecule_key", "stress_key"}),
)
