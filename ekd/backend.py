"""What a model backend is: the small interface every architecture implements.

A backend declares its cutoff, builds a module from its options and the data's statistics, and
turns ekd's :class:`Batch` (with the core's neighbour edges) into energies. Everything else —
neighbour lists, statistics, forces by autograd, training, saving, loading, the ASE calculator,
the teacher and student roles — lives in the core and works the same for every backend
(see :mod:`ekd.model`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pydantic
import torch

from ekd.config import validate
from ekd.errors import BackendError, ConfigError, PluginError

if TYPE_CHECKING:  # for annotations only, so that no import cycle forms
    from ekd.data.frames import Dataset, PerConformation

__all__ = ["CAPABILITIES", "Backend", "BackendOptions", "Batch", "Converts", "Exportable", "Periodic", "Sized", "Statistics", "Pretrained", "Varied", "capabilities", "R_MAX_VARIATIONS", "check_backend", "neighbour_normalisation", "validate_options"]


class BackendOptions(pydantic.BaseModel):
    """Base class of a backend's hyperparameters: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def loss_weights(frames: Dataset) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(N,) per-conformation weights of the energy loss and (A,) per-atom weights of the force
    loss, None where all are one: ``atom_data['weight']`` (a conformation's weight, the same on
    each of its atoms: its source's, ``data.mix``, or the spread gate's) scales both;
    ``atom_data['force_weight']`` (e.g. inverse teacher spread) the forces' too."""
    weight, force_weight = frames.atom_data.get("weight"), frames.atom_data.get("force_weight")
    if weight is None:
        return None, force_weight
    weight = np.asarray(weight, dtype=float)
    return weight[frames.ptr[:-1]], weight if force_weight is None else weight * force_weight


@dataclasses.dataclass
class Batch:
    """Conformations as tensors, atoms concatenated (the layout of :class:`ekd.data.Dataset`).

    Attributes:
        numbers: (A,) int64 atomic numbers.
        positions: (A, 3) Å; the core sets ``requires_grad`` when forces are wanted, so a backend
            must compute energies from this tensor (not from a copy of it).
        conformation: (A,) int64 index of each atom's conformation.
        ptr: (N + 1,) int64 atom offsets.
        energy: (N,) eV reference energies, or None.
        forces: (A, 3) eV/Å force labels, or None.
        force_weight: (A,) per-atom weight of the force loss, or None (all ones).
        energy_weight: (N,) per-conformation weight of the energy loss, or None (all ones).
        stress: (N, 6) eV/Å³ stress labels (Voigt, NaN rows where unknown: molecules), or None.
        edge_index: (2, E) int64 ``[centre, neighbour]`` of every ordered pair of atoms of a
            conformation within the backend's cutoff (both directions), built by the core.
        shifts: (E, 3) int64 cell shifts of the edges (zeros for molecules).
        cell: (N, 3, 3) Å, each conformation's cell vectors as rows (zeros for molecules).
        pbc: (N, 3) bool, periodic along each cell vector (False for molecules).
        inputs: what the backend's optional ``convert`` returned for this batch (cached).
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    conformation: torch.Tensor
    ptr: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    force_weight: torch.Tensor | None = None
    energy_weight: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    edge_index: torch.Tensor | None = None
    shifts: torch.Tensor | None = None
    cell: torch.Tensor | None = None
    pbc: torch.Tensor | None = None
    inputs: Any = None

    @property
    def n_conformations(self) -> int:
        return len(self.ptr) - 1

    @property
    def sizes(self) -> torch.Tensor:
        """(N,) atoms per conformation."""
        return self.ptr[1:] - self.ptr[:-1]

    def element_index(self, species: torch.Tensor) -> torch.Tensor:
        """(A,) position of each atom's atomic number in the sorted ``species`` (S,) tensor: the
        row of a per-element table (one-hot, embedding, per-type parameters)."""
        return torch.searchsorted(species.to(self.numbers.device), self.numbers)

    def edge_offsets(self) -> torch.Tensor:
        """(E, 3) Å: ``shift · cell``, where each edge's neighbour image sits relative to the
        neighbour atom (zeros for molecules), differentiable in ``cell``."""
        return torch.einsum("ek,ekd->ed", self.shifts.to(self.positions.dtype), self.cell[self.conformation[self.edge_index[0]]])

    def edge_vectors(self) -> torch.Tensor:
        """(E, 3) Å: ``positions[neighbour] − positions[centre] + shift · cell``, differentiable in
        ``positions`` (and in ``cell``)."""
        centre, neighbour = self.edge_index
        return self.positions[neighbour] - self.positions[centre] + self.edge_offsets()

    @classmethod
    def from_frames(cls, frames: Dataset, dtype: torch.dtype, device: torch.device | str = "cpu", cutoff: float | None = None) -> "Batch":
        """Tensors of ``frames``, with neighbour edges within ``cutoff`` (Å) when given; the loss
        weights from :func:`loss_weights`."""
        from ekd.graph import neighbour_edges

        as_float = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        as_long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=device)  # noqa: E731
        edges, shifts = neighbour_edges(frames, cutoff) if cutoff is not None else (None, None)
        energy_weight, force_weight = loss_weights(frames)
        return cls(
            numbers=as_long(frames.numbers),
            positions=as_float(frames.positions),
            conformation=as_long(frames.conformation_index),
            ptr=as_long(frames.ptr),
            energy=as_float(frames.energy),
            forces=as_float(frames.forces),
            force_weight=as_float(force_weight),
            energy_weight=as_float(energy_weight),
            stress=as_float(frames.stress),
            edge_index=None if edges is None else as_long(edges),
            shifts=None if shifts is None else as_long(shifts),
            cell=as_float(frames.cells),
            pbc=torch.as_tensor(frames.periodic_axes, dtype=torch.bool, device=device),
        )


@dataclasses.dataclass(frozen=True)
class Statistics:
    """What the core measures on the training split before a model is built (as upstream
    trainers do), passed to :meth:`Backend.build` and saved with the model.

    Attributes:
        reference_energies: per-element energies (eV), the least-squares fit of the energies to
            the composition; the model adds them to its output.
        avg_num_neighbors: mean neighbours per atom within the backend's cutoff.
        energy_scale: eV per atom, RMS of the energy left after the reference energies.
        force_scale: eV/Å, RMS of the force components (None when training sees no forces).
    """

    reference_energies: dict[int, float]
    avg_num_neighbors: float | None = None
    energy_scale: float | None = None
    force_scale: float | None = None

    @classmethod
    def of(cls, frames: PerConformation, species: list[int], cutoff: float, block: int = 4096) -> "Statistics":
        """The statistics of ``frames`` (with energies; a :class:`Dataset` or a streamed one) for
        a backend with this cutoff (Å). The per-atom sums (neighbours, squared forces) are taken
        ``block`` conformations at a time, each rank its share of the blocks, summed over ranks."""
        from ekd import distributed
        from ekd.graph import neighbour_edges
        from ekd.train.reference import composition_blocks, fit_reference_energies

        reference = fit_reference_energies(frames, species)
        contributions, energy, sizes = np.array([reference[z] for z in species]), frames.energy, frames.sizes
        per_atom_squares = sum(float(np.sum(((energy[rows] - counts @ contributions) / sizes[rows]) ** 2)) for rows, counts in composition_blocks(frames, species))
        sums = np.zeros(3)  # ordered neighbour pairs, squared force components, atoms
        for _, part in frames.blocks(block, distributed.world(), distributed.rank()):
            forces_squared = float(np.sum(part.forces**2)) if part.forces is not None else 0.0
            sums += [neighbour_edges(part, cutoff)[0].shape[1], forces_squared, part.n_atoms]
        pairs, forces_squared, atoms = distributed.all_sum(torch.from_numpy(sums)).tolist()
        return cls(
            reference_energies=reference,
            avg_num_neighbors=pairs / max(atoms, 1),
            energy_scale=float(np.sqrt(per_atom_squares / len(frames))),
            force_scale=float(np.sqrt(forces_squared / (3 * atoms))) if frames.has_forces else None,
        )

    def to_dict(self) -> dict:
        """Plain types for a checkpoint (element keys as strings)."""
        return {**dataclasses.asdict(self), "reference_energies": {str(z): e for z, e in self.reference_energies.items()}}

    @classmethod
    def from_dict(cls, values: dict) -> "Statistics":
        return cls(**{**values, "reference_energies": {int(z): float(e) for z, e in values["reference_energies"].items()}})


@runtime_checkable
class Backend(Protocol):
    """The contract of a model backend (ANI, MACE, NequIP, HIP-NN, or yours).

    Attributes:
        name: short unique name used on the command line (``--backend ani``).
        Options: a :class:`BackendOptions` subclass with the hyperparameters and their defaults.
        tiny: options of a small, fast model (tests, smoke runs); validated by ``Options``.
        elements: atomic numbers the backend can model, or None for any.

    Optional capabilities are declared by implementing :class:`Exportable`,
    :class:`Pretrained` or :class:`Varied`; :func:`check_backend` checks all of it when a
    plugin registers the backend.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]]
    tiny: ClassVar[dict]
    elements: ClassVar[frozenset[int] | None]

    def cutoff(self, options: BackendOptions) -> float:
        """The model's cutoff (Å) under ``options``: the core's neighbour edges and the
        ``avg_num_neighbors`` statistic are computed within it."""

    def build(self, options: BackendOptions, species: list[int], statistics: Statistics) -> torch.nn.Module:
        """A new, randomly initialised model (the core seeds torch before calling).

        Args:
            options: validated hyperparameters.
            species: sorted atomic numbers the model must handle.
            statistics: the training data's :class:`Statistics`; the model adds
                ``statistics.reference_energies`` (eV per element) to its output, so that the
                network learns E − Σ e_Z.
        """

    def energy(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """(N,) total energies in eV, differentiable with respect to ``batch.positions``, from
        the core's neighbour edges (``batch.edge_index``, ``batch.edge_vectors()``)."""



@runtime_checkable
class Converts(Protocol):
    """Capability: backend-specific inputs of a batch beyond the core's graph (padding, type
    indices), computed once per batch and cached across epochs as ``batch.inputs``. It must not
    depend on anything that changes during training; positions stay in ``batch.positions``."""

    def convert(self, model: torch.nn.Module, batch: Batch) -> Any: ...


@runtime_checkable
class Exportable(Protocol):
    """Capability: write a module in the backend library's own format (``ekd export``), so the
    model runs in that library's tools; ``export_suffix`` is that format's file name ending."""

    export_suffix: str

    def export(self, module: torch.nn.Module, path) -> None: ...


@runtime_checkable
class Pretrained(Protocol):
    """Capability: load a published ensemble as frozen models (teacher spec
    ``<name>-pretrained:PATH``); each model's ``info["pretrained"]`` records its ``name``,
    ``level_of_theory`` and the sha256 of the files read."""

    def pretrained(self, path, dtype: torch.dtype, device) -> list: ...


@runtime_checkable
class Varied(Protocol):
    """Capability: option sets that make diverse ensemble members, cycled over a backend's
    teachers (e.g. different cutoffs) unless the config says otherwise."""

    variations: tuple[dict, ...]


@runtime_checkable
class Sized(Protocol):
    """Capability: options that size the model for the device it trains on. ``small`` is what
    a CPU trains in minutes on small molecules; the library's own defaults are sized for GPUs.
    A run picks ``small`` on a CPU and the defaults on CUDA (``size: auto``), below the user's
    own options."""

    small: dict


#: a diversity recipe for models with one radial cutoff ``r_max`` (Å): members that differ in
#: their cutoffs beat members that differ by seed only (the ANI recipe; docs/sweep.md)
R_MAX_VARIATIONS: tuple[dict, ...] = ({}, {"r_max": 4.5}, {"r_max": 5.5}, {"r_max": 6.0})

@runtime_checkable
class Periodic(Protocol):
    """Capability: the model is right for periodic cells. Declare ``periodic = True`` only when
    ``energy`` sees positions through the core's edges with their images, i.e. through
    :meth:`Batch.edge_vectors` (positions, integer shifts and cell, inside ``energy``). A
    backend without it refuses periodic data with a clear error instead of modelling an isolated
    cluster."""

    periodic: bool


@runtime_checkable
class SharedFeatures(Protocol):
    """Capability: the energy is a readout of per-atom features (ANI's AEVs) that every model
    with the same ``feature_key`` of its options computes identically, so an ensemble of such
    members computes the features once per batch and each member's forces take a backward pass
    through the features only. ``energy(module, batch)`` must equal
    ``readout(module, batch, features(module, batch))`` (the conformance suite checks it)."""

    def feature_key(self, options: BackendOptions) -> str: ...

    def features(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor: ...

    def readout(self, module: torch.nn.Module, batch: Batch, features: torch.Tensor) -> torch.Tensor: ...


#: the optional capabilities a backend may declare, by name
CAPABILITIES: dict[str, type] = {"convert": Converts, "export": Exportable, "features": SharedFeatures, "periodic": Periodic, "pretrained": Pretrained,
                                 "sized": Sized, "variations": Varied}


def capabilities(backend: Backend) -> set[str]:
    """Names of the optional capabilities ``backend`` implements (see :data:`CAPABILITIES`)."""
    return {name for name, protocol in CAPABILITIES.items() if isinstance(backend, protocol)}


def check_backend(backend, plugin: str) -> None:
    """Raise a PluginError naming ``plugin`` unless ``backend`` keeps the :class:`Backend`
    contract: its members, an ``Options`` class of :class:`BackendOptions`, and ``tiny`` and
    every ``variations`` entry valid ``Options``."""
    missing = [m for m in ("name", "Options", "tiny", "elements", "cutoff", "build", "energy") if not hasattr(backend, m)]
    if missing:
        raise PluginError(f"plugin '{plugin}' registered {type(backend).__name__}, which lacks {', '.join(missing)} of the ekd Backend contract")
    if not (isinstance(backend.name, str) and backend.name.isidentifier()):
        raise PluginError(f"plugin '{plugin}': backend name {backend.name!r} must be an identifier (it is typed on the command line)")
    if not (isinstance(backend.Options, type) and issubclass(backend.Options, BackendOptions)):
        raise PluginError(f"plugin '{plugin}': backend '{backend.name}' Options must subclass ekd.backend.BackendOptions")
    declared = {"tiny": [backend.tiny]} | ({"variations": list(backend.variations)} if "variations" in capabilities(backend) else {})
    declared |= {"small": [backend.small]} if "sized" in capabilities(backend) else {}
    for member, option_sets in declared.items():
        for k, options in enumerate(option_sets):
            try:
                validate_options(backend, options, f"{backend.name}.{member}" + (f"[{k}]" if member == "variations" else ""))
            except ConfigError as error:
                raise PluginError(f"plugin '{plugin}': {error}") from None


def neighbour_normalisation(options: BackendOptions, statistics: Statistics, backend: str) -> float:
    """``avg_num_neighbors`` for a message-passing model: the option when set, else the training
    data's (ekd's :class:`Statistics`); a BackendError when neither is known."""
    value = getattr(options, "avg_num_neighbors", None)
    value = statistics.avg_num_neighbors if value is None else value
    if value is None:
        raise BackendError(f"backend '{backend}': avg_num_neighbors is unknown: build the model from data (Statistics.of) or set the option")
    return float(value)


def validate_options(backend: Backend, options: dict | BackendOptions | None, where: str | None = None) -> BackendOptions:
    """The backend's ``Options`` from a dict; a ConfigError naming ``where.key`` and, for an
    unknown key, the allowed names."""
    if isinstance(options, BackendOptions):
        return options
    return validate(backend.Options, options or {}, where or f"{backend.name} options")
