"""Per-element reference energies by least squares: E_conf ≈ Σ_Z n_Z(conf) · e_Z."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ekd.errors import DataError

if TYPE_CHECKING:  # for annotations only, so that no import cycle forms
    from ekd.data.frames import PerConformation

__all__ = ["fit_reference_energies"]


def fit_reference_energies(frames: PerConformation, species: list[int] | None = None) -> dict[int, float]:
    """Least-squares per-element energies (eV) of the conformations' total energies.

    With few distinct compositions the system is underdetermined; the minimum-norm solution is
    returned, which is still exact on every composition present.
    """
    if frames.energy is None:
        raise DataError(f"{frames.metadata.get('source', 'data')}: reference energies are needed to fit per-element energies")
    species = species or frames.elements
    solution, *_ = np.linalg.lstsq(frames.composition(species), frames.energy, rcond=None)
    return {int(z): float(e) for z, e in zip(species, solution)}
