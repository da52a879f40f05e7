"""Teachers that start from existing models (``teachers.init_from``): the models, and which
teacher starts from which file.

The start is a published ensemble (``ani-pretrained:PATH``: the k-th teacher of a backend starts
from member k, cycling) or where ekd models are (a ``model.pt``, a folder of member folders such
as a previous run's ``teachers``): the k-th teacher of a backend starts from the k-th model of
that backend, cycling. Published members are saved once as ekd models under
``<teachers>/starts/`` so that a training starts from, and hashes, a file.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from ekd.ensemble import Ensemble, load_predictor, pretrained_spec
from ekd.errors import ConfigError
from ekd import distributed
from ekd.model import CHECKPOINT_FORMAT, Model
from ekd.provenance import sha256_json
from ekd.runconfig import RunConfig, TeacherMember
from ekd.stages import Stage

__all__ = ["member_starts", "start_models"]

Published = dict[tuple[str, str], list[Model]]


def start_models(config: RunConfig, published: Published) -> dict[str, list[Model]]:
    """The models ``teachers.init_from`` names, by backend ({} without it); a published
    ensemble is loaded into ``published`` once. :class:`ConfigError` in one line when a trained
    teacher's backend has none, before any training."""
    spec = config.teachers.init_from
    if spec is None:
        return {}
    key = pretrained_spec(spec)
    if key is not None:
        if key not in published:
            published[key] = list(load_predictor(spec, device="cpu").models)
        models = published[key]
    else:
        found = load_predictor(spec, device="cpu")
        models = list(found.models) if isinstance(found, Ensemble) else [found]
    by_backend: dict[str, list[Model]] = {}
    for model in models:
        by_backend.setdefault(model.backend.name, []).append(model)
    trained = sorted({backend for backend, _, path in config.teachers.parts() if path is None})
    if not trained:
        raise ConfigError(f"teachers.init_from {spec}: the spec '{config.teachers.spec}' trains no teacher to start from it")
    for backend in trained:
        if backend not in by_backend:
            held = ", ".join(f"{len(v)} {b}" for b, v in by_backend.items())
            raise ConfigError(f"teachers.init_from {spec}: no '{backend}' model for the {backend} teachers to start from (it holds {held})")
    return by_backend


def member_starts(out: Path, members: list[TeacherMember], starts: dict[str, list[Model]]) -> dict[str, tuple[Model, Path]]:
    """Member name → (the model it starts from, that model's file), for the trained ``members``;
    published members are first saved under ``out/starts`` (rank 0, once per source)."""
    found, seen = {}, Counter()
    for member in (m for m in members if not m.pretrained and m.backend in starts):
        models = starts[member.backend]
        k = seen[member.backend] % len(models)
        seen[member.backend] += 1
        found[member.name] = models[k], models[k].path or _saved(out / "starts" / f"{k:02d}-{member.backend}", models[k])
    if found:
        distributed.barrier()
    return found


def _saved(directory: Path, model: Model) -> Path:
    """``directory/model.pt``: ``model`` (a published member) saved as an ekd model, redone when its source files change."""
    stage = Stage(directory, sha256_json("start", CHECKPOINT_FORMAT, model.info["pretrained"]))
    if distributed.is_main() and not stage.done:
        stage.start()
        dataclasses.replace(model, info={"pretrained": model.info["pretrained"]}).save(stage.directory / "model.pt")
        stage.finish()
    return directory / "model.pt"
