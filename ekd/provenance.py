"""What every artifact records about how it was made: input hashes and package versions."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata

__all__ = ["sha256_file", "package_versions", "frames_fingerprint", "config_hash"]

_TRACKED_PACKAGES = ("ekd", "numpy", "h5py", "ase", "torch", "torchani", "mace-torch", "nequip", "e3nn")


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


def frames_fingerprint(frames) -> str:
    """sha256 of the arrays of an :class:`ekd.data.Dataset` (what a model was trained on),
    per-atom extras such as force weights and, for periodic data, cells included."""
    digest = hashlib.sha256()
    extras = [frames.atom_data[key] for key in sorted(frames.atom_data)]
    for array in (frames.numbers, frames.positions, frames.ptr, frames.energy, frames.forces, *extras, frames.cell, frames.pbc):
        if array is not None:
            digest.update(array.tobytes())
    digest.update(" ".join(sorted(frames.atom_data)).encode())
    return digest.hexdigest()


def config_hash(*parts) -> str:
    """Stable sha256 of JSON-serialisable parts (what an output depends on)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
