"""ekd: ensemble knowledge distillation of machine-learning interatomic potentials.

The Python API (``docs/python-api.md``)::

    import ekd
    run = ekd.distill(ekd.RunConfig.load("configs/pairmlp-smoke.yaml"), out="runs/smoke")
    print(run.report.held_out.student_over_baseline)

Units at every boundary: positions Å, energies eV, forces eV/Å; reports in kcal/mol(/Å).
Names are imported on first use, so ``import ekd`` stays fast.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from ekd.hookspecs import hookimpl, hookspec

if TYPE_CHECKING:
    from ekd.data import Dataset, Labels, ReadOptions, Split
    from ekd.ensemble import Ensemble, EnsemblePrediction
    from ekd.errors import BackendError, Cancelled, ConfigError, DataError, EkdError, PluginError
    from ekd.active import GrowSettings, grow
    from ekd.model import Model, Prediction
    from ekd.pipeline import label, train_ensemble, train_model, train_students
    from ekd.pipeline.evaluate import score
    from ekd.plugins import backends, register_backend
    from ekd.progress import ProgressEvent
    from ekd.report import Headline, Report, Scores, SeedSpread
    from ekd.run import Run, distill, load
    from ekd.runconfig import RunConfig
    from ekd.sampling import SampleSettings, sample

_LAZY = {
    "Dataset": "ekd.data",
    "Labels": "ekd.data",
    "ReadOptions": "ekd.data",
    "Split": "ekd.data",
    "Ensemble": "ekd.ensemble",
    "EnsemblePrediction": "ekd.ensemble",
    "BackendError": "ekd.errors",
    "Cancelled": "ekd.errors",
    "ConfigError": "ekd.errors",
    "DataError": "ekd.errors",
    "EkdError": "ekd.errors",
    "PluginError": "ekd.errors",
    "GrowSettings": "ekd.active",
    "grow": "ekd.active",
    "Model": "ekd.model",
    "Prediction": "ekd.model",
    "label": "ekd.pipeline",
    "score": "ekd.pipeline.evaluate",
    "train_ensemble": "ekd.pipeline",
    "train_model": "ekd.pipeline",
    "train_students": "ekd.pipeline",
    "backends": "ekd.plugins",
    "register_backend": "ekd.plugins",
    "ProgressEvent": "ekd.progress",
    "Headline": "ekd.report",
    "Report": "ekd.report",
    "Scores": "ekd.report",
    "SeedSpread": "ekd.report",
    "Run": "ekd.run",
    "distill": "ekd.run",
    "load": "ekd.run",
    "RunConfig": "ekd.runconfig",
    "SampleSettings": "ekd.sampling",
    "sample": "ekd.sampling",
}

__all__ = ["hookimpl", "hookspec", "__version__", *_LAZY]

try:
    __version__ = _metadata.version("ekd")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ekd' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
