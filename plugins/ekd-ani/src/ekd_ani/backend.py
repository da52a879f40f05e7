"""The ``ani`` backend: torchani's AEV computer and per-element atomic networks.

Defaults follow ANI-1x (Smith et al. 2018): AEV ``rHCNO-5.2R_16-3.5A_a4-8``, CELU networks.
The model runs on the core's neighbour edges (torchani's ``compute_from_neighbors``: the whole
batch as one flat structure, no padding). torchani works in Hartree; this backend converts at its
boundary, so ekd sees eV.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from ase import units
from ase.data import chemical_symbols

import ekd
from ekd.backend import BackendOptions, Batch, Statistics

__all__ = ["AniBackend", "AniOptions"]

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # its CUDA extensions are optional


class AniOptions(BackendOptions):
    """ANI hyperparameters (lengths in Å)."""

    radial_cutoff: float = 5.2
    angular_cutoff: float = 3.5
    radial_shifts: int = 16
    angular_shifts: int = 4
    angle_sections: int = 8
    radial_eta: float = 16.0
    angular_eta: float = 8.0
    angular_zeta: float = 32.0
    radial_start: float = 0.9
    angular_start: float = 0.9
    cutoff_fn: Literal["cosine", "smooth"] = "cosine"
    hidden: tuple[int, ...] = (160, 128, 96)
    element_hidden: dict[str, tuple[int, ...]] = {}  # per-element sizes, e.g. {"C": [144, 112, 96]}
    activation: Literal["celu", "gelu", "tanh", "silu"] = "celu"


class AniBackend:
    """ANI-style model: E = Σ_i NN_{Z_i}(AEV_i) + Σ_i e_{Z_i}."""

    name = "ani"
    Options = AniOptions
    tiny = {"radial_shifts": 8, "angular_shifts": 2, "angle_sections": 4, "hidden": (16, 16)}
    export_suffix = ".pt"  # the native file ``ekd export`` writes
    elements = None  # any element torchani knows; reference energies come from ekd
    periodic = True  # energy sees positions through batch.edge_vectors(): periodic images included
    #: diverse ensemble members (cycled): different AEV cutoffs, CELU throughout. On the embedded
    #: set, members with GELU or SiLU had twice the force error of CELU ones (benchmarks/results).
    variations = (
        {},
        {"radial_cutoff": 4.6},
        {"radial_cutoff": 5.8, "angular_cutoff": 4.0},
        {"angular_cutoff": 3.1},
    )

    def cutoff(self, options: AniOptions) -> float:
        return max(options.radial_cutoff, options.angular_cutoff)

    def build(self, options: AniOptions, species: list[int], statistics: Statistics) -> torch.nn.Module:
        from torchani.aev import ANIAngular, ANIRadial
        from torchani.arch import ANI, Assembler
        from torchani.nn import ANINetworks

        symbols = [chemical_symbols[z] for z in species]
        assembler = Assembler(cls=ANI, periodic_table_index=True)
        assembler.set_symbols(symbols)
        assembler.set_global_cutoff_fn(options.cutoff_fn)
        assembler.set_aev_computer(
            radial=ANIRadial.cover_linearly(
                start=options.radial_start, cutoff=options.radial_cutoff, eta=options.radial_eta, num_shifts=options.radial_shifts
            ),
            angular=ANIAngular.cover_linearly(
                start=options.angular_start,
                cutoff=options.angular_cutoff,
                eta=options.angular_eta,
                zeta=options.angular_zeta,
                num_shifts=options.angular_shifts,
                num_sections=options.angle_sections,
            ),
        )
        activation = {"celu": torch.nn.CELU(0.1), "gelu": torch.nn.GELU(), "tanh": torch.nn.Tanh(), "silu": torch.nn.SiLU()}[options.activation]
        assembler.set_atomic_networks(
            cls=ANINetworks,
            ctor="build",
            kwargs={"dims": {s: tuple(d) for s, d in options.element_hidden.items() if s in symbols}, "default_dims": tuple(options.hidden), "activation": activation, "bias": True},
        )
        assembler.set_neighborlist("all_pairs")
        assembler.set_self_energies({chemical_symbols[z]: e / units.Hartree for z, e in statistics.reference_energies.items()})
        return assembler.assemble(1)

    def pretrained(self, path, dtype: torch.dtype, device) -> list:
        """A published NeuroChem ensemble (ANI-1x, ANI-1ccx) as frozen models (:mod:`ekd_ani.pretrained`)."""
        from ekd_ani.pretrained import pretrained_models

        return pretrained_models(path, dtype=dtype, device=device)

    def export(self, module: torch.nn.Module, path) -> None:
        """Pickle the torchani model: ``torch.load(path, weights_only=False).ase()`` is torchani's
        own ASE calculator (torchani units: Hartree inside, eV in the calculator)."""
        torch.save(module, path)

    def convert(self, model: torch.nn.Module, batch: Batch) -> dict:
        """torchani's element indices of the flat batch and which of the core's edges form a
        half list: one of (i, j, S) and (j, i, −S), images of an atom itself included."""
        centre, neighbour = batch.edge_index
        first_nonzero = batch.shifts.gather(1, (batch.shifts != 0).to(torch.int8).argmax(dim=1, keepdim=True))[:, 0]
        half = (centre < neighbour) | ((centre == neighbour) & (first_nonzero > 0))
        return {"elements": model.species_converter(batch.numbers[None]), "half": half.nonzero()[:, 0]}

    def energy(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return self.readout(model, batch, self.features(model, batch))

    def feature_key(self, options: AniOptions) -> str:
        """The AEV's options: members that differ only in their networks share their AEVs."""
        return options.model_dump_json(exclude={"hidden", "element_hidden", "activation"})

    def features(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """(1, A, F) AEVs of the batch's atoms (torchani's ``AEVComputer`` on the core's edges)."""
        from torchani.neighbors import Neighbors, discard_outside_cutoff

        half = batch.inputs["half"]
        difference = -batch.edge_vectors()[half]  # torchani's sign: centre − neighbour (its image)
        neighbors = Neighbors(batch.edge_index[:, half], difference.norm(dim=-1), difference)
        potential = model.potentials["nnp"]
        neighbors = discard_outside_cutoff(neighbors, potential.cutoff)
        return potential.aev_computer.compute_from_neighbors(batch.inputs["elements"], batch.positions[None], neighbors)

    def readout(self, model: torch.nn.Module, batch: Batch, features: torch.Tensor) -> torch.Tensor:
        """(N,) eV: the atomic networks on the AEVs plus the self energies, summed per conformation."""
        elements = batch.inputs["elements"]
        atomic = model.potentials["nnp"].neural_networks(elements, features, atomic=True)[0] + model.energy_shifter(elements, atomic=True)[0]
        energy = atomic.new_zeros(batch.n_conformations).index_add(0, batch.conformation, atomic)
        return energy * units.Hartree


@ekd.hookimpl
def ekd_register_backends(register):
    """Entry point of the ``ani`` backend (group ``ekd``)."""
    register(AniBackend())
