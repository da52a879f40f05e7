"""The ``mace`` backend: mace-torch's ScaleShiftMACE, built from scratch for each model.

Defaults follow ``mace_run_train --model MACE`` (Batatia et al. 2022): r_max 5 Å, 8 Bessel
functions, l ≤ 3, correlation 3, two layers (the first a RealAgnosticInteractionBlock, the next
RealAgnosticResidualInteractionBlock), 128x0e + 128x1o. As upstream, the E0s (ekd's per-element
reference energies) and ``avg_num_neighbors`` come from the training data (ekd's statistics);
unlike upstream, scale and shift are options (1 and 0 by default) rather than statistics of the
training forces, so that training on energies alone works. MACE works in eV and Å.
"""

from __future__ import annotations

import numpy as np
import torch

import ekd
from ekd.backend import R_MAX_VARIATIONS, BackendOptions, Batch, Statistics, neighbour_normalisation

__all__ = ["MaceBackend", "MaceOptions"]


def _import_e3nn() -> None:
    """Import e3nn so that it also works at mace-torch's own pin (e3nn 0.4.4, installed when
    ekd-mace is installed alone): that version reads its constants file with ``torch.load``'s
    default, which torch >= 2.6 restricts to tensors; the file holds one other type, ``slice``."""
    with torch.serialization.safe_globals([slice]):
        import e3nn.o3  # noqa: F401


class MaceOptions(BackendOptions):
    """MACE hyperparameters (lengths in Å, energies in eV).

    ``avg_num_neighbors`` normalises the sum over neighbours in each interaction; None (the
    default) takes it from the training data within ``r_max``, as upstream does. ``scale``
    multiplies and ``shift`` (eV per atom) is added to the atomic interaction energies.
    """

    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    hidden_irreps: str = "128x0e + 128x1o"
    MLP_irreps: str = "16x0e"
    radial_MLP: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: float | None = None
    scale: float = 1.0
    shift: float = 0.0


class MaceBackend:
    """MACE: E = Σ_i e_{Z_i} + Σ_i (scale · ε_i + shift), ε_i from equivariant message passing."""

    name = "mace"
    Options = MaceOptions
    tiny = {
        "num_bessel": 4,
        "max_ell": 2,
        "correlation": 2,
        "hidden_irreps": "8x0e + 8x1o",
        "MLP_irreps": "8x0e",
        "radial_MLP": (8,),
    }
    export_suffix = ".model"  # the native file ``ekd export`` writes
    elements = None  # one-hot node attributes: any element; reference energies come from ekd
    periodic = True  # the images' offsets come from batch.edge_offsets() inside energy
    variations = R_MAX_VARIATIONS  # diverse ensemble members: different cutoff radii
    #: on a CPU (size: auto): a quarter of the upstream width, l <= 2, correlation 2. On the
    #: embedded set a student epoch (energies and forces) takes 2.8 s on one core instead of
    #: 34-39 s, and the ANI -> MACE student at this size beats the energy-only baseline (README)
    small = {"hidden_irreps": "32x0e + 32x1o", "max_ell": 2, "correlation": 2, "radial_MLP": (32, 32)}

    def cutoff(self, options: MaceOptions) -> float:
        return options.r_max

    def build(self, options: MaceOptions, species: list[int], statistics: Statistics) -> torch.nn.Module:
        _import_e3nn()
        from e3nn import o3
        from mace import modules

        reference_energies = statistics.reference_energies
        return modules.ScaleShiftMACE(
            r_max=options.r_max,
            num_bessel=options.num_bessel,
            num_polynomial_cutoff=options.num_polynomial_cutoff,
            max_ell=options.max_ell,
            interaction_cls=modules.RealAgnosticResidualInteractionBlock,
            interaction_cls_first=modules.RealAgnosticInteractionBlock,
            num_interactions=options.num_interactions,
            num_elements=len(species),
            hidden_irreps=o3.Irreps(options.hidden_irreps),
            MLP_irreps=o3.Irreps(options.MLP_irreps),
            atomic_energies=np.array([reference_energies[z] for z in species]),
            avg_num_neighbors=neighbour_normalisation(options, statistics, self.name),
            atomic_numbers=species,
            correlation=options.correlation,
            gate=torch.nn.functional.silu,
            radial_MLP=list(options.radial_MLP),
            use_reduced_cg=False,  # upstream's training default; True needs cuequivariance
            atomic_inter_scale=options.scale,
            atomic_inter_shift=options.shift,
        )

    def convert(self, model: torch.nn.Module, batch: Batch) -> dict:
        """MACE's graph without positions: one-hot elements and the core's edges within r_max."""
        node_attrs = torch.nn.functional.one_hot(batch.element_index(model.atomic_numbers), len(model.atomic_numbers))
        # MACE: edge_index = [sender, receiver] and vector = x_receiver − x_sender + shift, the
        # reverse of ekd's [centre, neighbour] edges: the sender is the neighbour
        return {"node_attrs": node_attrs.to(batch.positions.dtype), "edge_index": batch.edge_index.flip(0), "batch": batch.conformation, "ptr": batch.ptr}

    def energy(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        # MACE calls positions.requires_grad_(): hand it an alias, not ekd's cached tensor
        positions = batch.positions if batch.positions.requires_grad else batch.positions.detach()
        # the images' offsets S·cell in Å, here (not cached), so that a strained cell reaches them;
        # MACE's vector x_receiver − x_sender + shift with the sender the neighbour: shift = −S·cell
        inputs = {**batch.inputs, "positions": positions, "shifts": -batch.edge_offsets(), "cell": batch.cell.reshape(-1, 3)}
        return model(inputs, compute_force=False)["energy"]

    def export(self, module: torch.nn.Module, path) -> None:
        """Write ``module`` as a MACE model file (the pickled module) for ``MACECalculator``."""
        torch.save(module, path)


@ekd.hookimpl
def ekd_register_backends(register):
    """Entry point of the ``mace`` backend (group ``ekd``)."""
    register(MaceBackend())
