"""The Python twins of ekd's commands. The CLI only parses arguments and calls these."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from ekd._io import atomic_path
from ekd.config import dump_yaml, load_yaml, validate
from ekd.data import (
    DEFAULT_DATASET,
    Frames,
    ReadOptions,
    TeacherRecord,
    molecule_split,
    random_split,
    read,
    read_labels,
    write_labels,
)
from ekd.ensemble import load_pretrained
from ekd.errors import ConfigError, DataError
from ekd.evaluate import evaluate
from ekd.model import Model
from ekd.parallel import TrainJob, run_jobs
from ekd.plugins import get_backend
from ekd.progress import progress_bar
from ekd.provenance import frames_fingerprint, package_versions, sha256_file
from ekd.runconfig import RunConfig, TeacherMember, config_hash, parse_teacher_spec
from ekd.stages import Stage
from ekd.train import TrainConfig, inverse_spread_weights, train

__all__ = [
    "DEFAULT_FORCE_WEIGHT",
    "check_labels_match",
    "label",
    "load_run_config",
    "run",
    "run_data",
    "split_data",
    "student",
    "teach",
    "train_model",
]

#: force weight used by ``--forces`` when the config sets none
DEFAULT_FORCE_WEIGHT = 0.1


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def train_model(
    backend: str,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    forces: bool = False,
    config: str | os.PathLike | dict | None = None,
    read_options: ReadOptions | None = None,
    show_progress: bool = True,
    **overrides,
) -> dict:
    """``ekd train``: train one model and score it on a held-out test split.

    Args:
        backend: installed backend name.
        out: run directory (resumed if it holds an unfinished run of the same settings).
        data: dataset path; default: the embedded reference set.
        forces: train on the data's reference forces too (otherwise they are never seen).
        config: YAML path or mapping with sections ``train`` (:class:`TrainConfig`) and
            ``options`` (the backend's hyperparameters).
        overrides: ``TrainConfig`` fields that win over the config (e.g. ``epochs=20``).
    Returns the summary written to ``out/summary.json``.
    """
    get_backend(backend)  # an unknown name fails before any data is read
    sections = config if isinstance(config, dict) else load_yaml(config)
    unknown = set(sections) - {"train", "options"}
    if unknown:
        raise ConfigError(f"config: unknown section(s) {', '.join(sorted(unknown))}; expected 'train' and 'options'")
    train_values = {**sections.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    if forces and "force_weight" not in train_values:
        train_values["force_weight"] = DEFAULT_FORCE_WEIGHT
    train_config = validate(TrainConfig, train_values, "train")
    if train_config.force_weight > 0 and not forces:
        raise ConfigError("train.force_weight > 0 trains on reference forces: pass --forces to confirm")

    path = Path(data) if data is not None else DEFAULT_DATASET
    frames = read(path, read_options or ReadOptions())
    if frames.energy is None:
        raise DataError(f"{path}: no energies to train on")
    if forces and frames.forces is None:
        raise DataError(f"{path}: --forces needs forces in the data, and it has none")
    fractions = (1 - train_config.val_fraction - train_config.test_fraction, train_config.val_fraction, train_config.test_fraction)
    train_part, val_part, test_part = random_split(frames, fractions, seed=train_config.seed)
    if not forces:  # the reference forces are held-out truth
        train_part, val_part = train_part.without_forces(), val_part.without_forces()

    out = Path(out)
    effective = {"backend": backend, "data": str(path), "forces": forces, "train": train_config.model_dump(), "options": sections.get("options", {})}
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "config.yaml", dump_yaml(effective))
    info = {"config": effective, "data_sha256": frames.metadata.get("sha256"), "versions": package_versions()}
    result = train(backend, train_part, val_part, out, train_config, sections.get("options"), info=info, show_progress=show_progress)

    summary = {
        "backend": backend,
        "trained_on": "energies and forces" if forces else "energies only",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "test": evaluate(result.model, {"test": test_part})["test"] if len(test_part) else {},
        "units": {"energy": "kcal/mol", "forces": "kcal/mol/Å"},
        "data": str(path),
        "data_sha256": frames.metadata.get("sha256"),
    }
    _write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


# ------------------------------------------------------------------------------------------
# EKD: teach -> label -> student (-> baseline) -> evaluate
# ------------------------------------------------------------------------------------------
S66X8_CANDIDATES = ("../shared/data/comp6/s66x8_wb97x6-31gd.h5",)


def run_data(config: RunConfig) -> tuple[Frames, list[Frames]]:
    """The run's dataset and its (train, validation, test) split."""
    path = Path(config.data.path) if config.data.path else DEFAULT_DATASET
    frames = read(path, config.data)
    if frames.energy is None and config.student.energy_labels == "reference":
        raise DataError(f"{path}: no reference energies (student.energy_labels: teachers labels energies too)")
    return frames, split_data(frames, config)


def energy_labels(config: RunConfig, frames: Frames) -> str:
    """Where the student's energies come from: ``reference`` (the data) or ``teachers``."""
    if config.student.energy_labels == "auto":
        return "reference" if frames.energy is not None else "teachers"
    return config.student.energy_labels


def labelled_data(run_dir: Path, config: RunConfig, frames: Frames) -> list[Frames]:
    """The labels file's (train, validation, test) split: teacher-mean forces, and energies
    from the data or (``energy_labels`` teachers) from the teacher ensemble."""
    labels_path = run_dir / "labels.h5"
    if not labels_path.is_file():
        raise ConfigError(f"{labels_path} does not exist: run 'ekd label --out {run_dir}' first")
    labels = read_labels(labels_path, energies=energy_labels(config, frames))
    check_labels_match(labels, frames)
    return split_data(labels, config)


def split_data(frames: Frames, config: RunConfig) -> list[Frames]:
    """(train, validation, test) by the config's fractions, method and seed."""
    data = config.data
    fractions = (1 - data.val_fraction - data.test_fraction, data.val_fraction, data.test_fraction)
    splitter = random_split if data.split == "random" else molecule_split
    return splitter(frames, fractions, seed=data.seed)


def _save_config(run_dir: Path, config: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text(run_dir / "config.yaml", dump_yaml(config.model_dump()))


def load_run_config(run_dir: str | os.PathLike, config: str | os.PathLike | None = None, overrides: dict | None = None) -> RunConfig:
    """The config for a stage: the given YAML, else the run directory's saved one, plus overrides."""
    saved = Path(run_dir) / "config.yaml"
    return RunConfig.load(config if config is not None else (saved if saved.is_file() else None), overrides)


def teach(run_dir: str | os.PathLike, config: RunConfig, member: int | None = None, show_progress: bool = True) -> list[Path]:
    """Train the teachers (energies only) or just ``member``; returns their directories."""
    run_dir = Path(run_dir)
    _save_config(run_dir, config)
    members = parse_teacher_spec(config.teachers)
    if member is not None and not 0 <= member < len(members):
        raise ConfigError(f"--member {member}: the ensemble has members 0..{len(members) - 1}")
    members = members if member is None else [members[member]]
    frames, _ = run_data(config)
    if frames.energy is None and not all(m.pretrained for m in members):
        raise DataError(f"{frames.metadata.get('source')}: no reference energies to train teachers on; use pretrained teachers (ani-pretrained:PATH)")
    published = {(m.backend, m.pretrained): None for m in members if m.pretrained}
    for backend, path in published:
        published[backend, path] = load_pretrained(backend, path, device="cpu")
    installed = [_install_pretrained(run_dir, m, published[m.backend, m.pretrained][m.pretrained_member], frames) for m in members if m.pretrained]
    jobs = _teacher_jobs(run_dir, config, [m for m in members if not m.pretrained])
    run_jobs(jobs, config.jobs, show_progress, "teach")
    return installed + [job.stage.directory for job in jobs]


def _install_pretrained(run_dir: Path, member: TeacherMember, model: Model, frames: Frames) -> Path:
    """Save a published ensemble member as the teacher's ``model.pt`` (nothing is trained)."""
    source = model.info["pretrained"]
    frames.check_elements(model.species, f"the pretrained teacher {source.get('name', member.pretrained)} ({member.pretrained})")
    stage = Stage(run_dir / "teachers" / member.name, config_hash("pretrained", dataclasses.asdict(member), source))
    if not stage.done:
        stage.start()
        model.info = {"role": "teacher", "member": dataclasses.asdict(member), "pretrained": source}
        model.save(stage.directory / "model.pt")
        stage.finish()
    return stage.directory


def _teacher_jobs(run_dir: Path, config: RunConfig, members: list[TeacherMember]) -> list[TrainJob]:
    frames, (train_part, val_part, _) = run_data(config)
    train_part, val_part = train_part.without_forces(), val_part.without_forces()
    jobs = []
    for m in members:
        train_config = config.train_config("teachers", seed=m.seed)
        subset = train_part
        if config.teachers.subset_fraction < 1:
            keep = np.random.default_rng(m.seed).permutation(len(train_part))[: max(1, round(config.teachers.subset_fraction * len(train_part)))]
            subset = train_part.subset(np.sort(keep))
        stage = Stage(run_dir / "teachers" / m.name, config_hash("teacher", dataclasses.asdict(m), train_config.model_dump(), frames_fingerprint(subset), frames_fingerprint(val_part)))
        info = {"role": "teacher", "member": dataclasses.asdict(m), "data_sha256": frames.metadata.get("sha256"), "level_of_theory": frames.metadata.get("level_of_theory")}
        jobs.append(TrainJob(stage, m.backend, subset, val_part, train_config, m.options, info))
    return jobs


def _teacher_stages(run_dir: Path, config: RunConfig) -> list[tuple[TeacherMember, Stage]]:
    pairs = []
    for m in parse_teacher_spec(config.teachers):
        directory = run_dir / "teachers" / m.name
        record = Stage(directory, "").record()
        if record is None or record["status"] != "done":
            raise ConfigError(f"teacher {m.name} is not trained yet: run 'ekd teach --out {run_dir}' (or --member {m.index})")
        pairs.append((m, Stage(directory, record["hash"])))
    return pairs


def label(run_dir: str | os.PathLike, config: RunConfig, show_progress: bool = True) -> Path:
    """Run every teacher on every conformation and write ``labels.h5``; returns its path."""
    run_dir = Path(run_dir)
    teachers = _teacher_stages(run_dir, config)
    frames, _ = run_data(config)
    digest = config_hash("labels", [s.digest for _, s in teachers], frames_fingerprint(frames), config.teachers.outlier_factor)
    path = run_dir / "labels.h5"
    stage = Stage(run_dir / "label", digest)
    if stage.done and path.is_file():
        return path
    stage.start()
    failed = failed_teachers(teachers, config.teachers.outlier_factor)
    for name, reason in failed.items():
        print(f"ekd label: teacher {name} left out: {reason}", file=sys.stderr)
    teachers = [(m, s) for m, s in teachers if m.name not in failed]
    unlabelled = frames.without_forces()
    forces, energies, records = [], [], []
    with progress_bar("label", len(teachers), enabled=show_progress, unit="teacher") as bar:
        for m, teacher_stage in teachers:
            model_path = teacher_stage.directory / "model.pt"
            model = Model.load(model_path)
            prediction = model.predict(unlabelled, forces=True)
            forces.append(prediction.forces)
            energies.append(prediction.energy)
            spec = f"{m.backend}-pretrained:{m.pretrained} member {m.pretrained_member}" if m.pretrained else f"{m.backend}:{m.name}"
            records.append(TeacherRecord(m.backend, spec, sha256_file(model_path), m.seed, model.info.get("pretrained")))
            bar.update(advance=1, info=m.name)
    left_out = [{"name": name, "reason": reason} for name, reason in failed.items()]
    write_labels(path, unlabelled, np.stack(forces), records, np.stack(energies), config={"hash": digest, "run": config.model_dump()}, left_out=left_out)
    stage.finish()
    return path


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


def check_labels_match(labels: Frames, frames: Frames) -> None:
    """Refuse labels made for other data: other source file, elements or conformations."""
    where = labels.metadata.get("source", "labels file")
    provenance = labels.metadata.get("provenance", {})
    if provenance.get("source_sha256") != frames.metadata.get("sha256"):
        raise DataError(
            f"{where}: labels were made from data with sha256 {str(provenance.get('source_sha256'))[:12]}…, "
            f"but {frames.metadata.get('source')} has sha256 {str(frames.metadata.get('sha256'))[:12]}…; run 'ekd label' again"
        )
    if labels.elements != frames.elements:
        raise DataError(f"{where}: labels cover elements {labels.elements}, the data {frames.elements}")
    if len(labels) != len(frames) or not (np.array_equal(labels.numbers, frames.numbers) and np.allclose(labels.positions, frames.positions)):
        raise DataError(f"{where}: labelled conformations differ from those in {frames.metadata.get('source')}; run 'ekd label' again")


def student(run_dir: str | os.PathLike, config: RunConfig, show_progress: bool = True, baseline: bool = False) -> list[Path]:
    """Train the students on reference energies + teacher-mean forces (or, with ``baseline``,
    the energy-only controls), one per seed; returns their directories."""
    jobs = _student_jobs(Path(run_dir), config, baseline)
    run_jobs(jobs, config.jobs, show_progress, "baseline" if baseline else "student")
    return [job.stage.directory for job in jobs]


def _student_jobs(run_dir: Path, config: RunConfig, baseline: bool) -> list[TrainJob]:
    frames, (train_part, val_part, _) = run_data(config)
    role = "baseline" if baseline else "student"
    source = energy_labels(config, frames)
    if baseline and source == "reference":
        parts, upstream = [train_part, val_part], frames_fingerprint(frames)
    else:
        parts, upstream = labelled_data(run_dir, config, frames)[:2], sha256_file(run_dir / "labels.h5")
    if baseline:
        parts = [p.without_forces() for p in parts]
    elif config.student.weighting == "inverse_spread":
        parts = [p.with_forces(p.forces, force_weight=inverse_spread_weights(p.atom_data["force_spread"])) for p in parts]
    level = teacher_level(run_dir, config) if source == "teachers" else frames.metadata.get("level_of_theory")
    jobs = []
    for k in range(config.student.seeds):
        seed = config.student.seed + k
        train_config = config.train_config(role, seed=seed)
        stage = Stage(run_dir / f"{role}s" / f"seed-{seed}", config_hash(role, config.student.backend, config.student.options, None if baseline else config.student.weighting, source, train_config.model_dump(), upstream))
        info = {"role": role, "seed": seed, "data_sha256": frames.metadata.get("sha256"), "energy_labels": source, "level_of_theory": level}
        jobs.append(TrainJob(stage, config.student.backend, *parts, train_config, config.student.options, info))
    return jobs


def teacher_level(run_dir: Path, config: RunConfig) -> str | None:
    """The level of theory of the teachers' energies: a published ensemble's, else the data's."""
    return energy_level([Model.load(stage.directory / "model.pt", device="cpu") for _, stage in _teacher_stages(run_dir, config)])


def energy_level(models: list[Model]) -> str | None:
    """The reference the models' energies are on (a published level, or the training data's);
    None when unrecorded or when they differ."""
    levels = {(m.info.get("pretrained") or {}).get("level_of_theory") or m.info.get("level_of_theory") for m in models}
    return levels.pop() if len(levels) == 1 else None


def default_eval_files(config: RunConfig) -> list[Path]:
    """``evaluate.files``, or COMP6 S66x8 when it is present beside the working directory."""
    if config.evaluate.files is not None:
        return [Path(p) for p in config.evaluate.files]
    return [Path(p) for p in S66X8_CANDIDATES if Path(p).is_file()]


def run(run_dir: str | os.PathLike, config: RunConfig, show_progress: bool = True) -> dict:
    """``ekd run``: teach → label → student (→ baseline) → evaluate → report. Resumable."""
    from ekd.report import write_report

    run_dir = Path(run_dir)
    _save_config(run_dir, config)
    for m in parse_teacher_spec(config.teachers) + [None]:
        get_backend(m.backend if m else config.student.backend)  # unknown names fail before any work
    teach(run_dir, config, show_progress=show_progress)
    label(run_dir, config, show_progress=show_progress)
    jobs = _student_jobs(run_dir, config, baseline=False)
    if config.student.baseline:
        jobs += _student_jobs(run_dir, config, baseline=True)
    run_jobs(jobs, config.jobs, show_progress, "students and baselines" if config.student.baseline else "students")
    return write_report(run_dir, config)
