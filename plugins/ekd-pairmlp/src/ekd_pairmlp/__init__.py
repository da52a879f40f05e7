"""Example ekd backend plugin: E = Σ_i e_{Z_i} + Σ_{i<j} MLP(rbf(r_ij), Z_i, Z_j) · f_cut(r_ij).

A complete plugin in one file: options, the three backend methods (cutoff, build, energy), and
the hook that registers it. It is deliberately simple (pair terms only), small and fast; the core
hands it the neighbour edges within its cutoff and the data's statistics (docs/plugins.md).
"""

from __future__ import annotations

import math

import ekd
import torch
from ekd.backend import BackendOptions, Batch, Statistics

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
        self.register_buffer("species", torch.tensor(species))
        self.register_buffer("reference", torch.tensor([reference_energies[z] for z in species]))
        self.register_buffer("centres", torch.linspace(0.5, options.cutoff, options.n_rbf))
        self.embed = torch.nn.Embedding(len(species), options.embedding)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(options.n_rbf + options.embedding, options.width),
            torch.nn.SiLU(),
            torch.nn.Linear(options.width, 1),
        )

    def forward(self, vectors, kind, edges, conformation, n_conformations):
        """Energies (N,) eV from the edge vectors (E, 3) Å of the ordered pairs ``edges`` (2, E);
        ``kind`` (A,) is each atom's row in ``species``."""
        i, j = edges
        r = vectors.norm(dim=-1)
        rbf = torch.exp(-4.0 * (r[:, None] - self.centres) ** 2)
        # symmetric in i, j: the pair type enters as the sum of the two embeddings
        features = torch.cat([rbf, self.embed(kind[i]) + self.embed(kind[j])], dim=-1)
        smooth = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1) * (r < self.cutoff)
        pair_energy = 0.5 * self.mlp(features).squeeze(-1) * smooth  # each pair comes in both directions
        energy = torch.zeros(n_conformations, dtype=vectors.dtype, device=vectors.device)
        energy = energy.index_add(0, conformation[i], pair_energy)
        return energy.index_add(0, conformation, self.reference[kind])


class PairMLPBackend:
    """The ``pairmlp`` backend."""

    name = "pairmlp"
    Options = PairMLPOptions
    tiny = {"n_rbf": 8, "width": 16, "embedding": 4}
    elements = None
    periodic = True  # energy sees positions only through batch.edge_vectors(): images included

    def cutoff(self, options: PairMLPOptions) -> float:
        return options.cutoff

    def build(self, options: PairMLPOptions, species: list[int], statistics: Statistics):
        return PairMLP(options, species, statistics.reference_energies)

    def energy(self, model, batch: Batch):
        kind = batch.element_index(model.species)
        return model(batch.edge_vectors(), kind, batch.edge_index, batch.conformation, batch.n_conformations)


@ekd.hookimpl
def ekd_register_backends(register):
    register(PairMLPBackend())
