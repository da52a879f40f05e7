"""Fine-tuned teachers where energies are scarce (``teachers.init_from``, issue 33).

On ``embedded:ccsdt`` (1,440 CCSD(T)/cc-pVDZ energies, 10 molecules), scored on its 160 held-out
CCSD(T) force sets, for 100, 300 and all 1,440 energies (random subsets drawn by the seed, the
same for every method) and seeds 0, 1, 2 (subset, teachers' and student's seeds):

* ``scratch-4``: 4 ANI teachers from random weights (ekd's default), an ANI student, the
  energy-only baseline beside it;
* ``ft-4`` / ``ft-8``: 4 / 8 ANI teachers fine-tuned from the published ANI-1x members (their
  architecture, learning rate 1e-4: the fine-tuning defaults), the same student and baseline;
* ``mace``: a MACE student at the defaults from the scratch-4 and ft-4 teachers of the same run
  (teachers and labels reused);
* the published ANI-1x and ANI-1ccx ensembles as they are (forces do not depend on their energy
  reference);
* ``md`` (with ``runs``): MD stability at 1000 K of each run's ANI student (1,000 steps of 0.5 fs from the first
  conformation of each of the 10 molecules);
* ``settings``: one ANI-1x member fine-tuned on 300 and 1,440 energies with learning rates
  3e-3 .. 1e-4 and with its first and third layers frozen (the ANI-1ccx recipe): how the
  defaults were chosen.

Each finished piece is a row of ``benchmarks/results/fine_tune_ccsdt.json`` (resumes; runs live
in ``--work``). Prints the table. About an hour on 2 CPU cores: run it in the background.

    .venv/bin/python benchmarks/fine_tune_ccsdt.py [--steps published runs md mace settings] [--sizes 100 300 1440] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import ekd
from ekd._io import atomic_path
from ekd.data import Dataset
from ekd.data.embedded import resolve
from ekd.ensemble import load_predictor
from ekd.evaluate.comp6 import comp6_metrics, comp6_errors, refit_offsets
from ekd.evaluate.md import MDSettings, md_stability
from ekd.provenance import package_versions

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared/models"
ANI1X, ANI1CCX = f"ani-pretrained:{MODELS / 'ani-1x_8x'}", f"ani-pretrained:{MODELS / 'ani-1ccx_8x'}"
RESULTS = ROOT / "benchmarks/results/fine_tune_ccsdt.json"
DATA = resolve("embedded:ccsdt")
HELD_OUT = DATA.parent / "ekd_ref_ccsdt_ccpvdz_held_out.h5"
METHODS = {"scratch-4": {"teachers.spec": "ani:4"}, "ft-4": {"teachers.spec": "ani:4", "teachers.init_from": ANI1X},
           "ft-8": {"teachers.spec": "ani:8", "teachers.init_from": ANI1X}}
MD = MDSettings(steps=1000, temperature_K=1000.0)


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}


def save(results: dict) -> None:
    results["software"] = package_versions(())
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(results, indent=2))


def subset_file(work: Path, size: int, seed: int) -> Path:
    """The first ``size`` conformations of a seeded permutation of embedded:ccsdt (all of them at 1,440)."""
    path = work / "data" / f"ccsdt-{size}-seed{seed}.h5"
    if not path.is_file():
        data = Dataset.read(DATA)
        keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:size])
        path.parent.mkdir(parents=True, exist_ok=True)
        ekd.data.write(data.subset(keep), path)
    return path


def held_out_scores(predictor) -> dict:
    """Force and relative-energy MAE (kcal/mol/Å, kcal/mol) on the held-out set; energies with refit offsets."""
    frames = Dataset.read(HELD_OUT)
    predicted = predictor.predict(frames)
    energy, _ = refit_offsets(frames, predicted.energy)
    metrics = comp6_metrics(comp6_errors(frames, energy, predicted.forces))
    return {k: metrics[k] for k in ("force_mae", "relative_energy_mae", "energy_mae")}


def published_step(results: dict) -> None:
    for name, spec in (("ANI-1x", ANI1X), ("ANI-1ccx", ANI1CCX)):
        key = f"published {name}"
        if key not in results["rows"]:
            results["rows"][key] = {"ensemble": held_out_scores(load_predictor(spec, device="cpu")), "members": 8}
            save(results)


def _report_scores(report, name: str) -> dict:
    scores = report.scores(name, "held-out test")
    return {"force_mae": scores.force_mae, "relative_energy_mae": scores.relative_energy_mae, "energy_mae": scores.energy_mae}


def run_one(work: Path, results: dict, method: str, size: int, seed: int, student: str = "ani") -> str:
    key = f"{method} {size} seed{seed}" + ("" if student == "ani" else f" {student}")
    if key in results["rows"]:
        return key
    overrides = {"data.path": str(subset_file(work, size, seed)), "data.test_path": str(HELD_OUT), "data.seed": seed, "teachers.seed": 100 + 10 * seed, "student.seed": 200 + seed,
                 "student.seeds": 1, "student.baseline": student == "ani", "student.backend": student, "size": "small", **METHODS[method]}
    started = time.perf_counter()
    directory = work / "runs" / f"{method}-{size}-seed{seed}"
    run = ekd.distill(ekd.RunConfig.load(None, overrides), out=directory, show_progress=False)
    report = run.report
    teachers = [n for n, m in report.models.items() if m.role == "teacher"]
    results["rows"][key] = {
        "method": method, "size": size, "seed": seed, "student_backend": student, "trained_on": len(run.split.train), "validation": len(run.split.validation),
        "student": _report_scores(report, f"student seed-{200 + seed}"),
        "baseline": _report_scores(report, f"baseline seed-{200 + seed}") if student == "ani" else None,
        "ensemble": _report_scores(report, "teacher ensemble"),
        "members": {n: _report_scores(report, n)["force_mae"] for n in teachers},
        "teacher_seconds": sum(json.loads(p.read_text()).get("seconds") or 0 for p in (directory / "teachers").glob("[0-9]*/stage.json")),
        "student_seconds": sum(json.loads(p.read_text()).get("seconds") or 0 for p in (directory / "students").glob("*/stage.json")),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
    }
    save(results)
    return key


def md_one(work: Path, results: dict, key: str) -> None:
    """MD stability at 1000 K of the ANI run ``key``'s student and baseline (before a MACE student replaces the student)."""
    row = results["rows"][key]
    if f"md {key}" in results["rows"]:
        return
    directory = work / "runs" / f"{row['method']}-{row['size']}-seed{row['seed']}"
    found = {}
    for role in ("student", "baseline"):
        model = load_predictor(directory / f"{role}s" / f"seed-{200 + row['seed']}" / "model.pt", device="cpu")
        if model.backend.name != "ani":
            raise SystemExit(f"{directory}: its {role} is not the ANI one any more (a MACE run replaced it): delete the run and run again")
        result = md_stability(model, Dataset.read(HELD_OUT), MD, show_progress=False)
        found[role] = {k: result[k] for k in ("n_molecules", "n_stable", "fraction_stable", "mean_time_ps")}
    results["rows"][f"md {key}"] = {**found, "settings": MD.model_dump()}
    save(results)


def settings_step(work: Path, results: dict) -> None:
    """One ANI-1x member fine-tuned with several learning rates and freezing choices."""
    from ekd.train import TrainConfig
    from ekd.train.trainer import train

    start = work / "settings" / "start.pt"
    if not start.is_file():
        start.parent.mkdir(parents=True, exist_ok=True)
        load_predictor(ANI1X, device="cpu").models[0].save(start)
    choices = {"lr 3e-3": {}, "lr 1e-3": {"lr": 1e-3}, "lr 3e-4": {"lr": 3e-4}, "lr 1e-4": {"lr": 1e-4},
               "lr 1e-3, layers 0 and 2 frozen": {"lr": 1e-3, "freeze": ["*.layers.0.*", "*.layers.2.*"]},
               "lr 1e-4, layers 0 and 2 frozen": {"lr": 1e-4, "freeze": ["*.layers.0.*", "*.layers.2.*"]}}
    for size in (300, 1440):
        split = Dataset.read(subset_file(work, size, 0)).without_forces().split((0.9, 0.1, 0.0), seed=0)
        for name, values in choices.items():
            key = f"settings {size} {name}"
            if key in results["rows"]:
                continue
            out = work / "settings" / f"{size}-{name.replace(' ', '_').replace(',', '')}"
            shutil.rmtree(out, ignore_errors=True)
            result = train("ani", split.train, split.validation, out, TrainConfig(init_from=str(start), **values), show_progress=False)
            results["rows"][key] = {"size": size, **values, "force_mae": held_out_scores(result.model)["force_mae"], "best_val_loss": result.best_val_loss,
                                    "epochs": result.epochs_run, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}
            save(results)


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else (f"{values[0]:.2f}" if values else "")


def table(results: dict) -> list[str]:
    rows = results["rows"]
    lines = ["| teachers | student | energies | teacher ensemble | student | energy-only baseline | student MD 1000 K stable |", "|---|---|---|---|---|---|---|"]
    for name in ("ANI-1x", "ANI-1ccx"):
        if f"published {name}" in rows:
            lines.append(f"| published {name} (8) | – | – | {rows[f'published {name}']['ensemble']['force_mae']:.2f} | | | |")
    groups: dict[tuple, list[tuple[str, dict]]] = {}
    for key, row in rows.items():
        if "method" in row:
            groups.setdefault((row["method"], row["student_backend"], row["size"]), []).append((key, row))
    for (method, student, size), found in sorted(groups.items(), key=lambda item: (item[0][2], item[0][1], item[0][0])):
        pick = lambda part: [r[part]["force_mae"] for _, r in found if r.get(part)]  # noqa: E731
        md = [rows[f"md {k}"]["student"]["fraction_stable"] for k, _ in found if f"md {k}" in rows and "student" in rows[f"md {k}"]]
        seeds = "" if len(found) == 3 else f" ({len(found)} seed{'s' if len(found) > 1 else ''})"
        lines.append(f"| {method} | {student} | {size}{seeds} | {_cell(pick('ensemble'))} | {_cell(pick('student'))} | {_cell(pick('baseline'))} | {_cell(md)} |")
    settings = [(k.removeprefix("settings "), r) for k, r in rows.items() if k.startswith("settings ")]
    if settings:
        lines += ["", "| one ANI-1x member fine-tuned | force MAE | epochs (best) |", "|---|---|---|"]
        lines += [f"| {name} | {r['force_mae']:.2f} | {r['epochs']} ({r['best_epoch']}) |" for name, r in settings]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(ROOT / "build/fine_tune_ccsdt"))
    parser.add_argument("--steps", nargs="+", default=["published", "runs", "md", "mace", "settings"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 300, 1440])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    work, results = Path(args.work), load()
    if "published" in args.steps:
        published_step(results)
    for size in args.sizes:
        for seed in args.seeds:
            for method in args.methods:
                if "runs" in args.steps:
                    key = run_one(work, results, method, size, seed)
                    if "md" in args.steps:
                        md_one(work, results, key)
                if "mace" in args.steps and method != "ft-8":
                    run_one(work, results, method, size, seed, "mace")
    if "settings" in args.steps:
        settings_step(work, results)
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
