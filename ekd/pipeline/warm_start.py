"""Warm starts: a run's trainings starting from their namesakes in a previous run (``warm_start``)."""

from __future__ import annotations

from pathlib import Path

from ekd.errors import ConfigError
from ekd.provenance import sha256_file
from ekd.runconfig import RunConfig
from ekd.train import TrainConfig

__all__ = ["warm_started"]


def warm_started(config: RunConfig, train_config: TrainConfig, role: str, name: str) -> tuple[TrainConfig, str | None]:
    """``train_config`` starting from the namesake ``role/name/model.pt`` in ``config.warm_start``
    (with that file's sha256 for the stage's inputs), or as it is without a warm start."""
    if not config.warm_start:
        return train_config, None
    path = Path(config.warm_start) / role / name / "model.pt"
    if not path.is_file():
        raise ConfigError(f"warm_start: {path} does not exist (each teacher, student and baseline starts from its namesake in {config.warm_start})")
    return train_config.model_copy(update={"init_from": str(path)}), sha256_file(path)
