"""The ``hippynn`` backend: HIP-NN (Lubbers, Smith & Barros 2018) built with hippynn 0.1.3.

The model is hippynn's own network (``hippynn.networks.Hipnn``: interaction layers of
sensitivity functions, atom layers, ResNet blocks) and hierarchical energy target
(``hippynn.layers.targets.HEnergy``), run on the core's pairs: ``batch.edge_index`` is HIP-NN's
``pair_first``/``pair_second``, the norms of ``batch.edge_vectors()`` its pair distances (periodic
images included), so hippynn's pair finders are not used. The non-interacting energy term E0 is
ekd's reference energies (fixed, as hippynn's ``hierarchical_energy_initialization`` leaves it),
and the higher terms start decayed as there. Units: Å, eV.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import warnings
from pathlib import Path
from typing import Literal

import pydantic
import torch

import ekd
from ekd.backend import BackendOptions, Batch, Statistics
from ekd.errors import ConfigError

__all__ = ["HipnnBackend", "HipnnModel", "HipnnOptions"]

#: hippynn's network module for each tensor order: HIP-NN (0), HIP-NN-TS with l = 1 and 2
NETWORKS = {0: "Hipnn", 1: "HipnnVec", 2: "HipnnQuad"}


class HipnnOptions(BackendOptions):
    """HIP-NN hyperparameters; names follow ``hippynn.networks.Hipnn`` and the defaults are the
    ones of hippynn's ANI-1x example (``examples/ani1x_training.py``). Lengths in Å."""

    n_features: int = pydantic.Field(20, ge=1)  # width of every interaction and atom layer
    n_sensitivities: int = pydantic.Field(20, ge=1)  # distance sensitivity functions per interaction layer
    n_interaction_layers: int = pydantic.Field(2, ge=1)
    n_atom_layers: int = pydantic.Field(3, ge=0)  # atom layers after each interaction layer
    dist_soft_min: float = pydantic.Field(0.75, gt=0)  # centre of the innermost sensitivity
    dist_soft_max: float = 5.5  # centre of the outermost sensitivity
    dist_hard_max: float = 6.5  # cutoff: the cosine envelope reaches zero here
    sensitivity_type: Literal["inverse", "linear"] = "inverse"  # hippynn's names: 1/r- or r-spaced Gaussians
    tensor_order: Literal[0, 1, 2] = 0  # 0: HIP-NN; 1, 2: HIP-NN-TS (vector, quadrupole sensitivities)
    resnet: bool = True
    decay_factor: float = pydantic.Field(1e-2, gt=0, le=1)  # initial scale of energy term k: decay_factor**k

    @pydantic.model_validator(mode="after")
    def _ordered_distances(self) -> "HipnnOptions":
        if not self.dist_soft_min < self.dist_soft_max <= self.dist_hard_max:
            raise ValueError(f"expected dist_soft_min < dist_soft_max <= dist_hard_max, got {self.dist_soft_min}, {self.dist_soft_max}, {self.dist_hard_max} Å")
        return self


class HipnnModel(torch.nn.Module):
    """hippynn's HIP-NN network and hierarchical energy target on given pairs.

    ``forward(one_hot, pair_first, pair_second, pair_vectors, conformation, n_conformations)``:
    one-hot species (A, S), pairs (E,) with vectors (E, 3) Å from ``pair_first`` to
    ``pair_second``, each atom's conformation (A,); returns (N,) energies in eV.
    """

    def __init__(self, network: torch.nn.Module, energy: torch.nn.Module, tensor_order: int):
        super().__init__()
        self.network, self.energy, self.tensor_order = network, energy, tensor_order

    def forward(self, one_hot, pair_first, pair_second, pair_vectors, conformation, n_conformations: int) -> torch.Tensor:
        distances = torch.linalg.vector_norm(pair_vectors, dim=-1)
        tensors = (pair_vectors,) if self.tensor_order else ()
        with _quiet_distances():
            features = self.network(one_hot, pair_first, pair_second, distances, *tensors)
        return self.energy(features, conformation, n_conformations)[0].squeeze(-1)


class HipnnBackend:
    """HIP-NN: E = Σ_i Σ_k E_k(features of atom i after k interaction layers), E_0 = e_{Z_i}."""

    name = "hippynn"
    Options = HipnnOptions
    tiny = {"n_features": 6, "n_sensitivities": 6, "n_interaction_layers": 1, "n_atom_layers": 1, "dist_soft_max": 4.0, "dist_hard_max": 5.0}
    export_suffix = ".hippynn.pt"  # the native file ``ekd export`` writes
    elements = None  # any element; reference energies come from ekd
    periodic = True  # energy hands HIP-NN the core's edge vectors, images included
    #: diverse ensemble members (cycled): different cutoffs, the outermost sensitivity 1 Å inside
    #: each as in hippynn's ANI-1x example
    variations = ({}, {"dist_soft_max": 4.5, "dist_hard_max": 5.5}, {"dist_soft_max": 5.0, "dist_hard_max": 6.0}, {"dist_soft_max": 6.0, "dist_hard_max": 7.0})

    def cutoff(self, options: HipnnOptions) -> float:
        return options.dist_hard_max

    def build(self, options: HipnnOptions, species: list[int], statistics: Statistics) -> HipnnModel:
        networks, targets = _hippynn("networks.hipnn"), _hippynn("layers.targets")
        network = getattr(networks, NETWORKS[options.tensor_order])(
            n_features=options.n_features,
            n_sensitivities=options.n_sensitivities,
            dist_soft_min=options.dist_soft_min,
            dist_soft_max=options.dist_soft_max,
            dist_hard_max=options.dist_hard_max,
            n_atom_layers=options.n_atom_layers,
            n_interaction_layers=options.n_interaction_layers,
            possible_species=[0, *species],  # 0: hippynn's blank (padding) atom
            sensitivity_type=options.sensitivity_type,
            resnet=options.resnet,
        )
        energy = targets.HEnergy(network.feature_sizes)
        with torch.no_grad():  # hippynn's hierarchical_energy_initialization, E0 from ekd's fit
            reference = energy.layers[0].weight
            reference.copy_(torch.tensor([[statistics.reference_energies[z] for z in species]], dtype=reference.dtype))
            reference.requires_grad_(False)
            for k, layer in enumerate(energy.layers[1:], start=1):
                layer.weight.mul_(options.decay_factor**k)
                layer.bias.mul_(options.decay_factor**k)
        return HipnnModel(network, energy, options.tensor_order)

    def convert(self, model: HipnnModel, batch: Batch) -> torch.Tensor:
        """(A, S) one-hot species in the order of the model's species (hippynn's encoding), in the
        model's dtype (converted once per batch, not at every step)."""
        species = model.network.species_set[1:]
        return torch.nn.functional.one_hot(batch.element_index(species), len(species)).to(model.energy.layers[0].weight.dtype)

    def energy(self, model: HipnnModel, batch: Batch) -> torch.Tensor:
        centre, neighbour = batch.edge_index
        return model(batch.inputs, centre, neighbour, batch.edge_vectors(), batch.conformation, batch.n_conformations)

    def export(self, module: HipnnModel, path) -> None:
        """Write the model as a hippynn ``GraphModule`` (``torch.save``; inputs: species (M, A)
        padded with 0 and positions (M, A, 3) Å; output: the ``HEnergy`` node's energy in eV).

        In hippynn: ``model = torch.load(path, weights_only=False)``, then
        ``HippynnCalculator(model.node_from_name("HEnergy"), en_unit=ase.units.eV)`` from
        ``hippynn.interfaces.ase_interface`` (its own pair finding, periodic cells included).
        """
        path = Path(path)
        if not path.name.endswith(self.export_suffix):
            raise ConfigError(f"{path}: a hippynn model file name must end with '{self.export_suffix}'")
        graphs = _hippynn("graphs")
        module = copy.deepcopy(module).cpu()
        species, positions = graphs.inputs.SpeciesNode(db_name="species"), graphs.inputs.PositionsNode(db_name="coordinates")
        network = getattr(graphs.networks, NETWORKS[module.tensor_order])("HIPNN", (species, positions), module=module.network)
        energy = graphs.targets.HEnergyNode("HEnergy", network, module=module.energy)
        torch.save(graphs.GraphModule([species, positions], [energy.mol_energy]), path)


def _hippynn(name: str = ""):
    """hippynn or its submodule ``name`` (e.g. ``"networks.hipnn"``), imported without the warnings its
    import raises on a CPU (no numba/cupy/triton kernels: hippynn then uses plain PyTorch ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"hippynn.{name}" if name else "hippynn")


@contextlib.contextmanager
def _quiet_distances():
    """hippynn's warning for pairs closer than the innermost sensitivity off (its message
    differs per batch, so it would repeat every step), as hippynn's ANI-1x example does."""
    settings = _hippynn().settings
    before, settings.WARN_LOW_DISTANCES = settings.WARN_LOW_DISTANCES, False
    try:
        yield
    finally:
        settings.WARN_LOW_DISTANCES = before


@ekd.hookimpl
def ekd_register_backends(register):
    """Entry point of the ``hippynn`` backend (group ``ekd``)."""
    register(HipnnBackend())
