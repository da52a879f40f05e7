"""Trainings that start from an existing model (``TrainConfig.init_from``): fine-tuning.

The start model decides the architecture (backend, options, elements, statistics); its weights
start the training. Its per-element reference energies are first refit to the training data:
a model trained at one level of theory (wB97X) taught energies of another (CCSD(T)) would
otherwise spend its first epochs learning per-element offsets of hundreds of kcal/mol. The fit
is least squares of E_reference − E_start over the training split's compositions
(:func:`ekd.train.reference.fit_per_element`); it shifts energies by Σ_Z n_Z·Δ_Z and leaves
forces as they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

import numpy as np
import torch

from ekd.data.frames import PerConformation
from ekd.errors import ConfigError
from ekd.model import Model
from ekd.provenance import sha256_file
from ekd.train.reference import fit_per_element

__all__ = ["freeze", "load_start", "reference_shift", "started_from"]


def load_start(path: str | Path, backend: str, options: dict | None = None, device: str | torch.device = "cpu") -> Model:
    """The model at ``path`` (an ekd ``model.pt``) that a training of ``backend`` starts from;
    :class:`ConfigError` in one line when it is missing, of another backend, or when one of the
    ``options`` asked for differs from its own (its other options are the start's)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"init_from {path}: no such model file (expected an ekd model.pt)")
    start = Model.load(path, device=device)  # (an unreadable file: a one-line DataError naming it)
    if start.backend.name != backend:
        raise ConfigError(f"init_from {path}: a '{start.backend.name}' model; a '{backend}' training cannot start from it (same architecture needed)")
    asked = type(start.options).model_validate({**start.options.model_dump(), **(options or {})}).model_dump()
    own = start.options.model_dump()
    differ = [f"{k} {asked[k]!r} (start: {own[k]!r})" for k in own if asked[k] != own[k]]
    if differ:
        raise ConfigError(f"init_from {path}: options differ from the start model's: {'; '.join(differ)}; a fine-tuned model keeps its start's architecture")
    return start


def reference_shift(start: Model, frames: PerConformation) -> np.ndarray:
    """(S,) eV per element of ``start.species``: the least-squares fit of ``frames``' reference
    energies minus the start model's, by composition (elements absent from ``frames`` get 0)."""
    predicted = start.predict(frames, forces=False).energy
    return fit_per_element(frames, frames.energy - predicted, start.species)


def started_from(start: Model, frames: PerConformation, seed: int, dtype: torch.dtype, device: str | torch.device) -> Model:
    """A model with ``start``'s architecture and weights whose reference energies are refit to
    ``frames`` (:func:`reference_shift`); :class:`DataError` if ``frames`` hold elements the
    start model lacks. Its ``info["init_from"]`` records the start's file, hash and the shift."""
    where = start.path or "the start model"
    frames.check_elements(start.species, f"init_from {where}")
    shift = reference_shift(start, frames)
    refit = {z: e + float(d) for (z, e), d in zip(sorted(start.reference_energies.items()), shift)}
    statistics = dataclasses.replace(start.statistics, reference_energies=refit)
    model = Model.build(start.backend, start.species, statistics, start.options, seed=seed, dtype=dtype, device=device)
    unshifted = Model.build(start.backend, start.species, start.statistics, start.options, seed=seed, dtype=dtype, device=device)
    # the tensors that hold the reference energies are the ones that differ between the two builds
    own, other = model.module.state_dict(), unshifted.module.state_dict()
    shifted = {k for k in own if not (torch.equal(own[k], other[k]) if isinstance(own[k], torch.Tensor) else own[k] == other[k])}
    weights = start.module.state_dict()
    model.module.load_state_dict({k: own[k] if k in shifted else weights[k] for k in own})
    model.info["init_from"] = {"path": str(start.path) if start.path else None, "sha256": sha256_file(start.path) if start.path else None,
                               "reference_shift_eV": {int(z): float(d) for z, d in zip(start.species, shift)}}
    return model


def freeze(model: Model, patterns: list[str]) -> list[str]:
    """Stop the parameters whose names match any of the fnmatch ``patterns`` from training;
    returns their names. :class:`ConfigError` for a pattern that matches none."""
    names = [name for name, _ in model.module.named_parameters()]
    frozen = set()
    for pattern in patterns:
        matched = fnmatch.filter(names, pattern)
        if not matched:
            raise ConfigError(f"train.freeze '{pattern}': matches no parameter of the {model.backend.name} model "
                              f"(its parameters look like {', '.join(names[:3])}, ...)")
        frozen.update(matched)
    for name, parameter in model.module.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return sorted(frozen)
