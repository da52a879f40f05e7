"""ekd's own HDF5 format: one file, ragged arrays, units in the attributes.

Layout (``format = "ekd-frames"``, ``format_version = 1``)::

    numbers   (A,)    int      atomic numbers, conformation after conformation
    positions (A, 3)  float64  Å
    ptr       (N+1,)  int64    conformation i owns atoms ptr[i]:ptr[i+1]
    molecule  (N,)    str      molecule / group id
    energy    (N,)    float64  eV          (optional)
    forces    (A, 3)  float64  eV/Å        (optional; true forces, −dE/dx)
    stress    (N, 6)  float64  eV/Å³       (optional; Voigt xx yy zz yz xz xy, NaN for molecules)
    atom_data/<name>  (A, ...)             (optional per-atom extras)
    attrs: format, format_version, energy_unit, length_unit, force_unit, metadata (JSON)

The labels file (``ekd.data.labels``) is this format plus the teachers' arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ekd._io import atomic_path
from ekd.data.frames import Dataset
from ekd.data.formats import Reader
from ekd.errors import DataError

__all__ = ["write_ekd_h5", "read_ekd_h5", "READER", "FORMAT_VERSION", "is_hdf5"]

FORMAT_VERSION = 1
_UNITS = {"energy_unit": "eV", "length_unit": "Å", "force_unit": "eV/Å", "stress_unit": "eV/Å³"}


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (by signature)."""
    return h5py.is_hdf5(path)


def write_frames_to_group(handle: h5py.File, frames: Dataset) -> None:
    """Write the Dataset arrays and attributes into an open, empty HDF5 file."""
    handle.create_dataset("numbers", data=frames.numbers.astype(np.uint8 if frames.numbers.max(initial=0) < 256 else np.int64))
    handle.create_dataset("positions", data=frames.positions)
    handle.create_dataset("ptr", data=frames.ptr)
    handle.create_dataset("molecule", data=frames.molecule.astype(object), dtype=h5py.string_dtype())
    if frames.energy is not None:
        handle.create_dataset("energy", data=frames.energy)
    if frames.forces is not None:
        handle.create_dataset("forces", data=frames.forces)
    for name, values in frames.atom_data.items():
        handle.create_dataset(f"atom_data/{name}", data=values)
    if frames.cell is not None:
        handle.create_dataset("cell", data=frames.cell)
        handle.create_dataset("pbc", data=frames.pbc)
    if frames.stress is not None:
        handle.create_dataset("stress", data=frames.stress)
    handle.attrs.update(_UNITS)
    handle.attrs["format_version"] = FORMAT_VERSION
    handle.attrs["metadata"] = json.dumps(frames.metadata, default=str)


def write_ekd_h5(frames: Dataset, path: str | os.PathLike) -> None:
    """Write Dataset to ``path`` in ekd's HDF5 format, atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = "ekd-frames"
        write_frames_to_group(handle, frames)


def read_frames_from_group(handle: h5py.File, path: Path) -> Dataset:
    """Read the Dataset part of an ekd HDF5 file (frames or labels)."""
    version = int(handle.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: ekd format version {version}, this ekd reads version {FORMAT_VERSION}")
    missing = [k for k in ("numbers", "positions", "ptr", "molecule") if k not in handle]
    if missing:
        raise DataError(f"{path}: ekd HDF5 file lacks key(s) {', '.join(missing)}")
    optional = lambda key: handle[key][()] if key in handle else None  # noqa: E731
    return Dataset(
        numbers=handle["numbers"][()].astype(np.int64),
        positions=handle["positions"][()].astype(np.float64),
        ptr=handle["ptr"][()].astype(np.int64),
        molecule=np.asarray(handle["molecule"].asstr()[()], dtype=str),
        energy=optional("energy"),
        forces=optional("forces"),
        atom_data={k: v[()] for k, v in handle.get("atom_data", {}).items()},
        cell=optional("cell"),
        pbc=None if "pbc" not in handle else handle["pbc"][()].astype(bool),
        stress=optional("stress"),
        metadata={
            **json.loads(handle.attrs.get("metadata", "{}")),
            "source": str(path),
            "energy_key": "energy" if "energy" in handle else None,
            "force_key": "forces" if "forces" in handle else None,
            "force_sign": 1 if "forces" in handle else None,
        },
    )


def read_ekd_h5(path: Path, options=None) -> Dataset:
    """Read an ekd HDF5 frames file (a labels file has its own reader, :mod:`ekd.data.labels`)."""
    with h5py.File(path, "r") as handle:
        return read_frames_from_group(handle, path)


def has_format(path: Path, name: str) -> bool:
    """Whether ``path`` is an HDF5 file whose ``format`` attribute is ``name``."""
    if not is_hdf5(path):
        return False
    with h5py.File(path, "r") as handle:
        return handle.attrs.get("format") == name


READER = Reader("ekd", "ekd HDF5 frames file", lambda path: has_format(path, "ekd-frames"), read_ekd_h5)
