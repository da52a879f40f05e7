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

__all__ = ["Backend", "BackendOptions", "Batch", "validate_options"]


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

    # Optional: ``export(self, module, path)`` writes the module in the backend's native format,
    # so the model runs in that library's own tools (``ekd export``).
    # Optional: ``pretrained(self, path, dtype, device) -> list[Model]`` loads a published
    # ensemble as frozen models (teacher spec ``<name>-pretrained:PATH``); each model's
    # ``info["pretrained"]`` records its source, ``level_of_theory`` and file hashes.


def validate_options(backend: Backend, options: dict | BackendOptions | None, where: str | None = None) -> BackendOptions:
    """The backend's ``Options`` from a dict; a ConfigError naming ``where.key`` and, for an
    unknown key, the allowed names."""
    if isinstance(options, BackendOptions):
        return options
    return validate(backend.Options, options or {}, where or f"{backend.name} options")
