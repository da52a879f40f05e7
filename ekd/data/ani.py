"""Readers for the HDF5 layouts of the ANI-era data releases (energies in Hartree, Å).

- ``pyanitools``: ANI-1 and COMP6. Nested groups; a group holding ``species`` (1-byte symbols)
  and ``coordinates`` (Nc, Na, 3) is one molecule. The arrays stored under ``forces`` in this
  layout are gradients dE/dx, so the reader negates them (``force_sign`` overrides).
- ``ani1x``: ANI-1x / ANI-1ccx releases. One group per formula with ``atomic_numbers`` and
  properties keyed ``<method>.<property>``; NaN marks "not computed", so conformations missing
  the selected energy or force key are dropped.
- ``ani2x``: ANI-2x release grouped by atom count (``/002/species`` (Nc, Na) atomic numbers);
  true forces.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from ase.data import atomic_numbers

from ekd.data.frames import Dataset, formula
from ekd.data.formats import BlockReader, Reader
from ekd.data.options import ReadOptions
from ekd.errors import DataError
from ekd.units import energy_factor

__all__ = ["READERS"]

_KEY_OPTIONS = frozenset({"energy_key", "force_key", "force_sign", "energy_unit"})
#: levels of theory of the method prefixes used in the ANI-1x / ANI-1ccx releases
ANI1X_LEVELS = {
    "wb97x_dz": "wB97X/6-31G(d)",
    "wb97x_tz": "wB97X/def2-TZVPP",
    "ccsd(t)_cbs": "CCSD(T)*/CBS",
    "hf_dz": "HF/cc-pVDZ",
    "hf_tz": "HF/cc-pVTZ",
    "hf_qz": "HF/cc-pVQZ",
}


class _Blocks:
    """Turns one molecule's (Nc, Na) arrays at a time into a Dataset block in eV/Å."""

    def __init__(self, path: Path, energy_unit: str, force_sign: int, metadata: dict):
        self.path, self.factor, self.sign, self.metadata = path, energy_factor(energy_unit), force_sign, metadata

    def block(self, name: str, numbers: np.ndarray, coordinates, energy, forces) -> Dataset:
        coordinates = np.asarray(coordinates, dtype=np.float64)
        if coordinates.ndim != 3 or coordinates.shape[2] != 3:
            raise DataError(f"{self.path}: '{name}/coordinates' has shape {coordinates.shape}, expected (Nc, Na, 3)")
        n_conf, n_atoms = coordinates.shape[:2]
        if np.shape(energy) != (n_conf,):
            raise DataError(f"{self.path}: '{name}' energies have shape {np.shape(energy)}, expected ({n_conf},)")
        if forces is not None and np.shape(forces) != coordinates.shape:
            raise DataError(f"{self.path}: '{name}' forces have shape {np.shape(forces)}, expected {coordinates.shape}")
        return Dataset(
            numbers=np.broadcast_to(numbers, (n_conf, n_atoms)).reshape(-1).astype(np.int64),
            positions=coordinates.reshape(-1, 3),
            ptr=np.arange(n_conf + 1, dtype=np.int64) * n_atoms,
            molecule=np.full(n_conf, name),
            energy=np.asarray(energy, dtype=np.float64) * self.factor,
            forces=None if forces is None else np.asarray(forces, np.float64).reshape(-1, 3) * self.sign * self.factor,
            metadata={**self.metadata, "source": f"{self.path}, group '{name}'"},  # named in errors, with the keys
        )


def whole(blocks: BlockReader, path: Path, options: ReadOptions) -> Dataset:
    """The whole file from a block reader: its blocks joined, with the metadata it filled in."""
    metadata: dict = {}
    parts = list(blocks(path, options, metadata))
    if not parts:
        raise DataError(f"{path}: no conformations with the selected keys")
    return dataclasses.replace(Dataset.concatenate(parts), metadata={**metadata, "source": str(path)})


def _require(group: h5py.Group, key: str, path: Path, what: str = "key") -> h5py.Dataset:
    if key not in group:
        available = ", ".join(sorted(k for k in group if isinstance(group[k], h5py.Dataset)))
        raise DataError(f"{path}: group '{group.name}' has no {what} '{key}'; available: {available}")
    return group[key]


# pyanitools (ANI-1, COMP6) ---------------------------------------------------------------------
def _molecule_groups(handle: h5py.File) -> list[h5py.Group]:
    found = []
    handle.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Group) and "species" in obj and "coordinates" in obj else None)
    return found


def _detect_pyanitools(path: Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as handle:
        groups = _molecule_groups(handle)
        return bool(groups) and groups[0]["species"].ndim == 1 and groups[0]["species"].dtype.kind == "S"


def _pyanitools_blocks(path: Path, options: ReadOptions, metadata: dict) -> Iterator[Dataset]:
    energy_key = options.energy_key or "energies"
    sign = -1 if options.force_sign is None else options.force_sign
    blocks = _Blocks(path, options.energy_unit or "Ha", sign, metadata)
    levels = set()
    with h5py.File(path, "r") as handle:
        groups = _molecule_groups(handle)
        force_key = options.force_key
        if force_key is None:
            force_key = "forces" if all("forces" in g for g in groups) else ""
        metadata.update(energy_key=energy_key, force_key=force_key or None, force_sign=sign if force_key else None)
        for group in groups:
            species = [s.decode() for s in group["species"][()]]
            unknown = sorted(set(species) - set(atomic_numbers))
            if unknown:
                raise DataError(f"{path}: group '{group.name}' has unknown element symbol(s) {unknown}")
            numbers = np.array([atomic_numbers[s] for s in species])
            forces = _require(group, force_key, path)[()] if force_key else None
            yield blocks.block(group.name.lstrip("/"), numbers, group["coordinates"][()], _require(group, energy_key, path)[()], forces)
            if "lot" in group:
                levels.add(group["lot"][()].reshape(-1)[0].decode())
    metadata["level_of_theory"] = ", ".join(sorted(levels)) or None


# ANI-1x / ANI-1ccx flat layout -------------------------------------------------------------------
def _detect_ani1x(path: Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as handle:
        first = next(iter(handle.values()), None)
        return isinstance(first, h5py.Group) and "atomic_numbers" in first and "coordinates" in first


def _ani1x_blocks(path: Path, options: ReadOptions, metadata: dict) -> Iterator[Dataset]:
    energy_key = options.energy_key or "wb97x_dz.energy"
    method = energy_key.rsplit(".", 1)[0]
    sign = 1 if options.force_sign is None else options.force_sign
    blocks = _Blocks(path, options.energy_unit or "Ha", sign, metadata)
    with h5py.File(path, "r") as handle:
        groups = list(handle.values())
        if not any(energy_key in g for g in groups):
            keys = sorted({k for g in groups for k in g if k.endswith("energy")})
            raise DataError(f"{path}: no energy key '{energy_key}'; available: {', '.join(keys)}")
        force_key = options.force_key
        if force_key is None:
            force_key = f"{method}.forces" if any(f"{method}.forces" in g for g in groups) else ""
        elif force_key and not any(force_key in g for g in groups):
            keys = sorted({k for g in groups for k in g if k.endswith("forces")})
            raise DataError(f"{path}: no force key '{force_key}'; available: {', '.join(keys) or 'none'}")
        metadata.update(energy_key=energy_key, force_key=force_key or None, force_sign=sign if force_key else None,
                        level_of_theory=ANI1X_LEVELS.get(method, method))
        for group in groups:
            if energy_key not in group or (force_key and force_key not in group):
                continue
            energy = group[energy_key][()]
            forces = group[force_key][()] if force_key else None
            keep = np.isfinite(energy)
            if forces is not None:
                keep &= np.isfinite(forces).all(axis=(1, 2))
            if keep.any():
                yield blocks.block(group.name.lstrip("/"), _require(group, "atomic_numbers", path)[()], group["coordinates"][keep], energy[keep],
                                   None if forces is None else forces[keep])


# ANI-2x grouped by atom count --------------------------------------------------------------------
def _detect_ani2x(path: Path) -> bool:
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as handle:
        first = next(iter(handle.values()), None)
        return isinstance(first, h5py.Group) and "species" in first and first["species"].ndim == 2


def _ani2x_blocks(path: Path, options: ReadOptions, metadata: dict) -> Iterator[Dataset]:
    energy_key = options.energy_key or "energies"
    sign = 1 if options.force_sign is None else options.force_sign
    blocks = _Blocks(path, options.energy_unit or "Ha", sign, metadata)
    with h5py.File(path, "r") as handle:
        groups = list(handle.values())
        force_key = options.force_key
        if force_key is None:
            force_key = "forces" if all("forces" in g for g in groups) else ""
        metadata.update(energy_key=energy_key, force_key=force_key or None, force_sign=sign if force_key else None,
                        level_of_theory="wB97X/6-31G(d)")
        for group in groups:
            species = _require(group, "species", path)[()]
            coordinates, energy = _require(group, "coordinates", path)[()], _require(group, energy_key, path)[()]
            forces = _require(group, force_key, path)[()] if force_key else None
            if species.shape != coordinates.shape[:2]:
                raise DataError(f"{path}: '{group.name}/species' has shape {species.shape}, expected {coordinates.shape[:2]}")
            # one molecule id per composition; conformations keep their own atom order
            names = np.array([f"{group.name.lstrip('/')}/{formula(z)}" for z in species])
            for name in np.unique(names):
                rows = names == name
                for order in np.unique(species[rows], axis=0):
                    same = rows & np.all(species == order, axis=1)
                    yield blocks.block(str(name), order, coordinates[same], energy[same], None if forces is None else forces[same])


def _reader(name: str, description: str, detect, blocks: BlockReader) -> Reader:
    return Reader(name, description, detect, functools.partial(whole, blocks), _KEY_OPTIONS, blocks)


READERS = (
    _reader("ani2x", "ANI-2x release, grouped by atom count", _detect_ani2x, _ani2x_blocks),
    _reader("ani1x", "ANI-1x / ANI-1ccx release, one group per formula", _detect_ani1x, _ani1x_blocks),
    _reader("pyanitools", "ANI-1 / COMP6 nested layout (stored forces are gradients)", _detect_pyanitools, _pyanitools_blocks),
)
