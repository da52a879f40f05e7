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
    from ekd.data.frames import Dataset, PerConformation

__all__ = ["MAX_NEIGHBOURS", "MIN_DISTANCE", "check_geometries", "neighbour_edges"]

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


def check_geometries(frames: PerConformation, minimum: float = MIN_DISTANCE) -> None:
    """A DataError naming the file, conformation and atoms when a position is not finite or
    absurd (:meth:`~ekd.data.frames.PerConformation.check_coordinates`) or two atoms of a
    conformation are closer than ``minimum`` Å (coincident atoms make every model's loss NaN);
    read a block of conformations at a time."""
    for first, block in frames.blocks():
        block.check_coordinates(first)
        edges, shifts = neighbour_edges(block, minimum)
        if edges.shape[1]:
            i, j = (int(a) for a in edges[:, 0])
            k = int(np.searchsorted(block.ptr, i, side="right") - 1)
            distance = float(np.linalg.norm(block.positions[j] - block.positions[i] + shifts[0] @ block.cells[k]))
            where = f"{frames.metadata.get('source', 'data')}: conformation {first + k} ({block.molecule[k]})"
            if i == j:
                raise DataError(f"{where}: atom {i - block.ptr[k]} is {distance:.3f} Å from its own periodic image, closer than {minimum} Å: "
                                "the cell is too small (check its units)")
            raise DataError(f"{where} has atoms {i - block.ptr[k]} and {j - block.ptr[k]} {distance:.3f} Å apart, closer than {minimum} Å: "
                            "a broken geometry (remove it or fix its units)")
