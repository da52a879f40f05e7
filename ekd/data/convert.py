"""One-pass conversion of a dataset file into ekd's HDF5 layout, with bounded memory: the layout
:func:`ekd.data.stream` reads lazily (``ekd data convert``)."""

from __future__ import annotations

import os

import h5py

from ekd._io import atomic_path
from ekd.data.hdf5 import FramesWriter
from ekd.data.options import ReadOptions
from ekd.data.readers import reader_for, unreadable_as
from ekd.errors import DataError
from ekd.progress import progress_bar
from ekd.provenance import sha256_file

__all__ = ["convert"]


def convert(source: str | os.PathLike, destination: str | os.PathLike, options: ReadOptions | None = None, show_progress: bool = True) -> int:
    """Write ``source`` (any layout :func:`ekd.data.read` knows) to ``destination`` as an ekd HDF5
    frames file (eV, Å), atomically; returns the number of conformations written.

    Layouts that can be read a block at a time (the ANI-1, ANI-1x/1ccx and ANI-2x releases: one
    molecule's conformations per block) are copied in one pass holding one block in memory, so
    a file larger than memory converts; other layouts are read whole first. The metadata records
    ``converted_from``: the source's path, sha256, format and the keys read.
    """
    options = (options or ReadOptions()).reading_only()
    path, reader = reader_for(source, options)
    metadata: dict = {}
    blocks = reader.blocks(path, options, metadata) if reader.blocks is not None else iter([reader.read(path, options)])
    with atomic_path(destination) as tmp, h5py.File(tmp, "w") as handle, progress_bar(f"convert {path.name}", None, show_progress, "conf") as bar:
        handle.attrs["format"] = "ekd-frames"
        writer = FramesWriter(handle)
        with unreadable_as(path, reader):
            for block in blocks:
                writer.append(block)
                bar.update(advance=len(block), info=f"{writer.atoms:,} atoms")
        if not writer.conformations:
            raise DataError(f"{path}: no conformations with the selected keys")
        if reader.blocks is None:
            metadata = {key: value for key, value in block.metadata.items() if key not in ("sha256", "format")}
        keys = {key: metadata.pop(key) for key in ("energy_key", "force_key", "force_sign") if key in metadata}
        writer.finish({**metadata, "converted_from": {"path": str(path), "sha256": sha256_file(path), "format": reader.name, **keys}})
    return writer.conformations
