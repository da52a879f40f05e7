"""How to read a data file: :class:`ReadOptions`, shared by the container, the format modules and
the reader registry (a leaf module: it imports nothing of ekd)."""

from __future__ import annotations

import pydantic

__all__ = ["ReadOptions"]


class ReadOptions(pydantic.BaseModel):
    """How to read a file. ``None`` means the reader's default for that layout.

    Attributes:
        format: reader name (see :func:`readers`); None detects it from the file.
        energy_key: which stored energy to use (e.g. ``ccsd(t)_cbs.energy``).
        force_key: which stored forces to use; ``""`` reads no forces.
        force_sign: +1 if the stored array is forces, −1 if it is gradients dE/dx.
        energy_unit: unit of stored energies (forces: that unit per Å), see ``ekd.units``.
        molecule_key: per-frame key naming the molecule (extended XYZ ``info``).
        stress_key: which stored stress to use (ASE formats; e.g. ``REF_stress``; Voigt or 3×3,
            energy unit per Å³, ASE's sign); ``""`` reads no stresses.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    format: str | None = None
    energy_key: str | None = None
    force_key: str | None = None
    force_sign: int | None = None
    energy_unit: str | None = None
    molecule_key: str | None = None
    stress_key: str | None = None

    def given(self) -> set[str]:
        """Names of the reading options set (other than ``format``)."""
        return {name for name in ReadOptions.model_fields if name != "format" and getattr(self, name) is not None}

    def reading_only(self) -> "ReadOptions":
        """Just the reading options (drops the fields a subclass adds)."""
        return ReadOptions(**{name: getattr(self, name) for name in ReadOptions.model_fields})
