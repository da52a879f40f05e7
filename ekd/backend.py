"""What a model backend is: the small interface every architecture implements.

A backend turns ekd's :class:`Batch` into energies. Everything else — forces by autograd,
training, saving, loading, the ASE calculator, the teacher and student roles — lives in the core
and works the same for every backend (see :mod:`ekd.model`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pydantic
import torch

from ekd.config import validate
from ekd.data import Dataset
from ekd.errors import ConfigError, PluginError

__all__ = ["CAPABILITIES", "Backend", "BackendOptions", "Batch", "Exportable", "Pretrained", "Varied", "capabilities", "check_backend", "validate_options"]


class BackendOptions(pydantic.BaseModel):
    """Base class of a backend's hyperparameters: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


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
        inputs: what :meth:`Backend.convert` returned for this batch (cached by the core).
    """

    numbers: torch.Tensor
    positions: torch.Tensor
    conformation: torch.Tensor
    ptr: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    force_weight: torch.Tensor | None = None
    inputs: Any = None

    @property
    def n_conformations(self) -> int:
        return len(self.ptr) - 1

    @property
    def sizes(self) -> torch.Tensor:
        """(N,) atoms per conformation."""
        return self.ptr[1:] - self.ptr[:-1]

    @classmethod
    def from_frames(cls, frames: Dataset, dtype: torch.dtype, device: torch.device | str = "cpu") -> "Batch":
        """Tensors of ``frames``; force weights come from ``atom_data['force_weight']`` if present."""
        as_float = lambda a: None if a is None else torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        as_long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=device)  # noqa: E731
        return cls(
            numbers=as_long(frames.numbers),
            positions=as_float(frames.positions),
            conformation=as_long(frames.conformation_index),
            ptr=as_long(frames.ptr),
            energy=as_float(frames.energy),
            forces=as_float(frames.forces),
            force_weight=as_float(frames.atom_data.get("force_weight")),
        )


@runtime_checkable
class Backend(Protocol):
    """The contract of a model backend (ANI, MACE, NequIP, or yours).

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

    def build(self, options: BackendOptions, species: list[int], reference_energies: dict[int, float]) -> torch.nn.Module:
        """A new, randomly initialised model (the core seeds torch before calling).

        Args:
            options: validated hyperparameters.
            species: sorted atomic numbers the model must handle.
            reference_energies: per-element energies (eV) the model adds to its output, so that
                the network learns E − Σ e_Z (from ekd's least-squares fit on the training data).
        """

    def convert(self, model: torch.nn.Module, batch: Batch) -> Any:
        """Backend-specific inputs of a batch (padding, neighbour lists, graphs).

        Called once per batch and cached across epochs by the core: put costly work here. It must
        not depend on anything that changes during training. Positions stay in ``batch.positions``.
        """

    def energy(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """(N,) total energies in eV, differentiable with respect to ``batch.positions``.

        ``batch.inputs`` holds what :meth:`convert` returned.
        """



@runtime_checkable
class Exportable(Protocol):
    """Capability: write a module in the backend library's own format (``ekd export``), so the
    model runs in that library's tools."""

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


#: the optional capabilities a backend may declare, by name
CAPABILITIES: dict[str, type] = {"export": Exportable, "pretrained": Pretrained, "variations": Varied}


def capabilities(backend: Backend) -> set[str]:
    """Names of the optional capabilities ``backend`` implements (see :data:`CAPABILITIES`)."""
    return {name for name, protocol in CAPABILITIES.items() if isinstance(backend, protocol)}


def check_backend(backend, plugin: str) -> None:
    """Raise a PluginError naming ``plugin`` unless ``backend`` keeps the :class:`Backend`
    contract: its members, an ``Options`` class of :class:`BackendOptions`, and ``tiny`` and
    every ``variations`` entry valid ``Options``."""
    missing = [m for m in ("name", "Options", "tiny", "elements", "build", "convert", "energy") if not hasattr(backend, m)]
    if missing:
        raise PluginError(f"plugin '{plugin}' registered {type(backend).__name__}, which lacks {', '.join(missing)} of the ekd Backend contract")
    if not (isinstance(backend.name, str) and backend.name.isidentifier()):
        raise PluginError(f"plugin '{plugin}': backend name {backend.name!r} must be an identifier (it is typed on the command line)")
    if not (isinstance(backend.Options, type) and issubclass(backend.Options, BackendOptions)):
        raise PluginError(f"plugin '{plugin}': backend '{backend.name}' Options must subclass ekd.backend.BackendOptions")
    declared = {"tiny": [backend.tiny]} | ({"variations": list(backend.variations)} if "variations" in capabilities(backend) else {})
    for member, option_sets in declared.items():
        for k, options in enumerate(option_sets):
            try:
                validate_options(backend, options, f"{backend.name}.{member}" + (f"[{k}]" if member == "variations" else ""))
            except ConfigError as error:
                raise PluginError(f"plugin '{plugin}': {error}") from None


def validate_options(backend: Backend, options: dict | BackendOptions | None, where: str | None = None) -> BackendOptions:
    """The backend's ``Options`` from a dict; a ConfigError naming ``where.key`` and, for an
    unknown key, the allowed names."""
    if isinstance(options, BackendOptions):
        return options
    return validate(backend.Options, options or {}, where or f"{backend.name} options")
