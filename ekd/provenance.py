"""What every artifact records about how it was made: input hashes and package versions.

The content identity of an input is a sha256, one function per kind of input, each named for
what it hashes: :func:`sha256_file` (a file's bytes), :func:`sha256_arrays` (a dataset's arrays),
:func:`sha256_source` (a dataset's source file, or its arrays when built in memory),
:func:`sha256_weights` (a model's tensors) and :func:`sha256_json` (settings and other hashes:
what a stage's output depends on). A dataset view's own ``sha256()`` names what the view reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata

__all__ = ["package_versions", "sha256_arrays", "sha256_file", "sha256_json", "sha256_source", "sha256_weights"]

_TRACKED_PACKAGES = ("ekd", "numpy", "h5py", "ase", "torch", "torchani", "mace-torch", "nequip", "e3nn", "hippynn")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of ekd and the libraries that decide its numbers (absent ones skipped)."""
    versions = {}
    for name in _TRACKED_PACKAGES + extra:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def sha256_arrays(frames) -> str:
    """sha256 of the arrays of an :class:`ekd.data.Dataset` (what a model was trained on),
    per-atom extras such as force weights and, for periodic data, cells included."""
    digest = hashlib.sha256()
    extras = [frames.atom_data[key] for key in sorted(frames.atom_data)]
    for array in (frames.numbers, frames.positions, frames.ptr, frames.energy, frames.forces, *extras, frames.cell, frames.pbc):
        if array is not None:
            digest.update(array.tobytes())
    digest.update(" ".join(sorted(frames.atom_data)).encode())
    return digest.hexdigest()


def sha256_source(data) -> str:
    """sha256 naming a dataset's source: its file's bytes (``metadata["sha256"]``, taken when it
    was read), or its arrays (:func:`sha256_arrays`) for data built in memory."""
    return data.metadata.get("sha256") or data.sha256()


def sha256_weights(module) -> str:
    """sha256 of a torch module's ``state_dict``, in order: its tensors' bytes, and any extra
    (non-tensor) state as JSON."""
    digest = hashlib.sha256()
    for value in module.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes() if hasattr(value, "detach") else json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def sha256_json(*parts) -> str:
    """Stable sha256 of JSON-serialisable parts (settings and other hashes: what an output depends on)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

