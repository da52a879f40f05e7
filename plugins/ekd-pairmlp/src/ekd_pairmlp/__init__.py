"""Example ekd backend plugin: E = Σ_i e_{Z_i} + Σ_{i<j} MLP(rbf(r_ij), Z_i, Z_j) · f_cut(r_ij).

A complete plugin in one file: options, the three backend methods, and the hook that registers
it. It is deliberately simple (pair terms only), small and fast; see docs/plugins.md.
"""

from __future__ import annotations

import math

import ekd
import torch
from ekd.backend import BackendOptions, Batch

__all__ = ["PairMLPBackend", "PairMLPOptions"]


class PairMLPOptions(BackendOptions):
    """Hyperparameters (lengths in Å)."""

    cutoff: float = 5.0
    n_rbf: int = 16
    width: int = 32
    embedding: int = 8


class PairMLP(torch.nn.Module):
    def __init__(self, options: PairMLPOptions, species: list[int], reference_energies: dict[int, float]):
        super().__init__()
        self.cutoff = options.cutoff
        table = torch.full((max(species) + 1,), -1, dtype=torch.long)
        table[species] = torch.arange(len(species))
        self.register_buffer("species_index", table)
        self.register_buffer("reference", torch.tensor([reference_energies[z] for z in species]))
        self.register_buffer("centres", torch.linspace(0.5, options.cutoff, options.n_rbf))
        self.embed = torch.nn.Embedding(len(species), options.embedding)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(options.n_rbf + options.embedding, options.width),
            torch.nn.SiLU(),
            torch.nn.Linear(options.width, 1),
        )

    def forward(self, positions, numbers, pairs, conformation, n_conformations):
        kind = self.species_index[numbers]
        i, j = pairs
        r = (positions[i] - positions[j]).norm(dim=-1)
        rbf = torch.exp(-4.0 * (r[:, None] - self.centres) ** 2)
        # symmetric in i, j: the pair type enters as the sum of the two embeddings
        features = torch.cat([rbf, self.embed(kind[i]) + self.embed(kind[j])], dim=-1)
        smooth = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1) * (r < self.cutoff)
        pair_energy = self.mlp(features).squeeze(-1) * smooth
        energy = torch.zeros(n_conformations, dtype=positions.dtype, device=positions.device)
        energy = energy.index_add(0, conformation[i], pair_energy)
        return energy.index_add(0, conformation, self.reference[kind])


class PairMLPBackend:
    """The ``pairmlp`` backend."""

    name = "pairmlp"
    Options = PairMLPOptions
    tiny = {"n_rbf": 8, "width": 16, "embedding": 4}
    elements = None

    def build(self, options, species, reference_energies):
        return PairMLP(options, species, reference_energies)

    def convert(self, model, batch: Batch):
        # all pairs i < j within each conformation, computed once per batch and cached by ekd;
        # the mask is (atoms × atoms) of the batch: fine for the small molecules this example is for
        same = batch.conformation[:, None] == batch.conformation[None, :]
        i, j = torch.triu_indices(len(batch.numbers), len(batch.numbers), offset=1, device=batch.numbers.device)
        keep = same[i, j]
        return torch.stack([i[keep], j[keep]])

    def energy(self, model, batch: Batch):
        return model(batch.positions, batch.numbers, batch.inputs, batch.conformation, batch.n_conformations)


@ekd.hookimpl
def ekd_register_backends(register):
    register(PairMLPBackend())
