"""Seeded train/validation/test splits, by conformation or by whole molecule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ekd.errors import ConfigError

if TYPE_CHECKING:  # for annotations only, so that no import cycle forms
    from ekd.data.frames import Dataset

__all__ = ["random_split", "molecule_split"]


def _cut_points(n: int, fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ConfigError(f"split fractions {list(fractions)} must be non-negative and sum to 1")
    return np.round(np.cumsum(fractions)[:-1] * n).astype(int)


def random_split(frames: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[Dataset]:
    """Split conformations at random (seeded) into parts of the given fractions."""
    order = np.random.default_rng(seed).permutation(len(frames))
    return [frames.subset(np.sort(part)) for part in np.split(order, _cut_points(len(frames), fractions))]


def molecule_split(frames: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[Dataset]:
    """Split whole molecules (seeded): no molecule has conformations in two parts.

    Fractions apply to the number of molecules, not conformations.
    """
    names = np.asarray(frames.molecules)
    if len(names) < len(fractions):
        raise ConfigError(f"cannot split {len(names)} molecules into {len(fractions)} parts by molecule")
    shuffled = names[np.random.default_rng(seed).permutation(len(names))]
    groups = np.split(shuffled, _cut_points(len(names), fractions))
    return [frames.subset(np.flatnonzero(np.isin(frames.molecule, group))) for group in groups]
