"""Per-element reference energies by least squares: E_conf ≈ Σ_Z n_Z(conf) · e_Z.

The fit goes through the normal equations, summed over blocks of conformations, so that it
holds one block's composition (not an (N, S) table) however many conformations there are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

from ekd.errors import DataError

if TYPE_CHECKING:  # for annotations only, so that no import cycle forms
    from ekd.data.frames import PerConformation

__all__ = ["composition_blocks", "fit_per_element", "fit_reference_energies", "per_element_sum"]

#: conformations per block of the sums (bounds the fit's memory)
BLOCK = 1 << 16
#: eigenvalues of the normal matrix below this share of the largest are its null space (the
#: compositions do not determine those combinations: the minimum-norm solution leaves them out)
_NULL = 1e-10


def composition_blocks(frames: PerConformation, species: list[int]) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, (n, S) counts of ``species``) of consecutive blocks of :data:`BLOCK` conformations."""
    for start in range(0, len(frames), BLOCK):
        rows = slice(start, min(start + BLOCK, len(frames)))
        yield rows, frames.composition(species, rows)


def fit_per_element(frames: PerConformation, values: np.ndarray, species: list[int]) -> np.ndarray:
    """(S,) the per-element contributions whose sums best fit ``values`` (N,), least squares;
    the minimum-norm solution where the compositions leave it undetermined (few distinct
    compositions), which is still exact on every composition present."""
    gram, moment = np.zeros((len(species), len(species))), np.zeros(len(species))
    for rows, counts in composition_blocks(frames, species):
        gram += counts.T @ counts
        moment += counts.T @ values[rows]
    return np.linalg.pinv(gram, rcond=_NULL, hermitian=True) @ moment


def per_element_sum(frames: PerConformation, contributions: np.ndarray, species: list[int]) -> np.ndarray:
    """(N,) Σ_Z n_Z(conf) · contributions_Z for every conformation."""
    return np.concatenate([counts @ contributions for _, counts in composition_blocks(frames, species)] or [np.zeros(0)])


def fit_reference_energies(frames: PerConformation, species: list[int] | None = None) -> dict[int, float]:
    """Least-squares per-element energies (eV) of the conformations' total energies
    (:func:`fit_per_element`)."""
    if frames.energy is None:
        raise DataError(f"{frames.metadata.get('source', 'data')}: reference energies are needed to fit per-element energies")
    species = species or frames.elements
    return {int(z): float(e) for z, e in zip(species, fit_per_element(frames, frames.energy, species))}
