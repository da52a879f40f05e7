"""Reader registry: pick a reader by file layout (or by name) and return :class:`Dataset`.

Readers register here with :func:`register_reader`; plugins add theirs the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ekd.data import ani, extxyz, hdf5, labels
from ekd.data.embedded import resolve
from ekd.data.energy_units import check_energy_units
from ekd.data.formats import Reader
from ekd.data.frames import Dataset
from ekd.data.options import ReadOptions
from ekd.errors import ConfigError, DataError
from ekd.provenance import sha256_file

__all__ = ["ReadOptions", "Reader", "detect_format", "read", "reader_for", "readers", "register_reader"]


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> None:
    """Add a reader; detection tries readers in registration order."""
    if reader.name in _READERS:
        raise ConfigError(f"a reader named '{reader.name}' is already registered")
    _READERS[reader.name] = reader


def readers() -> dict[str, Reader]:
    """The registered readers by name."""
    _ensure_builtin()
    return dict(_READERS)


def detect_format(path: Path) -> str:
    """Name of the first registered reader that recognises ``path``."""
    for reader in readers().values():
        if reader.detect(path):
            return reader.name
    raise DataError(f"{path}: layout not recognised; pass a format, one of {', '.join(readers())}")


def reader_for(path: str | os.PathLike, options: ReadOptions) -> tuple[Path, Reader]:
    """The file ``path`` names and the reader of its layout, with ``options`` checked against it."""
    path = resolve(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        name = options.format or detect_format(path)
    except OSError as error:  # (an HDF5 file cut short: its signature is there, its contents are not)
        raise DataError(f"{path}: not a readable file ({error}); is it complete?") from None
    reader = readers().get(name)
    if reader is None:
        raise ConfigError(f"unknown format '{name}'; expected one of {', '.join(readers())}")
    unsupported = options.given() - reader.options
    if unsupported:
        flags = ", ".join("--" + o.replace("_", "-") for o in sorted(unsupported))
        raise ConfigError(f"{path}: {flags} does not apply to the '{name}' format")
    if options.force_sign not in (None, 1, -1):
        raise ConfigError(f"force sign must be +1 or -1, got {options.force_sign}")
    return path, reader


def read(path: str | os.PathLike, options: ReadOptions | None = None, **kwargs) -> Dataset:
    """Read a dataset file into :class:`Dataset` (positions Å, energies eV, forces eV/Å).

    Options are given either as a :class:`ReadOptions` or as its fields as keyword arguments.
    The returned metadata holds ``source``, ``sha256``, ``format`` and the keys and sign used.
    """
    options = (options or ReadOptions(**kwargs)).reading_only()
    path, reader = reader_for(path, options)
    with unreadable_as(path, reader):
        frames = reader.read(path, options).with_metadata(source=str(path))
    frames.check_coordinates()
    check_energy_units(frames)
    return frames.with_metadata(sha256=sha256_file(path), format=reader.name)


@contextlib.contextmanager
def unreadable_as(path: Path, reader: Reader) -> Iterator[None]:
    """Inside: corrupt or unexpected file content is a one-line DataError naming the file."""
    try:
        yield
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: cannot read it as '{reader.name}' ({type(error).__name__}: {error})") from None


_LOADED = False


def _ensure_builtin() -> None:
    """Register the built-in readers first, then let plugins add theirs (once per process)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for reader in (hdf5.READER, labels.READER, *ani.READERS):
        register_reader(reader)
    from ekd.plugins import plugin_manager

    plugin_manager().hook.ekd_register_readers(register=register_reader)
    register_reader(extxyz.READER)  # last: it claims every file that is not HDF5
