"""Padding helpers for backends whose models take (conformations, max atoms, ...) tensors."""

from __future__ import annotations

import torch

from ekd.backend import Batch

__all__ = ["padding_index", "pad_positions"]


def padding_index(batch: Batch) -> torch.Tensor:
    """(N, max_atoms) row of each atom in the flat arrays, −1 where a conformation is padded."""
    sizes = batch.sizes
    slots = torch.arange(int(sizes.max()), device=sizes.device)
    index = batch.ptr[:-1, None] + slots[None, :]
    return torch.where(slots[None, :] < sizes[:, None], index, torch.full_like(index, -1))


def pad_positions(positions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, max_atoms, 3) positions, zeros in padded slots, differentiable w.r.t. ``positions``."""
    padded = positions.new_zeros(index.shape + (3,))
    return padded.index_put((index >= 0).nonzero(as_tuple=True), positions)
