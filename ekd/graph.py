"""Neighbour lists for graph backends (MACE, NequIP, ...): molecules, no periodic images."""

from __future__ import annotations

import torch

from ekd.backend import Batch

__all__ = ["edges_within"]


def edges_within(batch: Batch, cutoff: float) -> torch.Tensor:
    """(2, E) [centre, neighbour] indices of all ordered pairs of distinct atoms of the same
    conformation closer than ``cutoff`` (Å), at the batch's current positions.

    Built without an atoms × atoms matrix: each atom is paired with every atom of its own
    conformation only.
    """
    count = batch.sizes[batch.conformation]  # (A,) atoms in each atom's conformation
    centre = torch.repeat_interleave(torch.arange(len(count), device=count.device), count)
    start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    neighbour = batch.ptr[batch.conformation[centre]] + torch.arange(len(centre), device=count.device) - start
    distance = (batch.positions[neighbour] - batch.positions[centre]).detach().norm(dim=-1)
    keep = (centre != neighbour) & (distance < cutoff)
    return torch.stack([centre[keep], neighbour[keep]])
