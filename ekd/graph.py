"""The neighbour graph every backend receives: edges within the backend's declared cutoff.

Built once per batch of configurations and cutoff by the core, with vesin (a maintained
neighbour-list library), and cached with the batch across epochs; backends never build their
own edges. Edges are ordered pairs ``[centre, neighbour]`` (a full list: both directions) with
integer cell shifts (zeros for molecules), so that the vector of an edge is
``positions[neighbour] − positions[centre] + shift · cell`` (Å).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import vesin

from ekd.errors import DataError

if TYPE_CHECKING:  # for annotations only, so that no import cycle forms
    from ekd.data.frames import Dataset

__all__ = ["MAX_NEIGHBOURS", "MIN_DISTANCE", "average_neighbours", "check_geometries", "neighbour_edges"]

#: Å; two atoms closer than this are a broken geometry (the shortest bond, H2's, is 0.74 Å)
MIN_DISTANCE = 0.5
#: neighbours per atom beyond which a configuration is collapsed, not dense: a close-packed metal
#: has about 80 within 6 Å; a cell a bad model relaxed to nothing has thousands (and every
#: backend's edge features would then exhaust the memory)
MAX_NEIGHBOURS = 500


def neighbour_edges(frames: Dataset, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(2, E) int64 ``[centre, neighbour]`` atom indices (rows of ``frames``) of every ordered
    pair closer than ``cutoff`` (Å) within each configuration, and (E, 3) int64 cell shifts.
    In a periodic configuration the neighbour may be an image (an atom's own, in a cell smaller
    than the cutoff), along the periodic cell vectors only. A configuration with more than
    :data:`MAX_NEIGHBOURS` neighbours per atom is a DataError (a collapsed cell)."""
    finder = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    cells, periodic = frames.cells, frames.periodic_axes
    centres, neighbours, shifts = [], [], []
    for k in range(len(frames)):
        rows = frames.atoms_of(k)
        i, j, s = finder.compute(frames.positions[rows], cells[k], periodic[k], "ijS")
        if len(i) > MAX_NEIGHBOURS * (rows.stop - rows.start):
            raise DataError(f"{frames.metadata.get('source', 'data')}: conformation {k} ({frames.molecule[k]}) has {len(i) / (rows.stop - rows.start):.0f} "
                            f"neighbours per atom within {cutoff:g} Å (more than {MAX_NEIGHBOURS}): a collapsed cell or positions in the wrong units")
        centres.append(i.astype(np.int64) + rows.start)
        neighbours.append(j.astype(np.int64) + rows.start)
        shifts.append(s.astype(np.int64))
    if not centres:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    return np.stack([np.concatenate(centres), np.concatenate(neighbours)]), np.concatenate(shifts)


def average_neighbours(frames: Dataset, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` (Å) per atom over ``frames``: the
    normalisation MACE and NequIP divide their neighbour sums by (``avg_num_neighbors``)."""
    edges, _ = neighbour_edges(frames, cutoff)
    return edges.shape[1] / max(frames.n_atoms, 1)


def check_geometries(frames: Dataset, minimum: float = MIN_DISTANCE) -> None:
    """A DataError naming the file, conformation and atoms when two atoms of a conformation are
    closer than ``minimum`` Å (coincident atoms make every model's loss NaN)."""
    edges, shifts = neighbour_edges(frames, minimum)
    if edges.shape[1]:
        i, j = (int(a) for a in edges[:, 0])
        k = int(np.searchsorted(frames.ptr, i, side="right") - 1)
        distance = float(np.linalg.norm(frames.positions[j] - frames.positions[i] + shifts[0] @ frames.cells[k]))
        if i == j:
            raise DataError(f"{frames.metadata.get('source', 'data')}: conformation {k} ({frames.molecule[k]}): atom {i - frames.ptr[k]} is "
                            f"{distance:.3f} Å from its own periodic image, closer than {minimum} Å: the cell is too small (check its units)")
        raise DataError(
            f"{frames.metadata.get('source', 'data')}: conformation {k} ({frames.molecule[k]}) has atoms {i - frames.ptr[k]} and "
            f"{j - frames.ptr[k]} {distance:.3f} Å apart, closer than {minimum} Å: a broken geometry (remove it or fix its units)"
        )
