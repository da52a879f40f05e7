"""Unit conversion at ekd's boundaries. Inside ekd: Å, eV, eV/Å. Constants come from ``ase.units``."""

from __future__ import annotations

from ase import units

from ekd.errors import ConfigError

__all__ = ["ENERGY_UNITS", "energy_factor", "KCAL_PER_MOL"]

#: eV per one unit of each energy unit a file may declare.
ENERGY_UNITS = {
    "eV": 1.0,
    "meV": 1e-3,
    "Ha": units.Hartree,
    "kcal/mol": units.kcal / units.mol,
    "kJ/mol": units.kJ / units.mol,
}

#: one kcal/mol in eV (reports use kcal/mol and kcal/mol/Å, the COMP6 convention)
KCAL_PER_MOL = units.kcal / units.mol


def energy_factor(unit: str) -> float:
    """eV per ``unit``; forces in ``unit``/Å scale by the same factor."""
    try:
        return ENERGY_UNITS[unit]
    except KeyError:
        raise ConfigError(f"unknown energy unit '{unit}'; expected one of {', '.join(ENERGY_UNITS)}") from None
