"""The labels file: the HDF5 contract between the teach, label and student stages.

It is an ekd HDF5 frames file (``ekd.data.hdf5``) with ``format = "ekd-labels"`` and no bare
``forces`` (the reference forces, if any, are held-out truth and never written here), plus::

    teacher_forces        (T, A, 3) float64  eV/Å   each teacher's −dE/dx
    teacher_force_mean    (A, 3)    float64  eV/Å   ensemble mean: the student's force labels
    teacher_force_spread  (A,)      float64  eV/Å   per-atom spread: sqrt(mean_t |F_t − F_mean|²)
    teacher_energy        (T, N)    float64  eV     each teacher's energy (optional)
    attrs["provenance"]   JSON: teachers (backend, spec, checkpoint sha256, seed, published source),
                          teachers left out (name, reason),
                          package versions, source data path and sha256, config, created (UTC)

Reading it back (:func:`read_labels`, or ``ekd.data.read``) gives Frames whose ``forces`` are
the teacher mean and whose ``atom_data["force_spread"]`` is the spread.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

import h5py
import numpy as np

from ekd._io import atomic_path
from ekd.data.frames import Frames
from ekd.data.hdf5 import read_frames_from_group, write_frames_to_group
from ekd.errors import DataError
from ekd.provenance import package_versions

__all__ = ["TeacherRecord", "write_labels", "read_labels", "read_provenance", "ensemble_statistics"]


@dataclasses.dataclass(frozen=True)
class TeacherRecord:
    """Where one teacher came from: its backend, spec, checkpoint hash and seed, and for a member
    of a published ensemble its ``source`` (name, level of theory, sha256 of its files)."""

    backend: str
    spec: str
    checkpoint_sha256: str
    seed: int | None = None
    source: dict | None = None


def ensemble_statistics(teacher_forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (A, 3) and per-atom spread (A,) of teacher forces (T, A, 3).

    The spread is the root-mean-square distance of the teachers' force vectors from their mean.
    """
    mean = teacher_forces.mean(axis=0)
    spread = np.sqrt(((teacher_forces - mean) ** 2).sum(axis=-1).mean(axis=0))
    return mean, spread


def write_labels(
    path: str | os.PathLike,
    frames: Frames,
    teacher_forces: np.ndarray,
    teachers: list[TeacherRecord],
    teacher_energy: np.ndarray | None = None,
    config: dict | None = None,
    left_out: list[dict] | None = None,
) -> None:
    """Write a labels file atomically.

    Args:
        frames: the labelled conformations with their reference energies (eV). Their own
            forces, if any, are not written.
        teacher_forces: (T, A, 3) eV/Å, one slice per teacher, atoms in ``frames`` order.
        teachers: one record per teacher, same order.
        teacher_energy: optional (T, N) eV.
        config: the configuration that produced the labels (stored as provenance).
        left_out: teachers not used, each ``{"name", "reason"}`` (stored as provenance).
    """
    teacher_forces = np.asarray(teacher_forces, dtype=np.float64)
    if teacher_forces.shape != (len(teachers), frames.n_atoms, 3):
        raise DataError(
            f"{path}: teacher forces shape {teacher_forces.shape}, expected ({len(teachers)}, {frames.n_atoms}, 3)"
        )
    if teacher_energy is not None and np.shape(teacher_energy) != (len(teachers), len(frames)):
        raise DataError(f"{path}: teacher energy shape {np.shape(teacher_energy)}, expected ({len(teachers)}, {len(frames)})")
    mean, spread = ensemble_statistics(teacher_forces)
    provenance = {
        "teachers": [dataclasses.asdict(t) for t in teachers],
        "source": frames.metadata.get("source"),
        "source_sha256": frames.metadata.get("sha256"),
        "versions": package_versions(),
        "config": config or {},
        "left_out": left_out or [],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    body = dataclasses.replace(frames.without_forces(), atom_data={})
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = "ekd-labels"
        write_frames_to_group(handle, body)
        handle.create_dataset("teacher_forces", data=teacher_forces)
        handle.create_dataset("teacher_force_mean", data=mean)
        handle.create_dataset("teacher_force_spread", data=spread)
        if teacher_energy is not None:
            handle.create_dataset("teacher_energy", data=np.asarray(teacher_energy, dtype=np.float64))
        handle.attrs["provenance"] = json.dumps(provenance, default=str)


def _open_labels(path: Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such labels file")
    handle = h5py.File(path, "r")
    if handle.attrs.get("format") != "ekd-labels":
        handle.close()
        raise DataError(f"{path}: not an ekd labels file (attribute 'format' is not 'ekd-labels')")
    return handle


def read_labels(path: str | os.PathLike, energies: str = "reference") -> Frames:
    """Frames with reference energies (``energies="teachers"``: the teachers' mean energies),
    teacher-mean forces and ``atom_data['force_spread']``.

    The per-teacher arrays are in ``atom_data['teacher_forces']`` as (A, T, 3).
    """
    path = Path(path)
    with _open_labels(path) as handle:
        frames = read_frames_from_group(handle, path)
        missing = [k for k in ("teacher_forces", "teacher_force_mean", "teacher_force_spread") if k not in handle]
        if energies == "teachers" and "teacher_energy" not in handle:
            missing.append("teacher_energy")
        elif energies == "teachers":
            frames = dataclasses.replace(frames, energy=handle["teacher_energy"][()].mean(axis=0))
        if missing:
            raise DataError(f"{path}: labels file lacks key(s) {', '.join(missing)}")
        return frames.with_forces(
            handle["teacher_force_mean"][()],
            force_spread=handle["teacher_force_spread"][()],
            teacher_forces=handle["teacher_forces"][()].transpose(1, 0, 2),
        ).with_metadata(labels=True, provenance=json.loads(handle.attrs["provenance"]))


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance record of a labels file."""
    with _open_labels(Path(path)) as handle:
        return json.loads(handle.attrs["provenance"])
