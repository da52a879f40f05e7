"""The run report: every model of a run side by side on the held-out split and the evaluation files.

:class:`Report` is the typed result; ``report.json`` is its serialisation (``format_version``)
and ``report.md`` the same for a person. Errors in kcal/mol (energies) and kcal/mol/Å (forces),
COMP6 convention: pooled over conformations, not divided by the number of atoms.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ekd._io import atomic_path
from ekd.errors import DataError
from ekd.evaluate.md import MDSettings

__all__ = ["HELD_OUT", "ROLES", "Headline", "ModelScores", "Report", "Role", "Scores", "SeedSpread"]

#: format of report.json; bumped when a key changes meaning
REPORT_FORMAT_VERSION = 1
#: the dataset name of the run's held-out test split in reports
HELD_OUT = "held-out test"
METRICS = ("energy_mae", "energy_rmse", "relative_energy_mae", "relative_energy_rmse", "force_mae", "force_rmse")
#: the columns added for datasets with periodic conformations
PERIODIC_METRICS = ("energy_per_atom_mae_meV", "force_mae_meV", "stress_mae_GPa")
#: what a model is in a run: a teacher, the teachers' ensemble, a student, an energy-only
#: baseline (the student's control), a force-trained limit (a model trained on reference forces)
Role = Literal["teacher", "teacher ensemble", "student", "baseline", "limit"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclasses.dataclass(frozen=True)
class Scores:
    """COMP6 errors of one model on one dataset (kcal/mol, kcal/mol/Å) and, for periodic data,
    errors in meV/atom, meV/Å and GPa; None where not scored."""

    n_conformations: int
    n_molecules: int
    energy_mae: float | None = None
    energy_rmse: float | None = None
    relative_energy_mae: float | None = None
    relative_energy_rmse: float | None = None
    force_mae: float | None = None
    force_rmse: float | None = None
    refit_offsets_eV: dict[str, float] | None = None
    energy_per_atom_mae_meV: float | None = None  # periodic conformations only, as the next two
    force_mae_meV: float | None = None
    stress_mae_GPa: float | None = None


@dataclasses.dataclass(frozen=True)
class ModelScores:
    """One model's scores per dataset, the energy reference it was trained on and its role."""

    level_of_theory: str | None
    datasets: dict[str, Scores]
    role: Role | None = None


def role_of(name: str) -> Role | None:
    """The role of a model named in a report written before roles were recorded (``teacher 00-ani``,
    ``teacher ensemble``, ``student seed-200``, ``baseline seed-200``)."""
    return next((role for role in sorted(ROLES, key=len, reverse=True) if name == role or name.startswith(role + " ")), None)


@dataclasses.dataclass(frozen=True)
class SeedSpread:
    """Mean and sample standard deviation over ``n`` seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "SeedSpread | None":
        if not values:
            return None
        return cls(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values))


@dataclasses.dataclass(frozen=True)
class Headline:
    """What EKD achieved on one dataset: the students' force MAE against the energy-only
    baselines' (kcal/mol/Å) and whether the difference, either way, exceeds the larger seed
    spread (None with one seed of either: there is no spread to compare)."""

    student_force_mae: SeedSpread
    baseline_force_mae: SeedSpread | None = None
    student_over_baseline: float | None = None
    difference_exceeds_spread: bool | None = None
    student_over_teacher_ensemble: float | None = None

    @classmethod
    def of(cls, student: SeedSpread, baseline: SeedSpread | None, ensemble: float | None) -> "Headline":
        return cls(
            student_force_mae=student,
            baseline_force_mae=baseline,
            student_over_baseline=student.mean / baseline.mean if baseline else None,
            difference_exceeds_spread=bool(abs(baseline.mean - student.mean) > max(student.std, baseline.std)) if baseline and min(student.n, baseline.n) > 1 else None,
            student_over_teacher_ensemble=student.mean / ensemble if ensemble else None,
        )


@dataclasses.dataclass(frozen=True)
class Report:
    """Metrics of every model of a run per dataset, the headline per dataset and stage costs.

    Attributes:
        models: model name (``teacher 00-ani``, ``teacher ensemble``, ``student seed-200``,
            ``baseline seed-200``) → its scores and role.
        headline: dataset name (``held-out test``, an evaluation file's stem) → :class:`Headline`.
        stage_seconds: stage directory → seconds spent (all attempts).
        config: the run configuration that produced it.
        energy_references: dataset → level of theory of its reference energies.
        offsets_refit: model → datasets on which its energy offsets were refit before scoring.
        md_stability: MD stability results (``evaluate.md``), or None.
        materials: for data that names crystals (``metadata["materials"]``, e.g. ekd's periodic
            set): ``ground_truth`` and each model's (ensemble, students, baselines) properties
            per system (:data:`ekd.evaluate.materials.PROPERTIES`, with units), or None.
        calibration: dataset → model (the teacher ensemble, each student) → how well the
            teachers' force spread predicts its force error there
            (:func:`ekd.evaluate.calibration.force_calibration`), on datasets with forces.
        notes: what makes a score less than it seems (conformations both trained on and
            scored) and datasets some models could not score, one line each.
    """

    models: dict[str, ModelScores]
    headline: dict[str, Headline]
    stage_seconds: dict[str, float]
    config: dict
    energy_references: dict[str, str | None]
    offsets_refit: dict[str, list[str]]
    md_stability: dict | None = None
    materials: dict | None = None
    calibration: dict | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    format_version: int = REPORT_FORMAT_VERSION
    units: dict = dataclasses.field(default_factory=lambda: {"energy": "kcal/mol", "forces": "kcal/mol/Å"})

    @property
    def held_out(self) -> Headline | None:
        """The headline on the run's held-out test split (None when it was not scored)."""
        return self.headline.get(HELD_OUT)

    def scores(self, model: str, dataset: str = HELD_OUT) -> Scores:
        """One model's scores on one dataset."""
        try:
            return self.models[model].datasets[dataset]
        except KeyError:
            raise KeyError(f"no scores of '{model}' on '{dataset}'; models: {', '.join(self.models)}") from None

    # serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The ``report.json`` mapping (models flattened: ``{name: {level_of_theory, dataset: {...}}}``)."""
        strip = lambda obj: {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}  # noqa: E731
        return {
            "format_version": self.format_version,
            "units": self.units,
            "models": {name: {"level_of_theory": m.level_of_theory, "role": m.role, **{d: strip(s) for d, s in m.datasets.items()}}
                       for name, m in self.models.items()},
            "headline": {d: strip(h) for d, h in self.headline.items()},
            **({"md_stability": self.md_stability} if self.md_stability else {}),
            **({"materials": self.materials} if self.materials else {}),
            **({"calibration": self.calibration} if self.calibration else {}),
            **({"notes": self.notes} if self.notes else {}),
            "stage_seconds": self.stage_seconds,
            "config": self.config,
            "energy_references": self.energy_references,
            "offsets_refit": self.offsets_refit,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Report":
        version = values.get("format_version")
        if version != REPORT_FORMAT_VERSION:
            raise DataError(f"report format version {version}, this ekd reads version {REPORT_FORMAT_VERSION}; run 'ekd run' again to rewrite it")
        models = {}
        for name, entry in values["models"].items():
            entry = dict(entry)
            level, role = entry.pop("level_of_theory", None), entry.pop("role", None) or role_of(name)
            models[name] = ModelScores(level, {d: Scores(**s) for d, s in entry.items()}, role)
        headline = {}
        for dataset, h in values["headline"].items():
            spreads = {k: SeedSpread(**h[k]) if h.get(k) else None for k in ("student_force_mae", "baseline_force_mae")}
            headline[dataset] = Headline(**{**h, **spreads})
        return cls(
            models=models,
            headline=headline,
            stage_seconds=values["stage_seconds"],
            config=values["config"],
            energy_references=values["energy_references"],
            offsets_refit=values["offsets_refit"],
            md_stability=values.get("md_stability"),
            materials=values.get("materials"),
            calibration=values.get("calibration"),
            notes=values.get("notes", []),
            units=values["units"],
        )

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Report":
        """A report from its ``report.json`` (or the run directory holding it)."""
        path = Path(path)
        path = path / "report.json" if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"{path}: no report yet (the run has not been evaluated; run 'ekd run' or Run.evaluate())")
        try:
            values = json.loads(path.read_text())
            return cls.from_dict(values)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"{path}: not a report of this ekd ({type(error).__name__}: {error}); run 'ekd run' again to rewrite it") from None

    def write(self, directory: str | os.PathLike) -> None:
        """``report.json`` and ``report.md`` in ``directory``, atomically."""
        directory = Path(directory)
        with atomic_path(directory / "report.json") as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
        with atomic_path(directory / "report.md") as tmp:
            tmp.write_text(self.markdown())

    def markdown(self) -> str:
        """The report for a person: headline sentences, one table per dataset, MD, cost."""
        lines = ["# EKD run report", "", "Errors in kcal/mol (energies) and kcal/mol/Å (forces), not per atom."]
        if any(getattr(scores, c) is not None for m in self.models.values() for scores in m.datasets.values() for c in PERIODIC_METRICS):
            lines[-1] += " Periodic cells also per atom: energy_per_atom_mae_meV in meV/atom, force_mae_meV in meV/Å, stress_mae_GPa in GPa."
        lines.append("Energy references: " + "; ".join(f"{d}: {level or 'not recorded'}" for d, level in self.energy_references.items()) + ".")
        groups: dict[tuple, list[str]] = {}
        for name, datasets_refit in self.offsets_refit.items():
            groups.setdefault((self.models[name].level_of_theory, tuple(datasets_refit)), []).append(name)
        for (level, datasets_refit), names in groups.items():
            who = names[0] if len(names) == 1 else f"{len(names)} models ({names[0]} … {names[-1]})"
            lines.append(f"Per-element energy offsets refit before scoring energies of {who}, on {level or 'an unrecorded reference'}, "
                         f"on {', '.join(datasets_refit)}.")
        lines += [f"**Note**: {note}." for note in self.notes]
        for dataset, h in self.headline.items():
            s = h.student_force_mae
            lines += ["", f"**{dataset}**: student force MAE {s.mean:.2f} ± {s.std:.2f} (n={s.n})"]
            if h.baseline_force_mae is not None:
                b = h.baseline_force_mae
                better = "better" if s.mean < b.mean else "worse"
                verdict = {True: f"the student is {better} beyond the seed spread", False: "the difference does not exceed the seed spread",
                           None: "a single seed: no spread to compare (student.seeds: 3 gives one)"}[h.difference_exceeds_spread]
                lines[-1] += f", energy-only baseline {b.mean:.2f} ± {b.std:.2f} (n={b.n}); student/baseline = {h.student_over_baseline:.2f}; {verdict}"
            if h.student_over_teacher_ensemble is not None:
                lines[-1] += f"; student/teacher ensemble = {h.student_over_teacher_ensemble:.2f}"
        datasets = list(dict.fromkeys(d for m in self.models.values() for d in m.datasets))
        for dataset in datasets:
            scored = [m.datasets[dataset] for m in self.models.values() if dataset in m.datasets]
            columns = METRICS + tuple(c for c in PERIODIC_METRICS if any(getattr(s, c) is not None for s in scored))
            lines += ["", f"## {dataset}", "", "| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            for name, model in self.models.items():
                scores = model.datasets.get(dataset)
                if scores is not None:
                    values = [getattr(scores, m) for m in columns]
                    lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
        if self.md_stability:
            settings = MDSettings(**self.md_stability["settings"])  # defaults for keys older reports lack
            lines += ["", "## MD stability", "",
                      f"Langevin NVT at {settings.temperature_K:g} K for {settings.steps * settings.timestep_fs / 1000:g} ps from each system's "
                      f"first conformation; a molecule fails when a bond changes by more than {settings.max_bond_deviation:g} Å, a periodic cell when two "
                      f"atoms come closer than {settings.min_distance_factor:g}× their covalent radii sum or it heats past "
                      f"{settings.max_temperature_factor:g}× the thermostat.", "",
                      "| model | systems intact | mean time to failure or end (ps) | failed |", "|---|---|---|---|"]
            for name, result in self.md_stability["models"].items():
                failed = ", ".join(f"{m} ({r['time_ps']:.2f} ps)" for m, r in result["molecules"].items() if not r["stable"])
                lines.append(f"| {name} | {result['n_stable']}/{result['n_molecules']} | {result['mean_time_ps']:.3f} | {failed or '–'} |")
        if self.materials:
            lines += ["", *materials_table(self.materials)]
        if self.calibration:
            lines += ["", *calibration_table(self.calibration)]
        lines += ["", "## Cost", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {stage} | {seconds} |" for stage, seconds in self.stage_seconds.items()]
        return "\n".join(lines) + "\n"


def calibration_table(calibration: dict) -> list[str]:
    """Markdown: per dataset and model, how well the teachers' force spread ranks its errors."""
    lines = ["## Calibration: does the teachers' force spread predict the error?", "",
             "Spearman's ρ between the teachers' force spread and each model's true force error (1: the spread orders the errors "
             "perfectly, 0: it says nothing), and the mean error (kcal/mol/Å) of the conformations in the lowest and highest "
             "eighth of the spread. Plots: `plots/calibration_*.png`.", "",
             "| dataset | model | ρ per atom | ρ per conformation | error, lowest spread | error, highest spread |", "|---|---|---|---|---|---|"]
    for dataset, models in calibration.items():
        for name, result in models.items():
            atom, conformation = result["per_atom"], result["per_conformation"]
            lines.append(f"| {dataset} | {name} | {atom['spearman']:.2f} | {conformation['spearman']:.2f} | "
                         f"{conformation['bins'][0]['error']:.2f} | {conformation['bins'][-1]['error']:.2f} |")
    return lines


def materials_summary(materials: dict) -> dict[str, dict]:
    """Per ``"<system> <property>"``: the ground truth, its unit, the teacher ensemble's value and
    the students' and baselines' mean ± std over seeds and mean absolute error (``error``, the
    mean over seeds of each model's distance to the ground truth; None where not computed), and
    whether the students are closer to the ground truth than the baselines: a smaller ``error``,
    how far the one model a user trains is expected to be (the distance of the seeds' mean would
    credit the baselines with an ensemble's averaging). None when either is missing."""
    summary, roles = {}, materials.get("roles") or {name: role_of(name) for name in materials["models"]}  # (no roles: an older report)
    for system, truth in materials["ground_truth"].items():
        for prop, value in truth.items():
            row = {"ground_truth": value, "unit": materials["units"][prop]}
            for role in ("teacher ensemble", "student", "baseline"):
                values = [m[system][prop] for n, m in materials["models"].items() if roles[n] == role and prop in m.get(system, {})]
                row[role] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values),
                             "error": float(np.mean(np.abs(np.subtract(values, value))))} if values else None
            row["student_closer"] = (row["student"]["error"] < row["baseline"]["error"]) if row["student"] and row["baseline"] else None
            summary[f"{system} {prop}"] = row
    return summary


def summary_table(summary: dict[str, dict]) -> list[str]:
    """Markdown table lines of a :func:`materials_summary`."""
    lines = ["| system, property | ground truth | teacher ensemble | students | baselines | error: ensemble | error: students | error: baselines | students closer |",
             "|---" * 9 + "|"]
    spread = lambda v: "–" if v is None else f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if v["n"] > 1 else "")  # noqa: E731
    error = lambda v: "–" if v is None else f"{v['error']:.3g}"  # noqa: E731
    for name, row in summary.items():
        closer = {True: "yes", False: "no"}.get(row["student_closer"], "–")
        lines.append(f"| {name} ({row['unit']}) | {row['ground_truth']:.3f} | {spread(row['teacher ensemble'])} | {spread(row['student'])} | "
                     f"{spread(row['baseline'])} | {error(row['teacher ensemble'])} | {error(row['student'])} | {error(row['baseline'])} | {closer} |")
    return lines


def materials_table(materials: dict) -> list[str]:
    """Markdown lines of :func:`materials_summary`, and the models left out of a system."""
    lines = [f"## Materials properties (ground truth: {materials['level_of_theory']})", "",
             "Each model's own equilibrium lattice constant is used for its vacancy and surface energies.", "",
             "Error: the mean over seeds of each model's distance to the ground truth; the students are closer when theirs is smaller "
             "(a student learns its teachers' properties: expect its error near the ensemble's). Plot: `plots/materials.png`.", "",
             *summary_table(materials_summary(materials))]
    failures = [f"{name} on {system}: {m[system]['failed']}" for name, m in materials["models"].items() for system in m if "failed" in m[system]]
    if failures:
        lines += ["", "Left out (no equilibrium found): " + "; ".join(failures) + "."]
    return lines
