"""The evaluate stage: every model of a run scored side by side on the held-out set and the
evaluation files (COMP6 errors, parity plots), its seeds summarised, and MD stability,
materials properties and the teachers' calibration where asked; the result is a
:class:`ekd.report.Report`, which :mod:`ekd.report` renders.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

from ekd import distributed
from ekd.data import Dataset
from ekd.data.frames import PerConformation
from ekd.ensemble import Ensemble
from ekd.errors import ConfigError
from ekd.evaluate import evaluate, evaluate_streamed
from ekd.evaluate.calibration import calibration_plot, force_calibration
from ekd.evaluate.materials import material_properties_of
from ekd.evaluate.md import MDSettings, md_stability
from ekd.evaluate.plots import materials_plot
from ekd.model import Model, energy_level
from ekd.provenance import sha256_file, sha256_json, sha256_source
from ekd.pipeline.inputs import RunInputs
from ekd.report import HELD_OUT, Headline, ModelScores, Report, Role, Scores, SeedSpread
from ekd.stages import Stage

__all__ = ["PLOT_SAMPLE", "RunModel", "Scoring", "evaluate_models", "evaluate_run", "run_scoring", "score"]

#: conformations of a streamed dataset its parity plots and calibration are made from
PLOT_SAMPLE = 10_000
#: the roles whose parity plots are drawn and whose materials properties are checked
_SUMMARISED = ("teacher ensemble", "student", "baseline")


@dataclasses.dataclass(frozen=True)
class RunModel:
    """One model of a run as the report names it, with its role."""

    name: str
    role: Role
    predictor: Model | Ensemble


@dataclasses.dataclass(frozen=True)
class Scoring:
    """What the evaluation scores.

    Attributes:
        datasets: name → conformations with reference energies (and forces to score forces); a
            streamed one is scored a block at a time, its plots and calibration made from a
            seeded sample of :data:`PLOT_SAMPLE` conformations.
        references: dataset name → level of theory of its energies (offsets are refit for a
            model on another known level).
        refit_offsets: refit every model's per-element energy offsets before scoring energies.
        md: MD settings, or None for no MD stability.
        md_starts: the conformations MD starts from (one per molecule).
        md_roles: the roles whose models run MD.
        materials: the crystals to check (a dataset's ``metadata["materials"]``), or None.
        notes: what the report must say about the scores (:attr:`RunInputs.notes`).
    """

    datasets: dict[str, PerConformation]
    references: dict[str, str | None]
    refit_offsets: bool = False
    md: MDSettings | None = None
    md_starts: Dataset | None = None
    md_roles: Sequence[str] = _SUMMARISED
    materials: dict | None = None
    notes: tuple[str, ...] = ()


def score(predictor: Model | Ensemble, data: PerConformation | str | Sequence, refit_offsets: bool = False) -> Scores:
    """COMP6 errors of a model or ensemble on one dataset (a :class:`Dataset`, a streamed one, a
    file path or a list of ASE ``Atoms`` with energies and forces as calculator results):
    kcal/mol and kcal/mol/Å, and meV/atom, meV/Å and GPa where the data are periodic.
    ``refit_offsets``: refit the per-element energy offsets first (another energy reference)."""
    if isinstance(data, (str, Path)):
        data = Dataset.read(data)
    elif not isinstance(data, PerConformation):
        data = Dataset.from_atoms(data)
    data.check_elements(predictor.species, "the model")
    return Scores(**evaluate_streamed(predictor, data, refit=refit_offsets))


def run_scoring(inputs: RunInputs, labelled: PerConformation | None = None, teachers_level: str | None = None) -> Scoring:
    """What a run scores: its held-out set (the held-out file, or the test split against the
    reference energies or, for data without them, the ``labelled`` test split against the
    teachers' at ``teachers_level``), the evaluation files, and the checks its config asks for."""
    if not len(inputs.split.test) and not inputs.config.evaluate.files:
        raise ConfigError(f"nothing to score: data.test_fraction is {inputs.config.data.test_fraction} and {len(inputs.data)} conformations leave "
                          "no held-out test split, and no evaluation file is given (--eval FILE or evaluate.files)")
    datasets, references, evaluate_config = {}, {}, inputs.config.evaluate
    if inputs.held_out is not None or (len(inputs.split.test) and inputs.energy_source == "reference"):
        datasets[HELD_OUT], references[HELD_OUT] = inputs.split.test, inputs.split.test.metadata.get("level_of_theory")
    elif len(inputs.split.test) and labelled is not None:
        name = f"{HELD_OUT} (vs teacher labels)"
        datasets[name], references[name] = labelled.subset(inputs.split_index[2]), teachers_level
    for name, data in inputs.evaluation.items():
        datasets[name], references[name] = data, data.metadata.get("level_of_theory")
    starts = None
    if evaluate_config.md is not None:  # the first conformation of each molecule, in memory
        _, first = np.unique(inputs.data.molecule, return_index=True)
        starts = inputs.data.subset(np.sort(first)[: evaluate_config.md.max_molecules]).load()
    return Scoring(datasets, references, evaluate_config.refit_offsets, evaluate_config.md, starts, evaluate_config.md_models,
                   inputs.data.metadata.get("materials"), inputs.notes)


def evaluate_models(models: list[RunModel], scoring: Scoring, config: dict, stage_seconds: dict[str, float] | None = None,
                    plot_dir: Path | None = None, show_progress: bool = True) -> Report:
    """Score every model on every dataset whose elements it covers, summarise the students' and
    baselines' seeds, and run the checks ``scoring`` asks for; plots go to ``plot_dir``."""
    samples = {name: _plot_sample(data, PLOT_SAMPLE) for name, data in scoring.datasets.items() if not isinstance(data, Dataset)}
    results, refits, predictions = {}, {}, {}
    for model in models:
        results[model.name], refit = _scores(model, scoring, samples, plot_dir, predictions.setdefault(model.name, {}))
        if refit:
            refits[model.name] = refit
    md = _md_stability(models, scoring, show_progress) if scoring.md is not None else None
    properties = None
    if scoring.materials:
        properties = material_properties_of({m.name: m.predictor for m in models if m.role in _SUMMARISED}, scoring.materials)
        properties["roles"] = {m.name: m.role for m in models if m.name in properties["models"]}
        if plot_dir is not None:
            materials_plot(properties, plot_dir / "materials.png")
    calibration = _calibration(models, predictions, scoring.datasets | samples, plot_dir)
    return Report(results, _headlines(models, results, scoring.datasets), dict(stage_seconds or {}), config, dict(scoring.references), refits,
                  md, properties, calibration, notes=[*scoring.notes, *_not_scored(models, scoring.datasets)])


def _not_scored(models: list[RunModel], datasets: dict[str, PerConformation]) -> list[str]:
    """A note per dataset that some models could not score: elements they do not cover."""
    notes = []
    for name, data in datasets.items():
        missing = {m.name: sorted(set(data.elements) - set(m.predictor.species)) for m in models}
        skipped = [n for n, elements in missing.items() if elements]
        if skipped:
            elements = " ".join(chemical_symbols[z] for z in sorted({z for n in skipped for z in missing[n]}))
            notes.append(f"{name}: not scored for {', '.join(skipped)}: element(s) {elements} not covered")
    return notes


def _scores(model: RunModel, scoring: Scoring, samples: dict[str, Dataset], plot_dir: Path | None, predictions: dict) -> tuple[ModelScores, list[str]]:
    """One model's scores on each dataset it covers, and the datasets its offsets were refit on."""
    level = energy_level(model.predictor.models if isinstance(model.predictor, Ensemble) else [model.predictor])
    scores, refit_on = {}, []
    plots = plot_dir / model.name.replace(" ", "_") if plot_dir is not None and model.role in _SUMMARISED else None
    for dataset, data in scoring.datasets.items():
        if not set(data.elements) <= set(model.predictor.species):
            continue
        refit = scoring.refit_offsets or _other_reference(level, scoring.references[dataset])
        if dataset in samples:  # streamed: scored a block at a time; plots and calibration from the sample
            scores[dataset] = evaluate_streamed(model.predictor, data, refit=refit)
            if plots is not None:
                evaluate(model.predictor, {dataset: samples[dataset]}, refit=refit, plot_dir=plots, predictions=predictions)
        else:
            scores.update(evaluate(model.predictor, {dataset: data}, refit=refit, plot_dir=plots, predictions=predictions))
        if refit:
            refit_on.append(dataset)
    scores.pop("all", None)
    return ModelScores(level, {d: Scores(**s) for d, s in scores.items()}, model.role), refit_on


def _headlines(models: list[RunModel], results: dict[str, ModelScores], datasets: dict) -> dict[str, Headline]:
    """Per dataset: the students' force MAE over seeds against the baselines' and the ensemble's."""
    def force_mae(role: str, dataset: str) -> list[float]:
        scored = (results[m.name].datasets.get(dataset) for m in models if m.role == role)
        return [s.force_mae for s in scored if s is not None and s.force_mae is not None]

    headline = {}
    for dataset in datasets:
        student, ensemble = SeedSpread.of(force_mae("student", dataset)), force_mae("teacher ensemble", dataset)
        if student is not None:
            headline[dataset] = Headline.of(student, SeedSpread.of(force_mae("baseline", dataset)), ensemble[0] if ensemble else None)
    return headline


def _md_stability(models: list[RunModel], scoring: Scoring, show_progress: bool) -> dict:
    runs = {m.name: md_stability(m.predictor, scoring.md_starts, scoring.md, show_progress=show_progress) for m in models if m.role in scoring.md_roles}
    return {"settings": scoring.md.model_dump(), "models": {n: {k: v for k, v in r.items() if k != "settings"} for n, r in runs.items()}}


def _calibration(models: list[RunModel], predictions: dict[str, dict], datasets: dict[str, Dataset], plot_dir: Path | None) -> dict | None:
    """:func:`force_calibration` of the teacher ensemble and the students on every dataset with
    reference forces the ensemble was scored on (None without an ensemble of two or more)."""
    ensemble = next((m.name for m in models if m.role == "teacher ensemble"), None)
    result = {}
    for dataset, data in datasets.items():
        teachers = predictions.get(ensemble, {}).get(dataset)
        if data.forces is None or getattr(teachers, "member_forces", None) is None or len(teachers.member_forces) < 2:
            continue
        forces = {"teacher ensemble": teachers.forces}
        forces |= {m.name: predictions[m.name][dataset].forces for m in models if m.role == "student" and dataset in predictions[m.name]}
        result[dataset] = force_calibration(data, teachers.force_spread, forces)
        if plot_dir is not None:
            calibration_plot(result[dataset], plot_dir / f"calibration_{dataset.replace(' ', '_').replace('/', '_')}.png", dataset)
    return result or None


def _plot_sample(data: PerConformation, size: int) -> Dataset:
    """At most ``size`` conformations of a streamed dataset, seeded, in memory: what its parity
    plots and calibration are made from (its scores cover every conformation)."""
    if len(data) <= size:
        return data.load()
    return data.subset(np.sort(np.random.default_rng(0).choice(len(data), size, replace=False))).load()


def _normalised(level: str) -> str:
    return level.lower().replace(" ", "").replace("g**", "g(d,p)").replace("g*", "g(d)")


def _other_reference(model_level: str | None, data_level: str | None) -> bool:
    """Energies on different, known references (wB97X/6-31G* is wB97X/6-31G(d))."""
    return bool(model_level and data_level and _normalised(model_level) != _normalised(data_level))


def evaluate_run(directory: Path, models: list[RunModel], scoring: Scoring, config: dict, data_sha256: str, show_progress: bool = True) -> Report:
    """The evaluation as a stage of the run in ``directory``: ``report.json``, ``report.md`` and
    plots, redone only when a model, the labels (which teachers were left out), a scored dataset
    or the config changed (MD stability is slow). Every rank returns the report rank 0 wrote."""
    files = sorted(directory.glob("*/*/model.pt")) + sorted(directory.glob("labels.h5"))
    stage = Stage(directory / "evaluate", sha256_json("evaluate", {str(p.relative_to(directory)): sha256_file(p) for p in files},
                                                      {name: sha256_source(data) for name, data in scoring.datasets.items()}, data_sha256, config))
    if distributed.is_main() and not (stage.done and (directory / "report.json").is_file()):
        stage.start()
        seconds = {str(p.parent.relative_to(directory)): json.loads(p.read_text()).get("seconds")
                   for p in sorted(directory.glob("**/stage.json")) if p.parent != stage.directory}
        evaluate_models(models, scoring, config, seconds, directory / "plots", show_progress).write(directory)
        stage.finish()
    distributed.barrier()
    return Report.read(directory)
