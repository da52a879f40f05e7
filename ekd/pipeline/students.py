"""The student stage: students trained on the reference (or teacher) energies and the teachers'
mean forces, and their controls, energy-only baselines of the same backend and seeds, side by side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ekd.data.frames import PerConformation
from ekd.data.labels import Labels
from ekd.model import CHECKPOINT_FORMAT, Model
from ekd.parallel import TrainJob, run_jobs
from ekd.pipeline.warm_start import warm_started
from ekd.progress import ProgressCallback
from ekd.provenance import sha256_json
from ekd.runconfig import RunConfig
from ekd.stages import Stage
from ekd.train import inverse_spread_weights

__all__ = ["student_jobs", "train_students"]


def student_jobs(out: Path, config: RunConfig, train_part: PerConformation, validation: PerConformation, info: dict, baseline: bool = False) -> list[TrainJob]:
    """One resumable training per student seed in ``out/students/seed-<seed>`` (``baselines``:
    the energy-only controls, trained on the same energies without any forces)."""
    role = "baseline" if baseline else "student"
    parts = [train_part, validation]
    if baseline:
        parts = [p.without_forces() for p in parts]
    elif config.student.weighting == "inverse_spread":
        parts = [p.with_forces(p.forces, force_weight=inverse_spread_weights(p.atom_data["force_spread"])) for p in parts]
    periodic = bool(train_part.periodic.any() or validation.periodic.any())
    jobs = []
    for k in range(config.student.seeds):
        seed = config.student.seed + k
        train_config, start = warm_started(config, config.train_config(role, seed=seed, periodic=periodic, conformations=len(train_part)), f"{role}s", f"seed-{seed}")
        inputs = sha256_json(role, CHECKPOINT_FORMAT, config.student.backend, config.student_options, None if baseline else config.student.weighting,
                             train_config.hashed(), start, *(p.sha256() for p in parts))
        stage = Stage(out / f"{role}s" / f"seed-{seed}", inputs)
        jobs.append(TrainJob(stage, config.student.backend, *parts, train_config, config.student_options, {"role": role, "seed": seed, **info}))
    return jobs


def training_view(labels: Labels | PerConformation, config: RunConfig) -> PerConformation:
    """What students train on: the labels' training view (teacher-mean forces; the reference
    energies, or the teachers' mean where the data have none), or ``labels`` as they are when
    already a dataset (e.g. a streamed labels file, :func:`ekd.data.stream`)."""
    if not isinstance(labels, Labels):
        return labels
    return labels.dataset(config.energy_source(labels.data.energy is not None))


def train_students(
    labels: Labels | PerConformation,
    out: str | os.PathLike,
    config: RunConfig | None = None,
    baseline: bool | None = None,
    split: Sequence[np.ndarray] | None = None,
    energy_only: Sequence[PerConformation] | None = None,
    on_progress: ProgressCallback | None = None,
    show_progress: bool = True,
) -> list[Model]:
    """Train ``config.student.seeds`` students on the labels' energies and teacher-mean forces
    and, with ``baseline`` (default ``config.student.baseline``), as many energy-only baselines
    on the same energies, side by side; models go to ``out/students`` and ``out/baselines``.

    Args:
        labels: :class:`Labels`, or their training view (a streamed labels file).
        split: (train, validation, test) conformation indices of the labels (default: where the
            teachers were trained and selected, when the labels were made here from
            :func:`train_ensemble`'s teachers; else the split of ``config.data``); the test part
            is never trained on.
        energy_only: the baselines' (train, validation), if already made (default: those parts
            of the labels without forces: the same conformations and energies).
    Returns the students, then the baselines.
    """
    config = config if config is not None else RunConfig()
    baseline = config.student.baseline if baseline is None else baseline
    view = training_view(labels, config)
    if split is None and isinstance(labels, Labels):
        split = labels.teachers_split()  # where the teachers trained: the students never train on what the teachers did not
    train_index, validation_index, _ = split if split is not None else view.split_indices(config.data.fractions, config.data.split, config.data.seed)
    parts = view.subset(train_index), view.subset(validation_index)
    info = _info(labels, view)
    jobs = student_jobs(Path(out), config, *parts, info)
    if baseline:
        jobs += student_jobs(Path(out), config, *(energy_only or parts), info, baseline=True)
    run_jobs(jobs, config.jobs, show_progress, "students and baselines" if baseline else "students", on_progress)
    return [Model.load(job.stage.directory / "model.pt") for job in jobs]


def _info(labels: Labels | PerConformation, view: PerConformation) -> dict:
    """Provenance of the students' trainings: the labelled data and the level of their energies."""
    provenance, source = view.metadata.get("provenance", {}), view.metadata.get("energy_labels", "reference")
    teachers = [t.source for t in labels.teachers] if isinstance(labels, Labels) else [t.get("source") for t in provenance.get("teachers", [])]
    levels = {(t or {}).get("level_of_theory") for t in teachers}
    level = view.metadata.get("level_of_theory") if source == "reference" else (levels.pop() if len(levels) == 1 else None)
    return {"data_sha256": provenance.get("source_sha256"), "energy_labels": source, "level_of_theory": level}
