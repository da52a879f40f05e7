"""ekd's embedded datasets, made by its own scripts (docs/reference_set.md), and their names:
``--data embedded:molecules`` (the default data), ``embedded:metals`` or ``embedded:ccsdt`` wherever a path
is read (a leaf module: it imports nothing of ekd)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["EMBEDDED", "PREFIX", "resolve"]

_FOLDER = Path(str(resources.files("ekd") / "datasets"))

#: name → file: wB97X/6-31G(d) small molecules; EMT fcc Cu, Al, Ni and CuNi in periodic cells;
#: CCSD(T)/cc-pVDZ energies of the molecules (its held-out forces in a file of their own)
EMBEDDED = {"molecules": _FOLDER / "ekd_ref_wb97x_631gd.h5", "metals": _FOLDER / "ekd_periodic_emt.h5", "ccsdt": _FOLDER / "ekd_ref_ccsdt_ccpvdz.h5"}
PREFIX = "embedded:"


def resolve(path: str | os.PathLike) -> Path:
    """The file an ``embedded:<name>`` path names (any other path as it is)."""
    text = str(path)
    if not text.startswith(PREFIX):
        return Path(path)
    name = text[len(PREFIX):]
    if name not in EMBEDDED:
        from ekd.errors import ConfigError

        raise ConfigError(f"{text}: no such embedded dataset; expected one of {', '.join(PREFIX + n for n in EMBEDDED)}")
    return EMBEDDED[name]
