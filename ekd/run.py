"""A distillation run: one object owning the data, the split, the teachers, the labels, the
students and the report of one run directory.

The data are read and hashed once per run and a published ensemble is loaded once; every stage
is resumable (:class:`ekd.stages.Stage`) and checked against its inputs, so an artifact made
from other settings or data is redone or refused, never reused.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ekd import distributed
from ekd._io import atomic_path
from ekd.config import dump_yaml, validate
from ekd.data import DEFAULT_DATASET, Dataset, Split, StreamedDataset, stream
from ekd.data.embedded import resolve
from ekd.data.labels import Labels, data_identity, read_provenance
from ekd.ensemble import Ensemble, load_predictor, load_pretrained, pretrained_spec
from ekd.errors import ConfigError, DataError
from ekd.estimate import stage_seconds
from ekd.graph import check_geometries
from ekd.model import Model
from ekd.parallel import run_jobs
from ekd.pipeline import failed_teachers, install_pretrained, label, label_to_file, pretrained_stage, student_jobs, teacher_jobs
from ekd.progress import ProgressCallback, ProgressEvent, duration, notify
from ekd.report import HELD_OUT, Report, build_report, energy_level
from ekd.provenance import config_hash, sha256_file
from ekd.runconfig import DataSection, RunConfig, TeacherMember, parse_teacher_spec
from ekd.stages import Stage

__all__ = ["Run", "distill", "load"]


class Run:
    """One EKD run in ``directory``: teach → label → students (→ baselines) → report.

    Args:
        directory: where every artifact goes (resumed when it holds an unfinished run).
        config: the run's settings (default: :class:`RunConfig` defaults).
        data: the dataset, if held in memory (it is then saved as ``directory/data.h5``);
            default: ``config.data.path``, or the embedded reference set.
        on_progress: called with a :class:`ProgressEvent` after every epoch of every model and at
            the end of every stage; returning ``False`` stops the run cleanly (``Cancelled``),
            leaving it resumable.
        show_progress: progress bars on stderr.
    """

    def __init__(self, directory: str | os.PathLike, config: RunConfig | None = None, data: Dataset | None = None,
                 on_progress: ProgressCallback | None = None, show_progress: bool = True):
        self.directory = Path(directory)
        self.config = config if config is not None else RunConfig()
        self.on_progress, self.show_progress = on_progress, show_progress
        self._published: dict[tuple[str, str], list[Model]] = {}
        self._given = self._adopt(data) if data is not None else None

    @classmethod
    def open(cls, directory: str | os.PathLike, **kwargs) -> "Run":
        """Reopen a finished or interrupted run from its saved ``config.yaml``."""
        saved = Path(directory) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{directory}: not an ekd run directory (no config.yaml)")
        return cls(directory, RunConfig.load(saved), **kwargs)

    def __repr__(self) -> str:
        return f"Run('{self.directory}', teachers='{self.config.teachers.spec}', student='{self.config.student.backend}')"

    # data ------------------------------------------------------------------------------------
    def _adopt(self, data: Dataset) -> Dataset:
        """Data given as an object become the run's file ``data.h5`` (unless they were read from
        ``config.data.path``), so that the run can be reopened and its stages checked."""
        source = data.metadata.get("source")
        if source and self.config.data.path and Path(source).resolve() == Path(self.config.data.path).resolve() and data.metadata.get("sha256"):
            return data
        path = self.directory / "data.h5"
        data.write(path)
        self.config = self.config.model_copy(update={"data": DataSection(path=str(path.resolve()), **self.config.data.model_dump(include={"val_fraction", "test_fraction", "split", "seed", "test_path"}))})
        return data.with_metadata(source=str(path), sha256=sha256_file(path))

    @functools.cached_property
    def data(self) -> Dataset | StreamedDataset:
        """The run's dataset (read and hashed once; with ``data.stream``, opened for reading a
        batch at a time)."""
        if self._given is not None:
            return self._given
        path = Path(self.config.data.path) if self.config.data.path else DEFAULT_DATASET
        data = self._stream(path) if self.config.data.stream else Dataset.read(path, self.config.data.reading_only())
        if data.energy is None and self.config.student.energy_labels == "reference":
            raise DataError(f"{path}: no reference energies (student.energy_labels: teachers labels energies too)")
        own = data.metadata.get("held_out")
        if own and not self.config.data.test_path:  # the file the data name as their held-out set (embedded:ccsdt)
            self.config = self.config.model_copy(update={"data": self.config.data.model_copy(update={"test_path": str(resolve(path).parent / own)})})
        return data

    def _stream(self, path: Path) -> StreamedDataset:
        """The data read lazily (``data.stream``), refused with settings that need them in memory."""
        if self.config.data.reading_only().given():
            raise ConfigError(f"{path}: reading options ({', '.join(sorted(self.config.data.reading_only().given()))}) do not apply with "
                              "data.stream (the file is ekd HDF5: convert it with them first, 'ekd data convert')")
        if self.config.student.weighting == "inverse_spread":
            raise ConfigError("student.weighting: inverse_spread needs the labels in memory; it does not work with data.stream")
        return stream(resolve(path))

    @functools.cached_property
    def held_out(self) -> Dataset | None:
        """The held-out test set read from ``data.test_path`` (None: a cut of the data), refused
        when it shares a conformation with the data (it would be trained on)."""
        self.data  # noqa: B018 (the data may name their own held-out file)
        if not self.config.data.test_path:
            return None
        path = self.config.data.test_path
        if not resolve(path).is_file():
            raise ConfigError(f"data.test_path: {path} does not exist (the held-out test set's file)")
        held_out = Dataset.read(path)
        if held_out.energy is None and held_out.forces is None:
            raise DataError(f"{path}: the held-out test set has neither reference energies nor forces to score against")
        keys, shared = set(held_out.conformation_keys()), set()
        for _, block in self.data.blocks():  # (a block at a time: the data may be streamed)
            shared |= keys.intersection(block.conformation_keys())
        if shared:
            raise DataError(f"{path}: {len(shared)} of its {len(held_out)} held-out conformations are also in the training data "
                            f"{self.data.metadata.get('source')}: a held-out set must not be trained on")
        return held_out

    @functools.cached_property
    def split(self) -> Split:
        """(train, validation, test) of :attr:`data` by ``config.data``; test is never trained on."""
        parts = self.data.split(self.config.data.fractions, by=self.config.data.split, seed=self.config.data.seed)
        return parts if self.held_out is None else parts._replace(test=self.held_out)

    @property
    def energy_source(self) -> str:
        """``reference`` (the data's energies) or ``teachers`` (the ensemble's mean)."""
        return self.config.energy_source(self.data.energy is not None)

    @functools.cached_property
    def eval_data(self) -> dict[str, Dataset]:
        """The evaluation files (``evaluate.files``) by stem, read once."""
        return {Path(p).stem: Dataset.read(p) for p in self.config.evaluate.files}

    def published(self, backend: str, path: str) -> list[Model]:
        """The members of a published ensemble (loaded once per run)."""
        if (backend, path) not in self._published:
            self._published[backend, path] = load_pretrained(backend, path, device="cpu")
        return self._published[backend, path]

    @functools.cached_property
    def members(self) -> list[TeacherMember]:
        """The teacher ensemble's members as the config specifies them."""
        return parse_teacher_spec(self.config.teachers, lambda backend, path: len(self.published(backend, path)), self.config.sized_options)

    # stages ------------------------------------------------------------------------------------
    def _save_config(self) -> None:
        """The config as run: ``size: auto`` saved as what it resolved to on this machine."""
        self.data  # noqa: B018 (read first: the data may name their held-out file, saved as data.test_path)
        if distributed.is_main():
            with atomic_path(self.directory / "config.yaml") as tmp:
                tmp.write_text(dump_yaml({**self.config.model_dump(), "size": self.config.resolved_size()}))

    def describe_sizes(self) -> str:
        """One line: the model size chosen and each trained backend's options at that size."""
        size = self.config.resolved_size()
        why = {"small": "sized for a CPU", "upstream": "the libraries' own sizes"}[size]
        backends = sorted({m.backend for m in self.members if not m.pretrained} | {self.config.student.backend})
        sized = "; ".join(f"{b}: {self.config.sized_options(b, {}) or 'its defaults'}" for b in backends)
        return f"ekd: model size {size} ({why}; size: small|upstream overrides, your options win): {sized}"

    def estimate(self) -> dict[str, float]:
        """Seconds each unfinished stage of trainings takes on this machine at its epoch bounds (``teach``,
        ``students`` or ``students and baselines``), from a few timed optimizer steps of each
        kind of training (:mod:`ekd.estimate`); early stopping usually ends them sooner."""
        timed: dict = {}
        trained = [m for m in self.members if not m.pretrained]
        teach = stage_seconds(teacher_jobs(self.directory / "teachers", self.config, trained, *self.split[:2]), self.config.jobs, timed)
        jobs = self._student_jobs(False, label_now=False) + (self._student_jobs(True, label_now=False) if self.config.student.baseline else [])
        students = stage_seconds(jobs, self.config.jobs, timed)
        return {"teach": teach, "students and baselines" if self.config.student.baseline else "students": students}

    def describe_estimate(self) -> str:
        """One line: the run's trainings' time at their epoch bounds, per stage, and how to shorten a long run."""
        stages = self.estimate()
        total = sum(stages.values())
        parts = ", ".join(f"{name} {duration(seconds)}" for name, seconds in stages.items() if seconds)
        line = (f"ekd: this run's trainings take about {duration(total)} here at their epoch bounds ({parts or 'all finished'}; "
                "timed from a few steps of each model; early stopping usually ends sooner)")
        if total > 3600:
            line += "; --epochs N bounds every model, and --size small or a smaller model (its options) trains faster"
        return line

    def _notify(self, stage: str) -> None:
        notify(self.on_progress, ProgressEvent(stage, finished=True))

    def _teacher_stages(self) -> list[tuple[TeacherMember, Stage]]:
        """Every member with the stage its current config and data would produce."""
        trained = [m for m in self.members if not m.pretrained]
        jobs = {job.stage.directory.name: job for job in teacher_jobs(self.directory / "teachers", self.config, trained, *self.split[:2])}
        stages = []
        for m in self.members:
            if m.pretrained:
                stages.append((m, pretrained_stage(self.directory / "teachers", m, self.published(m.backend, m.pretrained)[m.pretrained_member])))
            else:
                stages.append((m, jobs[m.name].stage))
        return stages

    def teach(self, member: int | None = None) -> Ensemble:
        """Train the teachers on energies only (or just ``member``); install published ones."""
        self._save_config()
        members = self.members
        if member is not None and not 0 <= member < len(members):
            raise ConfigError(f"--member {member}: the ensemble has members 0..{len(members) - 1}")
        chosen = members if member is None else [members[member]]
        if self.data.energy is None and not all(m.pretrained for m in chosen):
            raise DataError(f"{self.data.metadata.get('source')}: no reference energies to train teachers on; use pretrained teachers (ani-pretrained:PATH)")
        for m in chosen:
            if m.pretrained and distributed.is_main():
                model = self.published(m.backend, m.pretrained)[m.pretrained_member]
                install_pretrained(self.directory / "teachers", m, model, self.data)
        distributed.barrier()
        jobs = teacher_jobs(self.directory / "teachers", self.config, [m for m in chosen if not m.pretrained], *self.split[:2])
        run_jobs(jobs, self.config.jobs, self.show_progress, "teach", self.on_progress)
        self._notify("teach")
        return Ensemble([Model.load(self.directory / "teachers" / m.name / "model.pt") for m in chosen], [m.name for m in chosen])

    def _ready_teachers(self) -> list[tuple[TeacherMember, Stage]]:
        stages = self._teacher_stages()
        for m, stage in stages:
            record = stage.record()
            if record is None or record["status"] != "done":
                raise ConfigError(f"teacher {m.name} is not trained yet: run 'ekd teach --out {self.directory}' (or --member {m.index})")
            if record["hash"] != stage.digest:
                raise ConfigError(f"teacher {m.name} was made with other settings or data than this config: "
                                  f"run 'ekd teach --out {self.directory}' to retrain it (or 'ekd run')")
        return stages

    def label(self) -> Labels | StreamedDataset:
        """Label every conformation with each (good) teacher's forces and energies: ``labels.h5``.

        Returns the :class:`Labels`, or for a streamed run (``data.stream``) the labels file
        opened as the students' training view (``ekd.data.stream``: nothing per atom is read)."""
        stages = self._ready_teachers()
        self._save_config()
        digest = config_hash("labels", [s.digest for _, s in stages], data_identity(self.data), self.config.teachers.outlier_factor)
        path, stage = self.directory / "labels.h5", Stage(self.directory / "label", digest)
        made = self._make_labels(stages, digest, path, stage) if not (stage.done and path.is_file()) else None
        return made or (self._labels_view() if self.streamed else Labels.read(path))

    def _make_labels(self, stages: list[tuple[TeacherMember, Stage]], digest: str, path: Path, stage: Stage) -> Labels | None:
        """Write ``labels.h5``; returns the labels when made in memory (None: streamed)."""
        if distributed.is_main():
            stage.start()  # (clears outputs of other inputs: the others wait for it)
        distributed.barrier()
        failed = failed_teachers(stages, self.config.teachers.outlier_factor)
        for name, reason in failed.items():
            print(f"ekd label: teacher {name} left out: {reason}", file=sys.stderr)
        kept = [(m, s) for m, s in stages if m.name not in failed]
        ensemble = Ensemble([Model.load(s.directory / "model.pt") for _, s in kept], [m.name for m, _ in kept])
        provenance = {"left_out": [{"name": n, "reason": r} for n, r in failed.items()], "config": {"hash": digest, "run": self.config.model_dump()}}
        labels = None
        if self.streamed:  # a block at a time, each rank its share of the blocks; rank 0 writes the file
            label_to_file(self.data, ensemble, path, **provenance, show_progress=self.show_progress, shards=stage.directory)
        else:
            labels = label(self.data, ensemble, **provenance, show_progress=self.show_progress, shards=stage.directory)
            if distributed.is_main():
                labels.write(path)
        if distributed.is_main():
            stage.finish()
        distributed.barrier()
        self._notify("label")
        return labels

    @property
    def streamed(self) -> bool:
        """Whether the data are read lazily (``data.stream``): labels then stay on disk too."""
        return isinstance(self.data, StreamedDataset)

    def _labels_view(self) -> StreamedDataset:
        """The labels file as a streamed training view, refused when made from other data."""
        view = stream(self.directory / "labels.h5", energies=self.energy_source)
        made_from = view.metadata["provenance"].get("source_sha256")
        if made_from != data_identity(self.data) or len(view) != len(self.data):
            raise DataError(f"{self.directory / 'labels.h5'}: labels were made from other data (sha256 {str(made_from)[:12]}…, "
                            f"{len(view)} conformations) than {self.data.metadata.get('source')} ({len(self.data)}); run 'ekd label' again")
        return view

    def _labelled_split(self, labels: Labels | StreamedDataset | None = None) -> Split:
        """The labels' training view (teacher-mean forces), split like the data."""
        if labels is None:
            if not (self.directory / "labels.h5").is_file():
                raise ConfigError(f"{self.directory / 'labels.h5'} does not exist: run 'ekd label --out {self.directory}' first")
            labels = self._labels_view() if self.streamed else self.labels
        if isinstance(labels, Labels):
            labels.check_matches(self.data)
            labels = labels.dataset(self.energy_source)
        return labels.split(self.config.data.fractions, by=self.config.data.split, seed=self.config.data.seed)

    def _student_parts(self, baseline: bool, label_now: bool = True) -> list[Dataset | StreamedDataset]:
        """(train, validation) of the students (or baselines); with ``label_now`` False and no
        labels yet, the unlabelled split stands in (the same conformations: for timing only)."""
        if baseline and self.energy_source == "reference":  # the control needs no teacher
            return list(self.split[:2])
        if label_now:
            return list(self._labelled_split(self.label())[:2])  # label(): a no-op when current; refuses stale teachers
        return list((self._labelled_split() if (self.directory / "labels.h5").is_file() else self.split)[:2])

    def _student_jobs(self, baseline: bool, label_now: bool = True):
        source = self.energy_source
        parts = self._student_parts(baseline, label_now)
        level = self.data.metadata.get("level_of_theory")
        if source == "teachers" and label_now:  # the teachers exist once labelled (info only: not in the stage hash)
            level = self.teacher_level()
        info = {"data_sha256": data_identity(self.data), "energy_labels": source, "level_of_theory": level}
        return student_jobs(self.directory, self.config, *parts, info, baseline)

    def train_students(self, baseline: bool | None = None) -> list[Model]:
        """Train the students (and, with ``baseline`` or ``student.baseline``, the energy-only
        baselines) side by side; returns students then baselines."""
        self._save_config()
        baseline = self.config.student.baseline if baseline is None else baseline
        jobs = self._student_jobs(False) + (self._student_jobs(True) if baseline else [])
        run_jobs(jobs, self.config.jobs, self.show_progress, "students and baselines" if baseline else "students", self.on_progress)
        self._notify("students")
        return [Model.load(job.stage.directory / "model.pt") for job in jobs]

    def teacher_level(self) -> str | None:
        """The level of theory of the teachers' energies: a published ensemble's, else the data's."""
        return energy_level(self.teachers.models)

    def _check_something_to_score(self) -> None:
        if not len(self.split.test) and not self.config.evaluate.files:
            raise ConfigError(f"nothing to score: data.test_fraction is {self.config.data.test_fraction} and {len(self.data)} conformations leave "
                              "no held-out test split, and no evaluation file is given (--eval FILE or evaluate.files)")

    def evaluate(self) -> Report:
        """Score every model of the run; write ``report.json``, ``report.md`` and parity plots."""
        self._check_something_to_score()
        datasets, references = {}, {}
        if self.held_out is not None:
            datasets[HELD_OUT], references[HELD_OUT] = self.held_out, self.held_out.metadata.get("level_of_theory")
        elif len(self.split.test):
            held_out = self.split.test if self.energy_source == "reference" else self._labelled_split().test
            name = HELD_OUT if self.energy_source == "reference" else f"{HELD_OUT} (vs teacher labels)"
            datasets[name] = held_out
            references[name] = self.data.metadata.get("level_of_theory") if self.energy_source == "reference" else self.teacher_level()
        for name, data in self.eval_data.items():
            datasets[name], references[name] = data, data.metadata.get("level_of_theory")
        stage = self._evaluate_stage(datasets)
        if distributed.is_main() and not (stage.done and (self.directory / "report.json").is_file()):  # (the others wait, then read it)
            stage.start()
            stages = {str(p.parent.relative_to(self.directory)): json.loads(p.read_text()).get("seconds")
                      for p in sorted(self.directory.glob("**/stage.json")) if p.parent != stage.directory}
            md = (self.config.evaluate.md, self._md_starts(), self.config.evaluate.md_models) if self.config.evaluate.md else None
            report = build_report(self.models(), datasets, references, self.config.model_dump(), self.config.evaluate.refit_offsets,
                                  self.directory / "plots", stages, md, self.data.metadata.get("materials"), self.show_progress)
            report.write(self.directory)
            stage.finish()
        distributed.barrier()
        report = Report.read(self.directory)
        self._notify("evaluate")
        return report

    def _md_starts(self) -> Dataset:
        """The first conformation of each molecule MD stability starts from, in memory."""
        _, first = np.unique(self.data.molecule, return_index=True)
        return self.data.subset(np.sort(first)[: self.config.evaluate.md.max_molecules]).load()

    def _evaluate_stage(self, datasets: dict[str, Dataset]) -> Stage:
        """The evaluation as a stage: the report is redone only when a model, the labels (which
        teachers were left out), a scored dataset or the config changed (MD stability is slow)."""
        files = sorted(self.directory.glob("*/*/model.pt")) + sorted(self.directory.glob("labels.h5"))
        digest = config_hash("evaluate", {str(p.relative_to(self.directory)): sha256_file(p) for p in files},
                             {name: data_identity(data) for name, data in datasets.items()}, data_identity(self.data), self.config.model_dump())
        return Stage(self.directory / "evaluate", digest)

    def run(self) -> Report:
        """Every stage in order, each skipped when finished with the same inputs."""
        self._save_config()
        self._check_something_to_score()
        check_geometries(self.data)  # a broken geometry fails here, not as a NaN loss later
        self.eval_data  # noqa: B018 (a missing evaluation file fails before any training)
        if self.show_progress and distributed.is_main():
            print(self.describe_sizes(), file=sys.stderr)
            print(self.describe_estimate(), file=sys.stderr)
        self.teach()
        self.label()
        self.train_students()
        return self.evaluate()

    # results -----------------------------------------------------------------------------------
    @property
    def teachers(self) -> Ensemble:
        """The ensemble the labels are made from: trained teachers less failed trainings."""
        stages = self._ready_teachers()
        failed = failed_teachers(stages, self.config.teachers.outlier_factor)
        kept = [(m, s) for m, s in stages if m.name not in failed]
        return Ensemble([Model.load(s.directory / "model.pt") for _, s in kept], [m.name for m, _ in kept])

    @property
    def labels(self) -> Labels:
        """The teachers' labels of the run's data (``labels.h5``)."""
        return Labels.read(self.directory / "labels.h5")

    def _role(self, role: str) -> list[Model]:
        return [Model.load(p) for p in sorted(self.directory.glob(f"{role}/*/model.pt"))]

    @property
    def students(self) -> list[Model]:
        """The trained students, one per seed."""
        return self._role("students")

    @property
    def baselines(self) -> list[Model]:
        """The energy-only baselines, one per seed."""
        return self._role("baselines")

    @property
    def report(self) -> Report:
        """The report of the last evaluation (``report.json``)."""
        return Report.read(self.directory / "report.json")

    def models(self) -> dict[str, Model | Ensemble]:
        """Every model of the run by report name: each teacher, the ensemble, students, baselines."""
        teachers = {p.parent.name: Model.load(p) for p in sorted(self.directory.glob("teachers/*/model.pt"))}
        labels = self.directory / "labels.h5"
        left_out = {t["name"] for t in read_provenance(labels)["left_out"]} if labels.is_file() else set()
        models: dict[str, Model | Ensemble] = {f"teacher {n}" + (" (left out)" if n in left_out else ""): m for n, m in teachers.items()}
        if teachers:
            kept = [n for n in teachers if n not in left_out]
            models["teacher ensemble"] = Ensemble([teachers[n] for n in kept], kept)
        for role in ("students", "baselines"):
            for path in sorted(self.directory.glob(f"{role}/*/model.pt")):
                models[f"{role[:-1]} {path.parent.name}"] = Model.load(path)
        return models


def distill(config: RunConfig | dict | str | os.PathLike | None = None, data: Dataset | Sequence[Atoms] | str | os.PathLike | None = None,
            out: str | os.PathLike = "runs/ekd", on_progress: ProgressCallback | None = None, show_progress: bool = True) -> Run:
    """Ensemble knowledge distillation end to end; returns the finished :class:`Run`.

    Args:
        config: a :class:`RunConfig`, a nested mapping of its sections, or a YAML path.
        data: a :class:`Dataset`, a list of ASE ``Atoms`` (energies from their calculators), or a
            file path; default: ``config.data.path`` or the embedded reference set.
        out: the run directory (resumed when it holds an unfinished run of the same settings).
        on_progress: see :class:`Run`.
    """
    if isinstance(config, (str, os.PathLike)):
        config = RunConfig.load(config)
    elif isinstance(config, dict):
        config = validate(RunConfig, config, "config")
    config = config if config is not None else RunConfig()
    if isinstance(data, (str, os.PathLike)):
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(Path(data).resolve())})})
        data = None
    elif data is not None and not isinstance(data, Dataset):
        data = Dataset.from_atoms(data)
    run = Run(out, config, data, on_progress=on_progress, show_progress=show_progress)
    run.run()
    return run


def load(path: str | os.PathLike, device: str = "auto") -> Model | Ensemble | Run:
    """A model (``model.pt`` or its folder), an ensemble (a folder of member folders, or a
    published one: ``ani-pretrained:PATH``) or a run (a run directory)."""
    if pretrained_spec(str(path)) is None and (Path(path) / "config.yaml").is_file() and not (Path(path) / "model.pt").is_file():
        return Run.open(path)
    return load_predictor(path, device=device)
