"""A distillation run: one object owning the directory of one run, its stages in order, resuming
and progress, and the accessors of what the stages made.

The inputs are resolved once (:func:`ekd.pipeline.resolve_inputs`: data read and hashed once,
split once, published ensembles loaded once); each stage is the public function of
:mod:`ekd.pipeline` that a user can call alone, resumable and checked against its inputs, so an
artifact made from other settings or data is redone or refused, never reused.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Sequence

from ase import Atoms

from ekd import distributed
from ekd._io import atomic_path
from ekd.config import dump_yaml, validate
from ekd.data import Dataset, StreamedDataset
from ekd.data.frames import PerConformation
from ekd.data.labels import Labels
from ekd.ensemble import Ensemble, load_predictor, pretrained_spec
from ekd.errors import ConfigError, EkdError
from ekd.estimate import describe_estimate, describe_sizes, run_estimate
from ekd.graph import check_geometries
from ekd.locks import directory_lock
from ekd.model import Model, energy_level
from ekd.pipeline import RunInputs, RunModel, Teachers, evaluate_run, label, resolve_inputs, train_ensemble, train_students, trained_teachers
from ekd.pipeline.evaluate import run_scoring
from ekd.pipeline.labelling import labels_of, made_by
from ekd.pipeline.students import training_view
from ekd.progress import ProgressCallback, ProgressEvent, notify
from ekd.provenance import sha256_file, sha256_json
from ekd.report import Report
from ekd.runconfig import RunConfig
from ekd.stages import Stage

__all__ = ["Run", "distill", "load"]


def _exclusive(stage):
    """The stage with the run directory locked (:mod:`ekd.locks`; rank 0 of ``torchrun`` holds it)."""
    @functools.wraps(stage)
    def locked(self, *args, **kwargs):
        with directory_lock(self.directory) if distributed.is_main() else contextlib.nullcontext():
            return stage(self, *args, **kwargs)
    return locked


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
        self.given_config = config if config is not None else RunConfig()
        self.on_progress, self.show_progress = on_progress, show_progress
        self._given = _saved(self.directory, data, self.given_config) if data is not None else None
        self._teachers: Teachers | None = None
        self._labels: Labels | StreamedDataset | None = None
        self._estimate: dict[str, float] | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike, **kwargs) -> "Run":
        """Reopen a finished or interrupted run from its saved ``config.yaml``."""
        saved = Path(directory) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{directory}: not an ekd run directory (no config.yaml)")
        return cls(directory, RunConfig.load(saved), **kwargs)

    def __repr__(self) -> str:
        return f"Run('{self.directory}', teachers='{self.given_config.teachers.spec}', student='{self.given_config.student.backend}')"

    # inputs ------------------------------------------------------------------------------------
    @functools.cached_property
    def inputs(self) -> RunInputs:
        """The run's inputs, resolved once (:class:`ekd.pipeline.RunInputs`)."""
        own = self.directory / "data.h5"
        if self._given is None and not self.given_config.data.path and own.is_file():
            raise ConfigError(f"{own} holds this run's data (given in memory): reopen the run with ekd.Run.open('{self.directory}'), "
                              "or pass data= or data.path (without them it would run on the embedded reference set)")
        return resolve_inputs(self.given_config, self._given)

    config = property(lambda self: self.inputs.config, doc="The config as it applies to the data (:attr:`RunInputs.config`).")
    data = property(lambda self: self.inputs.data, doc="The run's dataset (in memory, or streamed with ``data.stream``).")
    split = property(lambda self: self.inputs.split, doc="(train, validation, test) of the data; test is never trained on.")
    held_out = property(lambda self: self.inputs.held_out, doc="The held-out test set of ``data.test_path``, or None.")
    members = property(lambda self: self.inputs.members, doc="The teacher ensemble's members as the config specifies them.")

    def _save_config(self) -> None:
        """``config.yaml``: the config as run (:meth:`_as_run`), so that a reopened run is the same run."""
        if distributed.is_main():
            with atomic_path(self.directory / "config.yaml") as tmp:
                tmp.write_text(dump_yaml(self._as_run()))

    def _as_run(self) -> dict:
        """The config as run (saved, reported, hashed): ``size: auto`` as what it resolved to here."""
        return {**self.config.model_dump(), "size": self.config.resolved_size()}

    def describe_sizes(self) -> str:
        """One line: the model size chosen and each trained backend's options at that size."""
        return describe_sizes(self.config, self.members)

    def estimate(self) -> dict[str, float]:
        """Seconds each unfinished stage of trainings takes on this machine at its epoch bounds
        (:func:`ekd.estimate.run_estimate`), timed once per Run; early stopping usually ends them sooner."""
        if self._estimate is None:  # (timed once per run: describe_estimate() says the same)
            self._estimate = run_estimate(self.directory, self.inputs, self._current_labels_view())
        return self._estimate

    def describe_estimate(self) -> str:
        """One line: the run's trainings' time at their epoch bounds, per stage, and how to shorten a long run."""
        return describe_estimate(self.estimate())

    # stages ------------------------------------------------------------------------------------
    @_exclusive
    def teach(self, member: int | None = None) -> Teachers:
        """Train the teachers on energies only (or just ``member``); install published ones."""
        self._save_config()
        if member is not None and not 0 <= member < len(self.members):
            raise ConfigError(f"--member {member}: the ensemble has members 0..{len(self.members) - 1}")
        teachers = train_ensemble(*self.inputs.energy_only, self.directory / "teachers", self.config, self.members if member is None else [self.members[member]],
                                  self.inputs.published, self.on_progress, self.show_progress)
        self._estimate = None  # (what is left to train changed)
        if member is None:
            self._teachers, self._labels = teachers, None
        notify(self.on_progress, ProgressEvent("teach", finished=True))
        return teachers

    @_exclusive
    def label(self) -> Labels | StreamedDataset:
        """Label every conformation with each (good) teacher's forces and energies: ``labels.h5``.

        Returns the :class:`Labels`, or for a streamed run (``data.stream``) the labels file
        opened as the students' training view (``ekd.data.stream``: nothing per atom is read)."""
        teachers, path = self.teachers, self.directory / "labels.h5"
        self._save_config()
        stage = Stage(self.directory / "label", sha256_json("labels", teachers.inputs_sha256, self.inputs.data_sha256, self.config.teachers.outlier_factor))
        if not (stage.done and path.is_file() and made_by(path, teachers)):  # (a checkpoint replaced since: labelled again)
            if distributed.is_main():
                stage.start()  # (clears outputs of other inputs: the others wait for it)
            distributed.barrier()
            for name, reason in teachers.left_out.items():
                print(f"ekd label: teacher {name} left out: {reason}", file=sys.stderr)
            config = {"hash": stage.inputs_sha256, "run": self.config.model_dump()}
            made = label(self.data, teachers, path, config, stage.directory, show_progress=self.show_progress)
            self._labels = None if self.inputs.streamed else made  # (streamed: opened below with the run's energies)
            if distributed.is_main():
                stage.finish()
            distributed.barrier()
            notify(self.on_progress, ProgressEvent("label", finished=True))
        if self._labels is None:  # (read once per run)
            self._labels = labels_of(path, self.data, self.inputs.energy_source)
        return self._labels

    def _current_labels_view(self) -> PerConformation | None:
        """The labels' training view when ``labels.h5`` holds labels of the run's data, else None."""
        try:
            return self._labels_view() if (self.directory / "labels.h5").is_file() else None
        except EkdError:  # (labels of other data: the label stage redoes them)
            return None

    def _labels_view(self) -> PerConformation:
        """The labels' training view (teacher-mean forces; the run's energies)."""
        if self._labels is None:
            self._labels = labels_of(self.directory / "labels.h5", self.data, self.inputs.energy_source)
        return training_view(self._labels, self.config)

    @_exclusive
    def train_students(self, baseline: bool | None = None) -> list[Model]:
        """Train the students (and, with ``baseline`` or ``student.baseline``, the energy-only
        baselines) side by side; returns students then baselines."""
        labels = self.label()  # made once; refuses stale teachers
        self._save_config()
        energy_only = self.inputs.energy_only if self.inputs.energy_source == "reference" else None  # the control needs no teacher
        models = train_students(labels, self.directory, self.config, baseline, self.inputs.split_index, energy_only, self.on_progress, self.show_progress)
        self._estimate = None
        notify(self.on_progress, ProgressEvent("students", finished=True))
        return models

    @_exclusive
    def evaluate(self) -> Report:
        """Score every model of the run; write ``report.json``, ``report.md`` and parity plots."""
        teachers_energies = self.inputs.energy_source == "teachers"
        scoring = run_scoring(self.inputs, self._labels_view() if teachers_energies else None, energy_level(self.teachers.models) if teachers_energies else None)
        report = evaluate_run(self.directory, list(self.models().values()), scoring, self._as_run(), self.inputs.data_sha256, self.show_progress)
        notify(self.on_progress, ProgressEvent("evaluate", finished=True))
        return report

    @_exclusive
    def run(self) -> Report:
        """Every stage in order, each skipped when finished with the same inputs."""
        self._save_config()  # (resolving the inputs reads the data and every evaluation file: a missing one fails here)
        run_scoring(self.inputs)  # nothing to score fails here, before any training
        check_geometries(self.data)  # a broken geometry fails here, not as a NaN loss later
        for notice in [*self.config.notices(), *self.inputs.notes] if distributed.is_main() else []:
            print(f"ekd: {notice}", file=sys.stderr)
        if self.show_progress and distributed.is_main():
            print(self.describe_sizes(), file=sys.stderr)
            print(self.describe_estimate(), file=sys.stderr)
        self.teach()
        self.label()
        self.train_students()
        return self.evaluate()

    # results -----------------------------------------------------------------------------------
    @property
    def teachers(self) -> Teachers:
        """The trained teachers (:class:`Teachers`: the ensemble the labels are made from, and the
        members left out), each checkpoint loaded once per run."""
        if self._teachers is None:
            self._teachers = trained_teachers(self.directory / "teachers", self.config, self.members, *self.inputs.energy_only, self.inputs.published)
        return self._teachers

    @property
    def labels(self) -> Labels:
        """The teachers' labels of the run's data (``labels.h5``)."""
        return Labels.read(self.directory / "labels.h5")

    students = property(lambda self: [Model.load(p) for p in sorted(self.directory.glob("students/*/model.pt"))], doc="The trained students, one per seed.")
    baselines = property(lambda self: [Model.load(p) for p in sorted(self.directory.glob("baselines/*/model.pt"))], doc="The energy-only baselines, one per seed.")

    @property
    def report(self) -> Report:
        """The report of the last evaluation (``report.json``)."""
        return Report.read(self.directory / "report.json")

    def models(self) -> dict[str, RunModel]:
        """Every model of the run by report name, with its role: each teacher, the ensemble,
        students, baselines (those trained so far)."""
        teachers = self.teachers
        models = [RunModel(f"teacher {n}" + (" (left out)" if n in teachers.left_out else ""), "teacher", m) for n, m in teachers.members.items()]
        models.append(RunModel("teacher ensemble", "teacher ensemble", teachers))
        for role in ("student", "baseline"):
            models += [RunModel(f"{role} {p.parent.name}", role, Model.load(p)) for p in sorted(self.directory.glob(f"{role}s/*/model.pt"))]
        return {m.name: m for m in models}


def _saved(directory: Path, data: Dataset, config: RunConfig) -> Dataset:
    """Data given as an object, saved as the run's file ``data.h5`` (unless read from
    ``config.data.path``), so that the run can be reopened and its stages checked."""
    source, path = data.metadata.get("source"), config.data.path
    if source and path and Path(source).resolve() == Path(path).resolve() and data.metadata.get("sha256"):
        return data
    data.write(directory / "data.h5")
    return data.with_metadata(source=str(directory / "data.h5"), sha256=sha256_file(directory / "data.h5"))


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
