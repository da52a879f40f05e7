"""The labels file: the HDF5 contract between the teach, label and student stages.

It is an ekd HDF5 frames file (``ekd.data.hdf5``) with ``format = "ekd-labels"``,
``labels_format_version = 1`` and no bare ``forces`` (the reference forces, if any, are held-out
truth and never written here), plus::

    teacher_forces        (T, A, 3) float64  eV/Å   each teacher's −dE/dx
    teacher_force_mean    (A, 3)    float64  eV/Å   ensemble mean: the student's force labels
    teacher_force_spread  (A,)      float64  eV/Å   per-atom spread: sqrt(mean_t |F_t − F_mean|²)
    teacher_energy        (T, N)    float64  eV     each teacher's energy (optional)
    teacher_stress        (T, N, 6) float64  eV/Å³  each teacher's stress, Voigt (optional; periodic
                                                    data; NaN rows for molecules)
    attrs["provenance"]   JSON: teachers (backend, spec, checkpoint sha256, seed, published source),
                          teachers left out (name, reason),
                          package versions, source data path and sha256, config, created (UTC)

:class:`Labels` is the object; ``Labels.read(path).dataset()`` (or ``ekd.data.read``) gives the
training view: a :class:`Dataset` whose ``forces`` (and ``stress``, for periodic data) are the
teacher mean and whose ``atom_data["force_spread"]`` is the spread.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ekd._io import atomic_path
from ekd.data.frames import Dataset
from ekd.data.formats import Reader
from ekd.data.hdf5 import FramesWriter, extend, has_format, read_frames_from_group
from ekd.errors import DataError
from ekd.provenance import package_versions, sha256_source

__all__ = ["LABELS_FORMAT_VERSION", "READER", "Labels", "LabelsWriter", "TeacherRecord", "ensemble_statistics", "read_labels", "read_provenance"]

#: layout version of the labels file (attribute ``labels_format_version``)
LABELS_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TeacherRecord:
    """Where one teacher came from: its backend, spec, checkpoint hash and seed, and for a member
    of a published ensemble its ``source`` (name, level of theory, sha256 of its files)."""

    backend: str
    spec: str
    checkpoint_sha256: str | None
    seed: int | None = None
    source: dict | None = None


def ensemble_statistics(teacher_forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (A, 3) and per-atom spread (A,) of teacher forces (T, A, 3).

    The spread is the root-mean-square distance of the teachers' force vectors from their mean.
    """
    mean = teacher_forces.mean(axis=0)
    spread = np.sqrt(((teacher_forces - mean) ** 2).sum(axis=-1).mean(axis=0))
    return mean, spread


@dataclasses.dataclass(frozen=True, eq=False)
class Labels:
    """A teacher ensemble's labels of a dataset.

    Attributes:
        data: the labelled conformations with their reference energies (eV) when the data had
            them; never their reference forces.
        member_forces: (T, A, 3) eV/Å, each teacher's forces, atoms in ``data`` order.
        teachers: one record per teacher (same order).
        member_energy: (T, N) eV, each teacher's energies, or None.
        member_stress: (T, N, 6) eV/Å³, each teacher's stress (Voigt, NaN rows for molecules),
            or None.
        left_out: teachers not used, each ``{"name", "reason"}``.
        provenance: how the labels were made (source data and sha256, versions, config, created).
        teachers_trained_on: the (train, validation) conformations the teachers were trained
            and selected on, when labelled in this process (not written to the file).
    """

    data: Dataset
    member_forces: np.ndarray
    teachers: list[TeacherRecord]
    member_energy: np.ndarray | None = None
    left_out: list[dict] = dataclasses.field(default_factory=list)
    provenance: dict = dataclasses.field(default_factory=dict)
    member_stress: np.ndarray | None = None
    teachers_trained_on: tuple | None = dataclasses.field(default=None, repr=False)  # (train, validation) datasets; not in the file

    def __post_init__(self) -> None:
        where = self.data.metadata.get("source", "labels")
        if np.shape(self.member_forces) != (len(self.teachers), self.data.n_atoms, 3):
            raise DataError(f"{where}: teacher forces shape {np.shape(self.member_forces)}, expected ({len(self.teachers)}, {self.data.n_atoms}, 3)")
        if self.member_energy is not None and np.shape(self.member_energy) != (len(self.teachers), len(self.data)):
            raise DataError(f"{where}: teacher energy shape {np.shape(self.member_energy)}, expected ({len(self.teachers)}, {len(self.data)})")
        if self.member_stress is not None and np.shape(self.member_stress) != (len(self.teachers), len(self.data), 6):
            raise DataError(f"{where}: teacher stress shape {np.shape(self.member_stress)}, expected ({len(self.teachers)}, {len(self.data)}, 6)")

    @property
    def mean_forces(self) -> np.ndarray:
        """(A, 3) eV/Å: the ensemble-mean forces, the student's force labels."""
        return self.member_forces.mean(axis=0)

    @property
    def force_spread(self) -> np.ndarray:
        """(A,) eV/Å: per-atom spread of the teachers' forces (see :func:`ensemble_statistics`)."""
        return ensemble_statistics(self.member_forces)[1]

    @property
    def mean_energy(self) -> np.ndarray | None:
        """(N,) eV: the teachers' mean energies, or None when they were not recorded."""
        return None if self.member_energy is None else self.member_energy.mean(axis=0)

    @property
    def mean_stress(self) -> np.ndarray | None:
        """(N, 6) eV/Å³: the teachers' mean stress (NaN rows for molecules), or None."""
        return None if self.member_stress is None else self.member_stress.mean(axis=0)

    @property
    def source_sha256(self) -> str | None:
        """sha256 naming the data the labels were made from (see :func:`sha256_source`)."""
        return self.provenance.get("source_sha256")

    def dataset(self, energies: Literal["reference", "teachers"] = "reference") -> Dataset:
        """The training view: teacher-mean forces (eV/Å) and stress (eV/Å³, when recorded),
        ``atom_data['force_spread']`` (A,) and ``atom_data['teacher_forces']`` (A, T, 3); energies
        from the data or the teachers' mean."""
        if energies == "teachers":
            if self.member_energy is None:
                raise DataError(f"{self.data.metadata.get('source', 'labels')}: no teacher energies recorded (labels made without them)")
            data = dataclasses.replace(self.data, energy=self.mean_energy)
        else:
            data = self.data  # its reference energies, or None where the data had none
        mean, spread = ensemble_statistics(self.member_forces)
        data = data.with_stress(self.mean_stress)
        return data.with_forces(mean, force_spread=spread, teacher_forces=self.member_forces.transpose(1, 0, 2)).with_metadata(
            labels=True, provenance=self.provenance, energy_labels=energies
        )

    def teachers_split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(train, validation, rest) indices of the labelled conformations by where the teachers
        met them (:attr:`teachers_trained_on`; None when not known): the students' default split."""
        if self.teachers_trained_on is None:
            return None
        train, validation = (set(part.load().conformation_keys()) for part in self.teachers_trained_on)
        keys = self.data.conformation_keys()
        where = np.array([0 if k in train else 1 if k in validation else 2 for k in keys])
        return tuple(np.flatnonzero(where == part) for part in range(3))

    def check_matches(self, data: Dataset) -> None:
        """Refuse labels made for other data: another source, other elements or conformations."""
        where = self.data.metadata.get("source", "labels")
        if self.source_sha256 != sha256_source(data):
            raise DataError(
                f"{where}: labels were made from data with sha256 {str(self.source_sha256)[:12]}…, "
                f"but {data.metadata.get('source', 'the data')} has sha256 {sha256_source(data)[:12]}…; run 'ekd label' again"
            )
        if self.data.elements != data.elements:
            raise DataError(f"{where}: labels cover elements {self.data.elements}, the data {data.elements}")
        if len(self.data) != len(data) or not (np.array_equal(self.data.numbers, data.numbers) and np.allclose(self.data.positions, data.positions)):
            raise DataError(f"{where}: labelled conformations differ from those in {data.metadata.get('source', 'the data')}; run 'ekd label' again")

    # file ---------------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike) -> None:
        """Write the labels file atomically (layout in the module docstring)."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            writer = LabelsWriter(handle)
            writer.append(self)
            writer.finish(self)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Labels":
        """A labels file written by :meth:`write`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such labels file")
        with _opened(path) as handle:
            check_labels_layout(handle, path)
            data = read_frames_from_group(handle, path)
            provenance = json.loads(handle.attrs["provenance"])
            teachers = [TeacherRecord(**t) for t in provenance.pop("teachers", [])]
            left_out = provenance.pop("left_out", [])
            return cls(
                data=data.with_metadata(source=str(path)),
                member_forces=handle["teacher_forces"][()],
                teachers=teachers,
                member_energy=handle["teacher_energy"][()] if "teacher_energy" in handle else None,
                left_out=left_out,
                provenance=provenance,
                member_stress=handle["teacher_stress"][()] if "teacher_stress" in handle else None,
            )


class LabelsWriter:
    """Writes a labels file (an open, empty HDF5 file) one block of conformations at a time, so
    that labels larger than memory are written holding one block's."""

    def __init__(self, handle: h5py.File):
        handle.attrs["format"] = "ekd-labels"
        self.handle, self.frames = handle, FramesWriter(handle)

    def append(self, block: Labels) -> None:
        """Add the conformations of ``block`` after those written so far."""
        self.frames.append(block.data.without_forces())  # no reference forces or stresses
        mean, spread = ensemble_statistics(block.member_forces)
        extend(self.handle, "teacher_forces", np.asarray(block.member_forces, dtype=np.float64), axis=1)
        extend(self.handle, "teacher_force_mean", mean)
        extend(self.handle, "teacher_force_spread", spread)
        for key, values in (("teacher_energy", block.member_energy), ("teacher_stress", block.member_stress)):
            if values is not None:
                extend(self.handle, key, np.asarray(values, dtype=np.float64), axis=1)

    def finish(self, labels: Labels) -> None:
        """Write the metadata, version and provenance (the data's, teachers and left-out of ``labels``)."""
        self.frames.finish(labels.data.metadata)
        self.handle.attrs["labels_format_version"] = LABELS_FORMAT_VERSION
        self.handle.attrs["provenance"] = json.dumps({**labels.provenance, "teachers": [dataclasses.asdict(t) for t in labels.teachers], "left_out": labels.left_out}, default=str)


def check_labels_layout(handle: h5py.File, path: Path) -> None:
    """Raise a DataError unless ``handle`` is a labels file of the version this ekd reads."""
    if handle.attrs.get("format") != "ekd-labels":
        raise DataError(f"{path}: not an ekd labels file (attribute 'format' is not 'ekd-labels')")
    version = int(handle.attrs.get("labels_format_version", LABELS_FORMAT_VERSION))
    if version != LABELS_FORMAT_VERSION:
        raise DataError(f"{path}: labels format version {version}, this ekd reads version {LABELS_FORMAT_VERSION}; run 'ekd label' again")
    missing = [k for k in ("teacher_forces", "teacher_force_mean", "teacher_force_spread", "provenance") if k not in handle and k not in handle.attrs]
    if missing:
        raise DataError(f"{path}: labels file lacks key(s) {', '.join(missing)}")


def read_provenance(path: str | os.PathLike) -> dict:
    """A labels file's provenance (teachers, teachers left out, source data, config, versions),
    read without its arrays."""
    with _opened(Path(path)) as handle:
        check_labels_layout(handle, Path(path))
        return json.loads(handle.attrs["provenance"])


def _opened(path: Path) -> h5py.File:
    """``path`` opened for reading; a file that is not readable HDF5 (truncated) is a DataError naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable labels file ({error}); run 'ekd label' again") from None


def make_provenance(data: Dataset, config: dict | None = None) -> dict:
    """The provenance of labels of ``data``: its source and sha256, versions, config, time."""
    return {
        "source": data.metadata.get("source"),
        "source_sha256": sha256_source(data),
        "versions": package_versions(),
        "config": config or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_labels(path: str | os.PathLike, energies: Literal["reference", "teachers"] = "reference") -> Dataset:
    """The training view of a labels file (``Labels.read(path).dataset(energies)``)."""
    return Labels.read(path).dataset(energies)


READER = Reader("ekd-labels", "ekd labels file (forces: the teacher mean)", lambda path: has_format(path, "ekd-labels"), lambda path, options: read_labels(path))
