"""Datasets larger than memory: an ekd HDF5 frames file read lazily, a batch at a time.

:func:`stream` opens a file as a :class:`StreamedDataset`. Its per-conformation arrays (offsets,
energies, molecule ids, cells, stresses and the element count of each conformation: a few tens of
bytes per conformation) are read at once; its per-atom arrays (positions, atomic numbers, forces,
extras) stay on disk and are read for the conformations a batch needs. Splits and subsets are
views (index arrays), so a training or a rank holds only the batch it works on. Make such a file
from any format with ``ekd data convert`` (:func:`ekd.data.convert`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ekd.data.frames import Dataset, PerConformation, atom_rows
from ekd.data.hdf5 import check_layout, read_molecule_codes
from ekd.data.labels import check_labels_layout
from ekd.errors import DataError
from ekd.provenance import sha256_file

__all__ = ["StreamedDataset", "stream"]

#: conformations read per pass when the element counts are made (bounds that pass's memory)
_BLOCK = 1 << 12
#: atoms read per pass when what an energy-only view reads is hashed
_ATOM_BLOCK = 1 << 20


class _File:
    """The open file behind a StreamedDataset and its views (the handle is reopened after pickling)."""

    #: a labels file's arrays behind the training view's (its forces are the teachers' mean)
    _LABELS = {"forces": "teacher_force_mean", "atom_data/force_spread": "teacher_force_spread"}

    def __init__(self, path: Path, energies: Literal["reference", "teachers"] = "reference"):
        self.path, self._handle, self.energies, self._energy_only_sha256 = path, None, energies, None
        try:
            handle = self.handle
        except OSError:
            raise DataError(f"{path}: not an HDF5 file; convert it first with 'ekd data convert {path} OUT.h5'") from None
        if handle.attrs.get("format") not in ("ekd-frames", "ekd-labels"):
            raise DataError(f"{path}: not an ekd HDF5 file; convert it first with 'ekd data convert {path} OUT.h5'")
        check_layout(handle, path)
        labels = handle.attrs["format"] == "ekd-labels"
        if labels:
            check_labels_layout(handle, path)
        elif energies != "reference":
            raise DataError(f"{path}: energies='{energies}' needs a labels file (teacher energies), this is a frames file")
        optional = lambda key: handle[key][()] if key in handle else None  # noqa: E731
        ptr = handle["ptr"][()]
        self.ptr = ptr.astype(np.int32 if ptr[-1] < 2**31 else np.int64, copy=False)  # (4 bytes per conformation where they do)
        self.molecule_names, self.molecule_codes = read_molecule_codes(handle, _BLOCK)
        self.energy, self.cell, self.stress = optional("energy"), optional("cell"), optional("stress")
        self.pbc = None if "pbc" not in handle else handle["pbc"][()].astype(bool)
        self.keys = self._LABELS if labels else {key: key for key in ["forces"] + [f"atom_data/{k}" for k in handle.get("atom_data", {})] if key in handle}
        self.per_atom = ["numbers", "positions", *self.keys]
        self.metadata = {**json.loads(handle.attrs.get("metadata", "{}")), "source": str(path), "sha256": sha256_file(path), "format": "ekd"}
        if labels:
            self.stress = self._teacher_mean("teacher_stress")
            if energies == "teachers":
                if "teacher_energy" not in handle:
                    raise DataError(f"{path}: no teacher energies recorded (labels made without them)")
                self.energy = self._teacher_mean("teacher_energy")
            self.metadata.update(labels=True, provenance=json.loads(handle.attrs["provenance"]), energy_labels=energies)
        self.species, self.counts = self._element_counts()

    def _teacher_mean(self, key: str) -> np.ndarray | None:
        """The mean over the teachers (first axis) of the per-conformation array ``key``, read a
        block of conformations at a time, or None if absent."""
        if key not in self.handle:
            return None
        stored = self.handle[key]
        return np.concatenate([stored[:, start : start + _BLOCK].mean(axis=0) for start in range(0, stored.shape[1], _BLOCK)])

    @property
    def handle(self) -> h5py.File:
        if self._handle is None:
            self._handle = h5py.File(self.path, "r", rdcc_nbytes=0)
        return self._handle

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None}

    def _element_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Elements present, and (N, S) how many atoms of each every conformation has (uint8
        where they fit), in one pass over the atomic numbers, a block of conformations at a time."""
        n = len(self.ptr) - 1
        species, table = np.zeros(0, dtype=np.int64), np.zeros((n, 0), dtype=np.uint16)
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            present, column = np.unique(self.handle["numbers"][self.ptr[start] : self.ptr[stop]], return_inverse=True)
            if not np.isin(present, species).all():  # an element not met before: a wider table
                known, narrower = species, table
                species = np.union1d(known, present).astype(np.int64)
                table = np.zeros((n, len(species)), dtype=np.uint16)
                table[:, np.searchsorted(species, known)] = narrower
            conformation = np.repeat(np.arange(stop - start), np.diff(self.ptr[start : stop + 1]))
            counts = np.bincount(conformation * len(present) + column.reshape(-1), minlength=(stop - start) * len(present))
            table[start:stop, np.searchsorted(species, present)] = counts.reshape(-1, len(present))
        return species, table.astype(np.uint8) if table.max(initial=0) < 256 else table

    def energy_only_sha256(self) -> str:
        """sha256 of what an energy-only view reads (atomic numbers, positions, offsets, energies,
        cells, pbc), one pass over the atoms the first time: a labels file's does not change with
        its teachers' forces and stresses, a frames file's not with its reference forces."""
        if self._energy_only_sha256 is None:
            digest = hashlib.sha256()
            for key in ("numbers", "positions"):
                stored = self.handle[key]
                for start in range(0, len(stored), _ATOM_BLOCK):
                    digest.update(stored[start : start + _ATOM_BLOCK].tobytes())
            for array in (self.ptr, self.energy, self.cell, self.pbc):
                if array is not None:
                    digest.update(array.tobytes())
            self._energy_only_sha256 = digest.hexdigest()
        return self._energy_only_sha256

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (increasing) of the per-atom array ``key``, read run by run."""
        dataset = self.handle[self.keys.get(key, key)]
        if not len(rows):
            return np.zeros((0, *dataset.shape[1:]), dtype=dataset.dtype)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts, stops = rows[np.r_[0, breaks]], rows[np.r_[breaks - 1, len(rows) - 1]] + 1
        return np.concatenate([dataset[a:b] for a, b in zip(starts, stops)])


class StreamedDataset(PerConformation):
    """Conformations of an ekd HDF5 file, atoms read from disk on demand (see the module).

    It offers what training needs of a :class:`Dataset`: ``len``, ``sizes``, ``energy`` (N,) eV,
    ``molecule``, ``cell``/``pbc``/``stress``, ``elements``, :meth:`composition`,
    :meth:`subset`, :meth:`split` and :meth:`without_forces` (views: nothing is read),
    :meth:`batches` and :meth:`load`
    (in-memory :class:`Dataset` parts). Its per-atom arrays are never all in memory: there is no
    ``positions`` or ``forces`` attribute.
    """

    def __init__(self, file: _File, index: np.ndarray, derivatives: bool = True):
        # indices of up to 2**31 conformations as int32 (the views of a large file are long)
        self._file, self._derivatives = file, derivatives
        self.index = np.asarray(index, dtype=np.int32 if len(file.ptr) <= 2**31 else np.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def sizes(self) -> np.ndarray:
        """(N,) number of atoms of each conformation."""
        return self._file.ptr[self.index + 1] - self._file.ptr[self.index]

    @property
    def ptr(self) -> np.ndarray:
        """(N + 1,) atom offsets of this view's conformations, as loaded (made on demand, not kept)."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __repr__(self) -> str:
        return f"StreamedDataset({self._file.path}, {len(self)} of {len(self._file.ptr) - 1} conformations)"

    def _rows(self, array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else array[self.index]

    molecule = property(lambda self: self._file.molecule_names[self._file.molecule_codes[self.index]], doc="(N,) molecule id of each conformation.")
    molecule_ids = property(lambda self: self._file.molecule_codes[self.index], doc="(N,) int32 code of each conformation's molecule.")

    @property
    def molecules(self) -> list[str]:
        """Distinct molecule ids, in order of first appearance (from the codes: no string is sorted)."""
        codes = self.molecule_ids
        _, first = np.unique(codes, return_index=True)
        return [str(self._file.molecule_names[codes[i]]) for i in np.sort(first)]
    energy = property(lambda self: self._rows(self._file.energy), doc="(N,) eV, or None.")
    cell = property(lambda self: self._rows(self._file.cell), doc="(N, 3, 3) Å, or None.")
    pbc = property(lambda self: self._rows(self._file.pbc), doc="(N, 3) bool, or None.")
    stress = property(lambda self: self._rows(self._file.stress) if self._derivatives else None, doc="(N, 6) eV/Å³ Voigt, or None.")

    @property
    def metadata(self) -> dict:
        return self._file.metadata

    @property
    def n_atoms(self) -> int:
        return int(self.sizes.sum())

    @property
    def has_forces(self) -> bool:
        return self._derivatives and "forces" in self._file.per_atom

    def without_forces(self) -> "StreamedDataset":
        """The same view with no force or stress labels and no per-atom extras (what energy-only
        training may see)."""
        return StreamedDataset(self._file, self.index, derivatives=False)

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present (from the element counts: nothing is read)."""
        return [int(z) for z in self._file.species[self._file.counts[self.index].any(axis=0)]]

    def composition(self, species: list[int], rows: slice = slice(None)) -> np.ndarray:
        """(n, S) count of each of ``species`` in each conformation of ``rows`` (consecutive
        conformations; default all): nothing is read."""
        column = {int(z): i for i, z in enumerate(self._file.species)}
        index = self.index[rows]
        counts = np.zeros((len(index), len(species)))
        for j, z in enumerate(species):
            if z in column:
                counts[:, j] = self._file.counts[index, column[z]]
        return counts

    def subset(self, index) -> "StreamedDataset":
        """The conformations at ``index`` (in that order): a view, nothing is read."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"conformation index out of range for {len(self)} conformations")
        return StreamedDataset(self._file, self.index[index % len(self) if index.size and index.min() < 0 else index], self._derivatives)

    def load(self) -> Dataset:
        """These conformations in memory (read in file order, then put in this view's order)."""
        order = np.argsort(self.index, kind="stable")
        in_file_order = atom_rows(self._file.ptr, self.index[order])
        local_ptr = np.concatenate([[0], np.cumsum(self.sizes[order])])
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        gather = atom_rows(local_ptr, position)
        keys = [key for key in self._file.per_atom if key in ("numbers", "positions") or self._derivatives]  # as Dataset.without_forces
        arrays = {key: self._file.read(key, in_file_order)[gather] for key in keys}
        return Dataset(
            numbers=arrays.pop("numbers").astype(np.int64),
            positions=arrays.pop("positions").astype(np.float64),
            ptr=self.ptr,
            molecule=self.molecule,
            energy=self.energy,
            forces=arrays.pop("forces", None),
            atom_data={key.split("/", 1)[1]: values for key, values in arrays.items()},
            metadata=self.metadata,
            cell=self.cell,
            pbc=self.pbc,
            stress=self.stress,
        )

    def sha256(self) -> str:
        """sha256 of what the view reads and of its conformations (equal views, equal
        hashes): the whole file, or for an energy-only view (:meth:`without_forces`) the
        arrays it reads, so that energy-only training on a labels file does not depend on the teachers."""
        source = self.metadata["sha256"] if self._derivatives else self._file.energy_only_sha256()
        return hashlib.sha256(f"{source} {self._file.energies} {self._derivatives}".encode() + self.index.astype(np.int64).tobytes()).hexdigest()


def stream(path: str | os.PathLike, energies: Literal["reference", "teachers"] = "reference") -> StreamedDataset:
    """Open an ekd HDF5 file (``ekd data convert`` makes one from any format) for lazy reading.

    A labels file (``ekd label``) opens as its training view, as ``Labels.read(path).dataset(energies)``
    does, less ``atom_data['teacher_forces']``: the teachers' mean forces and stress, the
    per-atom ``force_spread``, the reference energies or (``energies="teachers"``) the teachers'
    mean; the per-teacher forces are never read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    file = _File(path, energies)
    return StreamedDataset(file, np.arange(len(file.ptr) - 1))
