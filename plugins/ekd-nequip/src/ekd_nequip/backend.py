"""The ``nequip`` backend: NequIP message passing (Batzner et al. 2022) built with nequip 0.19.

The model is nequip's own ``NequIPGNNModel`` built in Python (no hydra/YAML config), with energy
output only: ekd takes forces as −∂E/∂x itself. Per-type energy shifts are ekd's reference
energies, ``avg_num_neighbors`` comes from the training data (ekd's statistics), and the
per-type scale is 1, so nothing needs force statistics. Units: Å, eV.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import yaml
from ase.data import atomic_numbers, chemical_symbols

import ekd
from ekd.backend import R_MAX_VARIATIONS, BackendOptions, Batch, Statistics, neighbour_normalisation
from ekd.data import Dataset
from ekd.errors import ConfigError

__all__ = ["NequipBackend", "NequipOptions"]

#: nequip-package archive format written by nequip 0.19 (``_CURRENT_NEQUIP_PACKAGE_VERSION`` in
#: nequip/scripts/package.py, not imported: that module reconfigures logging on import)
NEQUIP_PACKAGE_VERSION = 2

_DYNAMO_FLAGS = ("capture_dynamic_output_shape_ops", "capture_scalar_outputs")


class NequipOptions(BackendOptions):
    """NequIP hyperparameters; names and defaults follow ``nequip.model.NequIPGNNModel``.

    ``avg_num_neighbors`` normalises the sums over neighbours; None (the default) takes the mean
    number of atoms within ``r_max`` of an atom from the training data, as nequip's trainer does.
    """

    r_max: float = 5.0  # Å, cutoff radius
    num_layers: int = 4  # interaction blocks
    l_max: int = 1  # highest rotation order of the features
    parity: bool = True  # keep features of both parities
    num_features: int = 32  # multiplicity of each irrep
    num_bessels: int = 8  # radial Bessel basis size
    polynomial_cutoff_p: int = 6  # exponent of the polynomial cutoff envelope
    radial_mlp_depth: int = 1  # hidden layers of the radial MLPs
    radial_mlp_width: int = 128  # width of the radial MLPs
    avg_num_neighbors: float | None = None


class NequipBackend:
    """NequIP: E = Σ_i (NN_i + e_{Z_i}) with E(3)-equivariant convolutions up to ``r_max``."""

    name = "nequip"
    Options = NequipOptions
    tiny = {"num_layers": 2, "num_features": 4, "num_bessels": 4, "radial_mlp_width": 8}
    export_suffix = ".nequip.zip"  # the native file ``ekd export`` writes
    elements = None  # any element; reference energies come from ekd
    variations = R_MAX_VARIATIONS  # diverse ensemble members: different cutoff radii
    periodic = True  # energy hands nequip the core's edge vectors, images included
    #: on a CPU (size: auto): 3 layers of 16 features. On the embedded set an energy-only epoch
    #: takes 0.82 s on one core instead of 2.09 s (4 layers of 32), and an energy-only model
    #: reaches a held-out force MAE of 3.57 kcal/mol/Å against upstream's 3.2-3.6; 2 layers of
    #: 32 (0.49 s) reached only 4.31 (docs/sweep.md)
    small = {"num_layers": 3, "num_features": 16}

    def cutoff(self, options: NequipOptions) -> float:
        return options.r_max

    def build(self, options: NequipOptions, species: list[int], statistics: Statistics) -> torch.nn.Module:
        from nequip.model import NequIPGNNModel

        # nequip's model_builder seeds and sets the dtype itself: take both from ekd's settings,
        # before nequip's global set-up reseeds torch (123) and makes float64 the default
        seed = int(torch.randint(2**31 - 1, ()))
        model_dtype = str(torch.get_default_dtype()).removeprefix("torch.")
        type_names = [chemical_symbols[z] for z in species]
        with _nequip_global_state():
            return NequIPGNNModel(
                seed=seed,
                model_dtype=model_dtype,
                type_names=type_names,
                r_max=options.r_max,
                num_layers=options.num_layers,
                l_max=options.l_max,
                parity=options.parity,
                num_features=options.num_features,
                num_bessels=options.num_bessels,
                polynomial_cutoff_p=options.polynomial_cutoff_p,
                radial_mlp_depth=options.radial_mlp_depth,
                radial_mlp_width=options.radial_mlp_width,
                avg_num_neighbors=neighbour_normalisation(options, statistics, self.name),
                per_type_energy_shifts={chemical_symbols[z]: e for z, e in statistics.reference_energies.items()},
                per_type_energy_scales=1.0,
                do_derivatives=False,
            )

    def convert(self, model: torch.nn.Module, batch: Batch) -> dict:
        """nequip's graph fields: atom types (indices into ``type_names``), the core's edges
        within ``r_max`` and batching."""
        from nequip.data import AtomicDataDict

        types = torch.tensor([atomic_numbers[name] for name in model.type_names])  # sorted: ekd's species order
        return {
            AtomicDataDict.ATOM_TYPE_KEY: batch.element_index(types),
            AtomicDataDict.EDGE_INDEX_KEY: batch.edge_index,
            AtomicDataDict.BATCH_KEY: batch.conformation,
            AtomicDataDict.NUM_NODES_KEY: batch.sizes,
        }

    def energy(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        from nequip.data import AtomicDataDict

        # the core's edge vectors, periodic images included (nequip uses given vectors as they are)
        data = {AtomicDataDict.POSITIONS_KEY: batch.positions, AtomicDataDict.EDGE_VECTORS_KEY: batch.edge_vectors(), **batch.inputs}
        return model(data)[AtomicDataDict.TOTAL_ENERGY_KEY].squeeze(-1)

    def export(self, module: torch.nn.Module, path) -> None:
        """Write a nequip package (``*.nequip.zip``, the format of ``nequip-package build``).

        The packaged model computes its own forces (nequip's ``enable_ForceStressOutput``), so it
        runs in nequip's tools: ``nequip.model.ModelFromPackage``, ``nequip-package info``,
        ``nequip-compile PATH out.nequip.pt2 --mode aotinductor --device cpu --target ase`` and
        then ``nequip.integrations.ase.NequIPCalculator.from_compiled_model("out.nequip.pt2")``.
        Only the eager model is packaged (no train-time ``compile`` variant).
        """
        from nequip.model import modify
        from nequip.utils.versions import get_current_code_versions
        from nequip.utils.versions.version_utils import get_version_safe

        private = package_internals()

        path = Path(path)
        if not path.name.endswith(".nequip.zip"):
            raise ConfigError(f"{path}: a nequip package file name must end with '.nequip.zip'")
        model = modify(copy.deepcopy(module).cpu(), [{"modifier": "enable_ForceStressOutput"}])
        metadata = {
            "versions": get_current_code_versions(verbose=False),
            "external_modules": {name: get_version_safe(name) for name in private.external_modules},
            "package_version_id": NEQUIP_PACKAGE_VERSION,
            "available_models": [private.eager_model_key],
            "atom_types": dict(enumerate(model.type_names)),
        }
        note = {"source": "ekd (built in Python, no nequip training config)", "metadata": model.metadata}
        with private.quiet_packaging(), torch.package.PackageExporter(path) as exporter:
            exporter.mock([f"{name}.**" for name in private.mock_modules])
            exporter.extern([f"{name}.**" for name in private.external_modules])
            exporter.intern([f"{name}.**" for name in private.internal_modules])
            exporter.save_pickle("model", "example_data.pkl", self._example_data(model), dependencies=True)
            exporter.save_text("model", "config.yaml", yaml.safe_dump(note))
            exporter.save_text("model", "package_metadata.txt", yaml.safe_dump(metadata))
            exporter.save_pickle("model", f"{private.eager_model_key}_model.pkl", torch.nn.ModuleDict({private.sole_model_key: model}), dependencies=True)

    def _example_data(self, model: torch.nn.Module) -> dict:
        """A small non-periodic structure of the model's types, as ``nequip-compile`` traces it:
        float64, one frame, a large cell and zero cell shifts (positions in Å)."""
        from nequip.data import AtomicDataDict

        symbols = (model.type_names * 4)[: max(4, len(model.type_names))]
        numbers = torch.tensor([atomic_numbers[name] for name in symbols])
        step = 0.3 * float(model.metadata["r_max"])  # a zigzag chain: every atom has neighbours
        positions = torch.tensor([[step * k, 0.5 * step * (k % 2), 0.0] for k in range(len(symbols))], dtype=torch.float64)
        batch = Batch.from_frames(Dataset.from_arrays([numbers.numpy()], [positions.numpy()], ["example"]), torch.float64, cutoff=float(model.metadata["r_max"]))
        data = {AtomicDataDict.POSITIONS_KEY: positions, **self.convert(model, batch)}
        data[AtomicDataDict.CELL_KEY] = 1e5 * torch.eye(3, dtype=torch.float64)[None]
        data[AtomicDataDict.EDGE_CELL_SHIFT_KEY] = torch.zeros(data[AtomicDataDict.EDGE_INDEX_KEY].shape[1], 3, dtype=torch.float64)
        return data


class _Internals(NamedTuple):
    eager_model_key: str
    sole_model_key: str
    external_modules: tuple
    internal_modules: tuple
    mock_modules: tuple
    quiet_packaging: Callable
    set_global_state_initialized: Callable[[bool], None]


def package_internals() -> _Internals:
    """nequip's private names that writing a package and restoring its global state need.

    nequip 0.19 has no public API to write a ``.nequip.zip`` from a model built in Python (its
    ``nequip-package`` works from a training checkpoint) nor to undo ``set_global_state``; this is
    the one place that reaches into its private modules, and ``tests/test_nequip_backend.py``
    fails loudly when nequip changes them.
    """
    from nequip.model.saved_models.package import _suppress_package_importer_exporter_warnings
    from nequip.model.utils import _EAGER_MODEL_KEY
    from nequip.scripts._package_utils import _EXTERNAL_MODULES, _INTERNAL_MODULES, _MOCK_MODULES
    from nequip.train.lightning import _SOLE_MODEL_KEY
    from nequip.utils import global_state

    if not hasattr(global_state, "_GLOBAL_STATE_INITIALIZED"):
        raise ImportError("nequip.utils.global_state._GLOBAL_STATE_INITIALIZED is gone: this nequip is not the one ekd-nequip supports")

    def set_global_state_initialized(value: bool) -> None:
        global_state._GLOBAL_STATE_INITIALIZED = value

    return _Internals(_EAGER_MODEL_KEY, _SOLE_MODEL_KEY, tuple(_EXTERNAL_MODULES), tuple(_INTERNAL_MODULES), tuple(_MOCK_MODULES),
                      _suppress_package_importer_exporter_warnings, set_global_state_initialized)


@contextlib.contextmanager
def _nequip_global_state():
    """nequip's global set-up inside, everything it changes process-wide restored on exit.

    nequip's ``model_builder`` insists on ``set_global_state()`` having run; its first run seeds
    torch, NumPy and ``random`` (123), makes float64 the default dtype, sets ``PL_*`` and fuser
    environment variables, the TorchScript fusion strategy, torch._dynamo flags, file-system
    tensor sharing, e3nn's optimisation defaults and (on CUDA) disables TF32. Models built later
    in the process (other backends, other seeds) must not see any of it, and nequip's own tools
    must find the state as before (so they set it up themselves when they need it). Not undone:
    on CUDA with torch >= 2.13, the legacy ``torch.backends.cudnn.allow_tf32`` flag nequip syncs
    (reading it can raise there); it only concerns cuDNN convolutions.
    """
    import e3nn
    from nequip.utils import global_state

    initialised, dtype, environment = global_state.global_state_initialized(), torch.get_default_dtype(), dict(os.environ)
    rng = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    sharing, e3nn_defaults = torch.multiprocessing.get_sharing_strategy(), e3nn.get_optimization_defaults()
    dynamo = {flag: getattr(torch._dynamo.config, flag) for flag in _DYNAMO_FLAGS}
    fusion = _set_fusion_strategy([])  # read by swapping, put back at once
    _set_fusion_strategy(fusion)
    try:
        with torch.backends.flags(fp32_precision=None):  # restores the TF32 setting
            if not initialised:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # its TorchScript fusion call
                    global_state.set_global_state()
            yield
    finally:
        package_internals().set_global_state_initialized(initialised)
        torch.set_default_dtype(dtype)
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        os.environ.update(environment)
        torch.random.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.multiprocessing.set_sharing_strategy(sharing)
        e3nn.set_optimization_defaults(**e3nn_defaults)
        for flag, value in dynamo.items():
            setattr(torch._dynamo.config, flag, value)
        _set_fusion_strategy(fusion)


def _set_fusion_strategy(strategy: list) -> list:
    """TorchScript's fusion strategy set to ``strategy``; returns the previous one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's; nequip sets it
        return torch.jit.set_fusion_strategy(strategy)


@ekd.hookimpl
def ekd_register_backends(register):
    """Entry point of the ``nequip`` backend (group ``ekd``)."""
    register(NequipBackend())
