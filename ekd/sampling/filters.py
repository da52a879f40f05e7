"""What a sampled geometry must pass: no overlapping atoms, the seed's covalent bonds intact
(none broken, none new: per molecule, and none between molecules), not a near-copy of one
already kept, and the teachers' agreement (the spread gate)."""

from __future__ import annotations

import numpy as np

from ekd.evaluate.md import bond_deviation, bonds

__all__ = ["descriptor", "distinct", "intact", "mean_per_conformation", "nearest_rms"]


def descriptor(positions: np.ndarray) -> np.ndarray:
    """Sorted interatomic distances (Å): invariant to rotation, translation and permutation."""
    i, j = np.triu_indices(len(positions), 1)
    return np.sort(np.linalg.norm(positions[i] - positions[j], axis=-1))


def distinct(descriptors: list[np.ndarray], order: np.ndarray, min_rms: float, count: int | None = None,
             keys: list | None = None) -> list[int]:
    """Rows taken in ``order``, skipping any whose descriptor is within ``min_rms`` Å RMS of one
    already taken with the same key (composition; default: all one); at most ``count``."""
    taken: list[int] = []
    chosen: dict = {}
    for row in order:
        row = int(row)
        key = keys[row] if keys is not None else None
        same = chosen.get(key)
        if same is not None and np.sqrt(np.mean((same - descriptors[row]) ** 2, axis=1)).min() < min_rms:
            continue
        chosen[key] = descriptors[row][None] if same is None else np.vstack([same, descriptors[row]])
        taken.append(row)
        if count is not None and len(taken) == count:
            break
    return taken


def intact(numbers: np.ndarray, seed: np.ndarray, positions: np.ndarray, min_distance: float, max_bond_deviation: float) -> str | None:
    """Why ``positions`` (n, 3) Å fails against the ``seed`` geometry of the same atoms (its
    molecules placed apart or together: its bonds are the ones that must stay), or None:
    ``overlap`` (two atoms closer than ``min_distance``), ``broken`` (a seed bond changed by more
    than ``max_bond_deviation`` Å) or ``new bond`` (atoms bonded that were not in the seed); bonds
    are the MD-stability criterion's (:func:`ekd.evaluate.md.bonds`)."""
    if not np.all(np.isfinite(positions)):
        return "broken"
    i, j = np.triu_indices(len(positions), 1)
    if np.min(np.linalg.norm(positions[i] - positions[j], axis=-1), initial=np.inf) < min_distance:
        return "overlap"
    pairs, lengths = bonds(numbers, seed)
    if bond_deviation(positions, pairs, lengths) > max_bond_deviation:
        return "broken"
    if set(map(tuple, bonds(numbers, positions)[0].tolist())) - set(map(tuple, pairs.tolist())):
        return "new bond"
    return None


def mean_per_conformation(frames, per_atom: np.ndarray) -> np.ndarray:
    """(N,) the mean over each conformation's atoms of ``per_atom`` (A,) values, e.g. the teachers' force spread."""
    return np.bincount(frames.conformation_index, weights=per_atom, minlength=len(frames)) / frames.sizes


def nearest_rms(frames, others) -> np.ndarray:
    """(N,) Å: for each conformation of ``frames``, the RMS descriptor distance to the nearest
    conformation of ``others`` of the same composition (inf where none is): how
    close sampled geometries come to a test set (rotation, translation and permutation aside)."""
    nearest = np.full(len(frames), np.inf)
    groups: dict[bytes, list[np.ndarray]] = {}
    for k in range(len(others)):
        atoms = others.atoms_of(k)
        groups.setdefault(np.sort(others.numbers[atoms]).tobytes(), []).append(descriptor(others.positions[atoms]))
    stacked = {key: np.array(rows) for key, rows in groups.items()}
    for k in range(len(frames)):
        atoms = frames.atoms_of(k)
        same = stacked.get(np.sort(frames.numbers[atoms]).tobytes())
        if same is not None:
            nearest[k] = np.sqrt(np.mean((same - descriptor(frames.positions[atoms])) ** 2, axis=1)).min()
    return nearest
