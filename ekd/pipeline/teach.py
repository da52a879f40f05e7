"""The teach stage: a teacher ensemble trained on energies only (forces are never seen), or
installed from a published one; its output is :class:`Teachers`, the ensemble that labels and
the members left out of it, with why.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ekd import distributed
from ekd.data.frames import PerConformation
from ekd.ensemble import Ensemble, load_pretrained
from ekd.errors import ConfigError, DataError
from ekd.model import CHECKPOINT_FORMAT, Model
from ekd.parallel import TrainJob, run_jobs
from ekd.pipeline.starts import Published, member_starts, start_models
from ekd.pipeline.warm_start import warm_started
from ekd.progress import ProgressCallback
from ekd.provenance import sha256_file, sha256_json
from ekd.runconfig import RunConfig, TeacherMember, parse_teacher_spec
from ekd.stages import Stage

__all__ = ["Teachers", "failed_teachers", "teacher_jobs", "train_ensemble", "trained_teachers"]

@dataclasses.dataclass(repr=False, eq=False)
class Teachers(Ensemble):
    """The teach stage's output: an :class:`Ensemble` of the members that label (``models``,
    ``names``), every member by name (``members``, the ones left out included), the members
    left out with why (``left_out``: name → reason) and the sha256 of each member stage's inputs
    (``inputs_sha256``: what labels made from them depend on)."""

    members: dict[str, Model] = dataclasses.field(default_factory=dict)
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)
    inputs_sha256: list[str] = dataclasses.field(default_factory=list)
    trained_on: tuple[PerConformation, PerConformation] | None = None  # (train, validation) of the trained members

    @classmethod
    def of(cls, members: dict[str, Model], left_out: dict[str, str], inputs_sha256: list[str],
           trained_on: tuple[PerConformation, PerConformation] | None = None) -> "Teachers":
        kept = [name for name in members if name not in left_out]
        if not kept:
            raise ConfigError(f"every teacher was left out: {'; '.join(f'{n}: {r}' for n, r in left_out.items())}")
        return cls([members[n] for n in kept], kept, members, left_out, inputs_sha256, trained_on)

    def __repr__(self) -> str:
        left_out = f"; left out: {', '.join(self.left_out)}" if self.left_out else ""
        return f"Teachers({len(self)} members: {', '.join(f'{n} ({m.backend.name})' for n, m in zip(self.names, self.models))}{left_out})"


def teacher_jobs(out: Path, config: RunConfig, members: list[TeacherMember], train_part: PerConformation, validation: PerConformation,
                 published: Published | None = None) -> list[TrainJob]:
    """One resumable training per (trained) member in ``out/<member name>``, on energies only,
    from random weights or, with ``teachers.init_from``, from its start model (whose
    architecture it keeps); ``published``: the ensembles already loaded, by (backend, path)."""
    train_part, validation = train_part.without_forces(), validation.without_forces()
    starts = member_starts(out, members, start_models(config, published if published is not None else {}))
    jobs = []
    for m in members:
        train_config, start = warm_started(config, config.train_config("teachers", seed=m.seed), "teachers", m.name)
        options = m.options
        if m.name in starts:  # the start's architecture, with the options the user set checked against it
            model, path = starts[m.name]
            options = {**model.options.model_dump(), **config.teachers.options.get(m.backend, {})}
            if start is None:
                train_config, start = train_config.model_copy(update={"init_from": str(path)}), sha256_file(path)
        subset = train_part
        if config.teachers.subset_fraction < 1:
            keep = np.random.default_rng(m.seed).permutation(len(train_part))[: max(1, round(config.teachers.subset_fraction * len(train_part)))]
            subset = train_part.subset(np.sort(keep))
        stage = Stage(out / m.name, sha256_json("teacher", CHECKPOINT_FORMAT, dataclasses.asdict(m), train_config.hashed(), start, subset.sha256(), validation.sha256()))
        info = {"role": "teacher", "member": dataclasses.asdict(m), "data_sha256": train_part.metadata.get("sha256"), "level_of_theory": train_part.metadata.get("level_of_theory")}
        jobs.append(TrainJob(stage, m.backend, subset, validation, train_config, options, info))
    return jobs


def pretrained_stage(out: Path, member: TeacherMember, model: Model) -> Stage:
    """The stage a published ensemble member is installed in (its source's files hashed)."""
    return Stage(out / member.name, sha256_json("pretrained", CHECKPOINT_FORMAT, member.__dict__, model.info["pretrained"]))


def _install_pretrained(out: Path, member: TeacherMember, model: Model, data: PerConformation) -> None:
    """Save a published ensemble member as ``out/<name>/model.pt`` (nothing is trained)."""
    source = model.info["pretrained"]
    data.check_elements(model.species, f"the pretrained teacher {source.get('name', member.pretrained)} ({member.pretrained})")
    stage = pretrained_stage(out, member, model)
    if not stage.done:
        stage.start()
        saved = dataclasses.replace(model, info={"role": "teacher", "member": dataclasses.asdict(member), "pretrained": source})
        saved.save(stage.directory / "model.pt")
        stage.finish()


def failed_teachers(teachers: list[tuple[TeacherMember, Stage]], factor: float | None) -> dict[str, str]:
    """Trained teachers whose best validation loss is over ``factor`` × the median of their
    backend's members (at least three): failed trainings, left out of the labels."""
    best = {}
    for member, stage in teachers:
        history = stage.directory / "history.csv"
        if history.is_file():
            with open(history, newline="") as handle:
                best[member.name] = (member.backend, min(float(row["val_loss"]) for row in csv.DictReader(handle)))
    failed = {}
    for backend in {b for b, _ in best.values()} if factor else ():
        losses = {name: loss for name, (b, loss) in best.items() if b == backend}
        if len(losses) >= 3:
            median = float(np.median(list(losses.values())))
            failed.update({n: f"best validation loss {v:.3g} is {v / median:.0f}x the median of the {backend} teachers ({median:.3g})" for n, v in losses.items() if v > factor * median})
    return failed


def trained_teachers(out: Path, config: RunConfig, members: list[TeacherMember], train_part: PerConformation, validation: PerConformation,
                     published: Published) -> Teachers:
    """The :class:`Teachers` of ``members`` in ``out``, each checkpoint loaded once; refused
    when a member is not trained yet or was made with other settings or data."""
    jobs = teacher_jobs(out, config, [m for m in members if not m.pretrained], train_part, validation, published)
    return _loaded(out, config, _stages(out, members, jobs, published), (train_part, validation))


def _stages(out: Path, members: list[TeacherMember], jobs: list[TrainJob], published: Published) -> list[tuple[TeacherMember, Stage]]:
    """Every member with the stage its config and data make (trained by ``jobs``, or installed)."""
    trained = {job.stage.directory.name: job.stage for job in jobs}
    return [(m, pretrained_stage(out, m, published[m.backend, m.pretrained][m.pretrained_member]) if m.pretrained else trained[m.name]) for m in members]


def _loaded(out: Path, config: RunConfig, stages: list[tuple[TeacherMember, Stage]], trained_on: tuple[PerConformation, PerConformation]) -> Teachers:
    for m, stage in stages:
        record = stage.record()
        if record is None or record["status"] != "done":
            raise ConfigError(f"teacher {m.name} is not trained yet: run 'ekd teach --out {out.parent}' (or --member {m.index})")
        if record["hash"] != stage.inputs_sha256:
            raise ConfigError(f"teacher {m.name} was made with other settings or data than this config: "
                              f"run 'ekd teach --out {out.parent}' to retrain it (or 'ekd run')")
    models = {m.name: Model.load(stage.directory / "model.pt") for m, stage in stages}
    return Teachers.of(models, failed_teachers(stages, config.teachers.outlier_factor), [s.inputs_sha256 for _, s in stages], trained_on)


def train_ensemble(
    train_part: PerConformation,
    validation: PerConformation,
    out: str | os.PathLike,
    config: RunConfig | None = None,
    members: Sequence[TeacherMember] | None = None,
    published: Published | None = None,
    on_progress: ProgressCallback | None = None,
    show_progress: bool = True,
) -> Teachers:
    """Train ``config.teachers`` on the energies of ``train_part`` (forces are never seen),
    selecting each on ``validation``; members go to ``out/<name>`` and resume there. Members of
    a published ensemble (``ani-pretrained:PATH``) are installed there, not trained.

    Args:
        members: the members to make (default: all of ``config.teachers``).
        published: the published ensembles' members by (backend, path), if already loaded.
    Returns the :class:`Teachers` (an :class:`Ensemble`) of ``members``, failed trainings left out.
    """
    config = config if config is not None else RunConfig()
    published = dict(published or {})
    for backend, _, path in config.teachers.parts():
        if path is not None and (backend, path) not in published:
            published[backend, path] = load_pretrained(backend, path, device="cpu")
    members = list(members) if members is not None else parse_teacher_spec(config.teachers, lambda b, p: len(published[b, p]), config.sized_options)
    if train_part.energy is None and not all(m.pretrained for m in members):
        raise DataError(f"{train_part.metadata.get('source')}: no reference energies to train teachers on; use pretrained teachers (ani-pretrained:PATH)")
    out = Path(out)
    if distributed.is_main():
        for m in (m for m in members if m.pretrained):
            _install_pretrained(out, m, published[m.backend, m.pretrained][m.pretrained_member], train_part)
    distributed.barrier()
    jobs = teacher_jobs(out, config, [m for m in members if not m.pretrained], train_part, validation, published)
    run_jobs(jobs, config.jobs, show_progress, "teach", on_progress)
    return _loaded(out, config, _stages(out, members, jobs, published), (train_part, validation))
