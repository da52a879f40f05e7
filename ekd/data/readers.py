"""Reader registry: pick a reader by file layout (or by name) and return :class:`Dataset`.

Readers register here with :func:`register_reader`; plugins add theirs the same way.
"""

from __future__ import annotations

import dataclasses
import os

import pydantic
from pathlib import Path
from typing import Callable

from ekd.data.frames import Dataset
from ekd.errors import ConfigError, DataError
from ekd.provenance import sha256_file

__all__ = ["ReadOptions", "Reader", "register_reader", "readers", "read", "detect_format"]


class ReadOptions(pydantic.BaseModel):
    """How to read a file. ``None`` means the reader's default for that layout.

    Attributes:
        format: reader name (see :func:`readers`); None detects it from the file.
        energy_key: which stored energy to use (e.g. ``ccsd(t)_cbs.energy``).
        force_key: which stored forces to use; ``""`` reads no forces.
        force_sign: +1 if the stored array is forces, −1 if it is gradients dE/dx.
        energy_unit: unit of stored energies (forces: that unit per Å), see ``ekd.units``.
        molecule_key: per-frame key naming the molecule (extended XYZ ``info``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    format: str | None = None
    energy_key: str | None = None
    force_key: str | None = None
    force_sign: int | None = None
    energy_unit: str | None = None
    molecule_key: str | None = None

    def given(self) -> set[str]:
        """Names of the reading options set (other than ``format``)."""
        return {name for name in ReadOptions.model_fields if name != "format" and getattr(self, name) is not None}

    def reading_only(self) -> "ReadOptions":
        """Just the reading options (drops the fields a subclass adds)."""
        return ReadOptions(**{name: getattr(self, name) for name in ReadOptions.model_fields})


@dataclasses.dataclass(frozen=True)
class Reader:
    """A file layout ekd can read.

    ``detect(path)`` says whether a file has this layout (cheaply, without reading it all);
    ``read(path, options)`` returns Dataset in eV/Å with ``metadata`` filled in;
    ``options`` lists the :class:`ReadOptions` fields it understands.
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], Dataset]
    options: frozenset[str] = frozenset()


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


def read(path: str | os.PathLike, options: ReadOptions | None = None, **kwargs) -> Dataset:
    """Read a dataset file into :class:`Dataset` (positions Å, energies eV, forces eV/Å).

    Options are given either as a :class:`ReadOptions` or as its fields as keyword arguments.
    The returned metadata holds ``source``, ``sha256``, ``format`` and the keys and sign used.
    """
    options = (options or ReadOptions(**kwargs)).reading_only()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    name = options.format or detect_format(path)
    reader = readers().get(name)
    if reader is None:
        raise ConfigError(f"unknown format '{name}'; expected one of {', '.join(readers())}")
    unsupported = options.given() - reader.options
    if unsupported:
        flags = ", ".join("--" + o.replace("_", "-") for o in sorted(unsupported))
        raise ConfigError(f"{path}: {flags} does not apply to the '{name}' format")
    if options.force_sign not in (None, 1, -1):
        raise ConfigError(f"force sign must be +1 or -1, got {options.force_sign}")
    try:
        frames = reader.read(path, options)
    except (OSError, KeyError, ValueError) as error:  # corrupt or unexpected file content
        raise DataError(f"{path}: cannot read it as '{name}' ({type(error).__name__}: {error})") from None
    return frames.with_metadata(source=str(path), sha256=sha256_file(path), format=name)


_LOADED = False


def _ensure_builtin() -> None:
    """Register the built-in readers first, then let plugins add theirs (once per process)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from ekd.data import ani, extxyz, hdf5

    for reader in (hdf5.READER, *ani.READERS):
        register_reader(reader)
    from ekd.plugins import plugin_manager

    plugin_manager()
    register_reader(extxyz.READER)  # last: it claims every file that is not HDF5
