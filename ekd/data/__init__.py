"""ekd's data layer: the Dataset container, readers, writers, splits and the labels file.

Units inside ekd: positions Å, energies eV, forces eV/Å (−dE/dx). Readers convert at the boundary.
"""

from __future__ import annotations

import os
from pathlib import Path

from ekd.data.embedded import EMBEDDED, PREFIX, resolve
from ekd.data.extxyz import write_extxyz
from ekd.data.force_sign import SignCheck, measure_force_sign
from ekd.data import frames as _frames_module
from ekd.data.frames import Dataset, Split, formula, molecule_split, random_split
from ekd.data.hdf5 import read_ekd_h5, write_ekd_h5
from ekd.data.labels import Labels, TeacherRecord, read_labels
from ekd.data.readers import ReadOptions, Reader, detect_format, read, readers, register_reader
from ekd.data.convert import convert
from ekd.data.stream import StreamedDataset, stream
from ekd.errors import ConfigError

__all__ = [
    "DEFAULT_DATASET",
    "EMBEDDED",
    "Dataset",
    "Labels",
    "ReadOptions",
    "Reader",
    "SignCheck",
    "Split",
    "StreamedDataset",
    "TeacherRecord",
    "convert",
    "detect_format",
    "formula",
    "load_default",
    "measure_force_sign",
    "molecule_split",
    "random_split",
    "read",
    "read_ekd_h5",
    "read_labels",
    "readers",
    "stream",
    "register_reader",
    "write",
    "write_ekd_h5",
    "write_extxyz",
]

#: The embedded wB97X/6-31G(d) reference set (see docs/reference_set.md): ekd's default data.
DEFAULT_DATASET = EMBEDDED["molecules"]


def load_default(with_forces: bool = False, name: str = "molecules") -> Dataset:
    """An embedded dataset (``molecules``: the default; ``metals``: periodic, EMT; ``ccsdt``:
    coupled-cluster energies of the molecules). Its forces
    and stresses are held-out truth: only returned when asked."""
    frames = read(resolve(PREFIX + name))
    return frames if with_forces else frames.without_forces()


def write(frames: Dataset, path: str | os.PathLike) -> None:
    """Write Dataset by file extension: ``.h5``/``.hdf5`` ekd HDF5, ``.xyz``/``.extxyz`` extended XYZ."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        write_ekd_h5(frames, path)
    elif suffix in (".xyz", ".extxyz"):
        write_extxyz(frames, path)
    else:
        raise ConfigError(f"{path}: cannot tell the output format from '{suffix}'; use .h5 or .xyz")


_frames_module._IO.update(read=read, write=write, embedded=load_default)  # Dataset.read, .write, .embedded
