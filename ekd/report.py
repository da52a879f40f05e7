"""The run report: every model side by side on the held-out split and the evaluation files.

``report.json`` holds, per model and dataset, ``energy_mae``, ``energy_rmse``,
``relative_energy_mae``, ``relative_energy_rmse``, ``force_mae``, ``force_rmse`` (kcal/mol,
kcal/mol/Å), the time per stage and the headline ratios; ``report.md`` is the same for a person.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ekd._io import atomic_path
from ekd.data import read, read_provenance
from ekd.ensemble import Ensemble
from ekd.evaluate import evaluate
from ekd.evaluate.md import MDSettings, md_stability
from ekd.model import Model
from ekd.runconfig import RunConfig

__all__ = ["run_models", "write_report"]

METRICS = ("energy_mae", "energy_rmse", "relative_energy_mae", "relative_energy_rmse", "force_mae", "force_rmse")


def run_models(run_dir: Path) -> dict[str, object]:
    """Every teacher, the ensemble the labels were made from, the students and baselines."""
    left_out = {t["name"] for t in read_provenance(run_dir / "labels.h5").get("left_out", [])} if (run_dir / "labels.h5").is_file() else set()
    teachers = {p.parent.name: Model.load(p) for p in sorted(run_dir.glob("teachers/*/model.pt"))}
    models: dict[str, object] = {f"teacher {name}" + (" (left out)" if name in left_out else ""): m for name, m in teachers.items()}
    if teachers:
        models["teacher ensemble"] = Ensemble([m for name, m in teachers.items() if name not in left_out])
    for role in ("students", "baselines"):
        for path in sorted(run_dir.glob(f"{role}/*/model.pt")):
            models[f"{role[:-1]} {path.parent.name}"] = Model.load(path)
    return models


def _normalised(level: str) -> str:
    return level.lower().replace(" ", "").replace("g**", "g(d,p)").replace("g*", "g(d)")


def _other_reference(model_level: str | None, data_level: str | None) -> bool:
    """Energies on different, known references (wB97X/6-31G* is wB97X/6-31G(d))."""
    return bool(model_level and data_level and _normalised(model_level) != _normalised(data_level))


def _seed_summary(results: dict, prefix: str, dataset: str, metric: str) -> tuple[float, float, int] | None:
    values = [r[dataset][metric] for name, r in results.items() if name.startswith(prefix) and metric in r.get(dataset, {})]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def write_report(run_dir: str | Path, config: RunConfig) -> dict:
    """Evaluate every model of the run, write report.json, report.md and parity plots."""
    from ekd.pipeline import default_eval_files, energy_labels, energy_level, labelled_data, run_data, teacher_level

    run_dir = Path(run_dir)
    frames, (_, _, test_part) = run_data(config)
    held_out = "held-out test"
    if energy_labels(config, frames) == "teachers":  # no reference energies: score against the teachers
        held_out, test_part = "held-out test (vs teacher labels)", labelled_data(run_dir, config, frames)[2]
    datasets = {held_out: test_part} if len(test_part) else {}
    for path in default_eval_files(config):
        datasets[path.stem] = read(path)
    references = {name: data.metadata.get("level_of_theory") for name, data in datasets.items()}
    if held_out != "held-out test":
        references[held_out] = teacher_level(run_dir, config)
    results, refits, models = {}, {}, run_models(run_dir)
    for name, predictor in models.items():
        level = energy_level(predictor.models if isinstance(predictor, Ensemble) else [predictor])
        scores = {}
        for dataset, data in datasets.items():
            if not set(data.elements) <= set(predictor.species):
                continue
            refit = config.evaluate.refit_offsets or _other_reference(level, references[dataset])
            plots = run_dir / "plots" / name.replace(" ", "_") if name.startswith(("student", "teacher ensemble", "baseline")) else None
            scores.update(evaluate(predictor, {dataset: data}, refit=refit, plot_dir=plots))
            if refit:
                refits.setdefault(name, []).append(dataset)
        scores.pop("all", None)
        results[name] = {"level_of_theory": level, **scores}

    stages = {}
    for record in sorted(run_dir.glob("**/stage.json")):
        stages[str(record.parent.relative_to(run_dir))] = json.loads(record.read_text()).get("seconds")
    headline = {}
    for dataset in datasets:
        student = _seed_summary(results, "student", dataset, "force_mae")
        baseline = _seed_summary(results, "baseline", dataset, "force_mae")
        ensemble = results.get("teacher ensemble", {}).get(dataset, {}).get("force_mae")
        entry = {}
        if student:
            entry["student_force_mae"] = {"mean": student[0], "std": student[1], "n": student[2]}
        if student and baseline:
            entry["baseline_force_mae"] = {"mean": baseline[0], "std": baseline[1], "n": baseline[2]}
            entry["student_over_baseline"] = student[0] / baseline[0]
            entry["difference_exceeds_spread"] = bool(baseline[0] - student[0] > max(student[1], baseline[1]))
        if student and ensemble:
            entry["student_over_teacher_ensemble"] = student[0] / ensemble
        if entry:
            headline[dataset] = entry
    report = {
        "units": {"energy": "kcal/mol", "forces": "kcal/mol/Å"},
        "models": results,
        "headline": headline,
        **({"md_stability": _md_stability(models, config.evaluate.md, frames)} if config.evaluate.md else {}),
        "stage_seconds": stages,
        "config": config.model_dump(),
        "energy_references": references,
        "offsets_refit": refits,
    }
    with atomic_path(run_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_path(run_dir / "report.md") as tmp:
        tmp.write_text(_markdown(report, list(datasets)))
    return report


def _md_stability(models: dict[str, object], settings: MDSettings, frames) -> dict:
    """MD stability of the teacher ensemble, the students and the baselines from the first
    conformation of each molecule of the run's data."""
    roles = ("teacher ensemble", "student", "baseline")
    results = {name: md_stability(predictor, frames, settings) for name, predictor in models.items() if name.startswith(roles)}
    return {"settings": settings.model_dump(), "models": {name: {k: v for k, v in r.items() if k != "settings"} for name, r in results.items()}}


def _markdown(report: dict, datasets: list[str]) -> str:
    lines = ["# EKD run report", "", "Errors in kcal/mol (energies) and kcal/mol/Å (forces), not per atom."]
    lines.append("Energy references: " + "; ".join(f"{d}: {level or 'not recorded'}" for d, level in report["energy_references"].items()) + ".")
    groups: dict[tuple, list[str]] = {}
    for name, datasets_refit in report["offsets_refit"].items():
        groups.setdefault((report["models"][name]["level_of_theory"], tuple(datasets_refit)), []).append(name)
    for (level, datasets_refit), names in groups.items():
        who = names[0] if len(names) == 1 else f"{len(names)} models ({names[0]} … {names[-1]})"
        lines.append(f"Per-element energy offsets refit before scoring energies of {who}, on {level or 'an unrecorded reference'}, "
                     f"on {', '.join(datasets_refit)}.")
    for dataset, entry in report["headline"].items():
        lines += ["", f"**{dataset}**: student force MAE {entry['student_force_mae']['mean']:.2f} ± {entry['student_force_mae']['std']:.2f} "
                  f"(n={entry['student_force_mae']['n']})"]
        if "baseline_force_mae" in entry:
            b = entry["baseline_force_mae"]
            verdict = "exceeds" if entry["difference_exceeds_spread"] else "does not exceed"
            lines[-1] += (f", energy-only baseline {b['mean']:.2f} ± {b['std']:.2f} (n={b['n']}); "
                          f"student/baseline = {entry['student_over_baseline']:.2f}; the difference {verdict} the seed spread")
        if "student_over_teacher_ensemble" in entry:
            lines[-1] += f"; student/teacher ensemble = {entry['student_over_teacher_ensemble']:.2f}"
    for dataset in datasets:
        lines += ["", f"## {dataset}", "", "| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for name, per_dataset in report["models"].items():
            values = per_dataset.get(dataset)
            if values is None:
                continue
            lines.append(f"| {name} | " + " | ".join(f"{values[m]:.3f}" if m in values else "–" for m in METRICS) + " |")
    if "md_stability" in report:
        md = report["md_stability"]
        settings = md["settings"]
        lines += ["", "## MD stability", "",
                  f"Langevin NVT at {settings['temperature_K']:g} K for {settings['steps'] * settings['timestep_fs'] / 1000:g} ps from each molecule's "
                  f"first conformation; a run fails when a bond changes by more than {settings['max_bond_deviation']:g} Å.", "",
                  "| model | molecules intact | mean time to failure or end (ps) | failed |", "|---|---|---|---|"]
        for name, result in md["models"].items():
            failed = ", ".join(f"{m} ({r['time_ps']:.2f} ps)" for m, r in result["molecules"].items() if not r["stable"])
            lines.append(f"| {name} | {result['n_stable']}/{result['n_molecules']} | {result['mean_time_ps']:.3f} | {failed or '–'} |")
    lines += ["", "## Cost", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds} |" for stage, seconds in report["stage_seconds"].items()]
    return "\n".join(lines) + "\n"
