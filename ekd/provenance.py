"""What every artifact records about how it was made: input hashes and package versions."""

from __future__ import annotations

import hashlib
import os
from importlib import metadata

__all__ = ["sha256_file", "package_versions", "frames_fingerprint"]

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
    """sha256 of the arrays of an :class:`ekd.data.Frames` (what a model was trained on)."""
    digest = hashlib.sha256()
    for array in (frames.numbers, frames.positions, frames.ptr, frames.energy, frames.forces):
        if array is not None:
            digest.update(array.tobytes())
    return digest.hexdigest()
