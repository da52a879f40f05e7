"""ekd's own HDF5 format: one file, ragged arrays, units in the attributes.

Layout (``format = "ekd-frames"``, ``format_version = 2``)::

    numbers   (A,)    int      atomic numbers, conformation after conformation
    positions (A, 3)  float64  Å
    ptr       (N+1,)  int64    conformation i owns atoms ptr[i]:ptr[i+1]
    molecule  (N,)    int32    index of each conformation's molecule / group id in molecule_names
    molecule_names (M,) str    the distinct molecule / group ids
    energy    (N,)    float64  eV          (optional)
    forces    (A, 3)  float64  eV/Å        (optional; true forces, −dE/dx)
    stress    (N, 6)  float64  eV/Å³       (optional; Voigt xx yy zz yz xz xy, NaN for molecules)
    atom_data/<name>  (A, ...)             (optional per-atom extras)
    attrs: format, format_version, energy_unit, length_unit, force_unit, metadata (JSON)

Version 1 files (the ids stored as strings, conformation by conformation) are still read. Version 2
stores each id once: reading millions of variable-length strings costs time, and memory that the
HDF5 library keeps (about 12 MiB for 300,000 conformations, measured).

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

__all__ = ["FORMAT_VERSION", "READER", "FramesWriter", "is_hdf5", "read_ekd_h5", "write_ekd_h5"]

FORMAT_VERSION = 2
#: format versions this ekd reads
_READS = (1, 2)
#: bytes per chunk of a stored array: what one random read of a few conformations costs
_CHUNK_BYTES = 1 << 16
_UNITS = {"energy_unit": "eV", "length_unit": "Å", "force_unit": "eV/Å", "stress_unit": "eV/Å³"}


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (by signature)."""
    return h5py.is_hdf5(path)


class FramesWriter:
    """Appends Dataset blocks to an open, empty HDF5 file in ekd's layout (resizable, chunked
    arrays), so that a file larger than memory is written one block at a time.

    Every block must carry the same labels (energies, forces, extras) as the first; cells,
    pbc and stresses are filled in (zeros, False, NaN) for blocks without them.
    """

    #: per-conformation arrays a block may lack, and what stands in for them
    _FILLED = {"cell": lambda n: np.zeros((n, 3, 3)), "pbc": lambda n: np.zeros((n, 3), dtype=bool), "stress": lambda n: np.full((n, 6), np.nan)}

    def __init__(self, handle: h5py.File):
        self.handle, self.conformations, self.atoms, self.labels = handle, 0, 0, None
        self.molecule_codes: dict[str, int] = {}

    def append(self, frames: Dataset) -> None:
        """Add ``frames``'s conformations after those written so far."""
        labels = (frames.energy is not None, frames.forces is not None, sorted(frames.atom_data))
        if self.labels is not None and labels != self.labels:
            raise DataError(f"{frames.metadata.get('source', 'data')}: a block with (energies, forces, extras) {labels}, "
                            f"the blocks before it had {self.labels}")
        self.labels = labels
        if not self.conformations:
            extend(self.handle, "ptr", np.zeros(1, dtype=np.int64))
        extend(self.handle, "numbers", frames.numbers.astype(np.uint8 if frames.numbers.max(initial=0) < 256 else np.int64))
        extend(self.handle, "positions", frames.positions)
        extend(self.handle, "ptr", frames.ptr[1:] + self.atoms)
        names, inverse = np.unique(frames.molecule, return_inverse=True)
        codes = np.array([self.molecule_codes.setdefault(str(name), len(self.molecule_codes)) for name in names], dtype=np.int32)
        extend(self.handle, "molecule", codes[inverse.reshape(-1)])
        for key, values in (("energy", frames.energy), ("forces", frames.forces), *((f"atom_data/{k}", v) for k, v in frames.atom_data.items())):
            if values is not None:
                extend(self.handle, key, values)
        periodic = {"cell": frames.cell, "pbc": frames.pbc, "stress": frames.stress}
        for key, values in periodic.items():
            if values is not None or key in self.handle:
                if key not in self.handle and self.conformations:
                    extend(self.handle, key, self._FILLED[key](self.conformations))
                extend(self.handle, key, values if values is not None else self._FILLED[key](len(frames)))
        self.conformations += len(frames)
        self.atoms += frames.n_atoms

    def finish(self, metadata: dict) -> None:
        """Write the units, version and ``metadata`` (after the last block)."""
        self.handle.create_dataset("molecule_names", data=np.array(list(self.molecule_codes), dtype=object), dtype=h5py.string_dtype())
        self.handle.attrs.update(_UNITS)
        self.handle.attrs["format_version"] = FORMAT_VERSION
        self.handle.attrs["metadata"] = json.dumps(metadata, default=str)


def extend(handle: h5py.File, key: str, values: np.ndarray, axis: int = 0) -> None:
    """Append ``values`` to the array ``key`` of ``handle`` along ``axis`` (created resizable and
    chunked, about 64 KiB a chunk, on first use)."""
    if key not in handle:
        shape = list(values.shape)
        rows = max(1, _CHUNK_BYTES // max(values.take([0], axis=axis).nbytes if shape[axis] else 8, 8))
        shape[axis] = 0
        maxshape = [None if k == axis else n for k, n in enumerate(shape)]
        chunks = [rows if k == axis else n for k, n in enumerate(values.shape)]
        handle.create_dataset(key, shape=shape, maxshape=maxshape, chunks=tuple(chunks), dtype=values.dtype)
    dataset = handle[key]
    start = dataset.shape[axis]
    dataset.resize(start + values.shape[axis], axis=axis)
    dataset[(slice(None),) * axis + (slice(start, None),)] = values


def write_ekd_h5(frames: Dataset, path: str | os.PathLike) -> None:
    """Write Dataset to ``path`` in ekd's HDF5 format, atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = "ekd-frames"
        writer = FramesWriter(handle)
        writer.append(frames)
        writer.finish(frames.metadata)


def check_layout(handle: h5py.File, path: Path) -> None:
    """Raise a DataError unless ``handle`` is an ekd HDF5 file of a version this ekd reads."""
    version = int(handle.attrs.get("format_version", -1))
    if version not in _READS:
        raise DataError(f"{path}: ekd format version {version}, this ekd reads versions {', '.join(map(str, _READS))}")
    required = ("numbers", "positions", "ptr", "molecule") + (("molecule_names",) if version > 1 else ())
    missing = [k for k in required if k not in handle]
    if missing:
        raise DataError(f"{path}: ekd HDF5 file lacks key(s) {', '.join(missing)}")


def read_molecule_codes(handle: h5py.File, block: int = 1 << 12) -> tuple[np.ndarray, np.ndarray]:
    """The distinct molecule ids (M,) str and each conformation's index into them (N,) int32.

    A version 1 file (ids stored per conformation) is read ``block`` conformations at a time."""
    if "molecule_names" in handle:
        return np.asarray(handle["molecule_names"].asstr()[()], dtype=str), handle["molecule"][()].astype(np.int32)
    stored, names = handle["molecule"].asstr(), {}
    codes = np.empty(len(stored), dtype=np.int32)
    for start in range(0, len(codes), block):
        distinct, inverse = np.unique(np.asarray(stored[start : start + block], dtype=str), return_inverse=True)
        codes[start : start + len(inverse)] = np.array([names.setdefault(str(n), len(names)) for n in distinct], dtype=np.int32)[inverse.reshape(-1)]
    return np.array(list(names), dtype=str), codes


def read_frames_from_group(handle: h5py.File, path: Path) -> Dataset:
    """Read the Dataset part of an ekd HDF5 file (frames or labels)."""
    check_layout(handle, path)
    optional = lambda key: handle[key][()] if key in handle else None  # noqa: E731
    names, codes = read_molecule_codes(handle)
    return Dataset(
        numbers=handle["numbers"][()].astype(np.int64),
        positions=handle["positions"][()].astype(np.float64),
        ptr=handle["ptr"][()].astype(np.int64),
        molecule=names[codes],
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
