"""Sweep that chooses ekd's EKD defaults, on the embedded reference set (ANI teachers → ANI student).

One factor at a time around a base setting (4 diverse teachers, w_F 0.1, batch 64), every student
and baseline over 3 seeds:
  - number of teachers (2, 4, 8) and teachers that differ by seed only (4) against diverse ones:
    scored on the teacher ensemble itself, which the student reproduces (see the base row);
  - student force weight w_F (0.01, 0.1, 1);
  - per-atom weighting of the force term by inverse teacher spread (off, on);
  - the epoch bound (100, 150, 200, 300) of every model, from the best-so-far model kept at each
    bound (the plateau schedule does not depend on the bound, so this is what a shorter run
    returns), and a whole pipeline with teachers bounded at 150 epochs.
Scores: force MAE on the held-out test split against the PySCF forces (never trained on).
Trainings run side by side (``--jobs``, default one per core); every one is resumable, so the
script can be stopped and started again. Prints a table and writes benchmarks/results/sweep_ekd.json.

    .venv/bin/python benchmarks/sweep_ekd.py [--work build/sweep] [--jobs N]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ekd.data import load_default, random_split
from ekd.data.labels import ensemble_statistics
from ekd.ensemble import Ensemble
from ekd.evaluate import evaluate
from ekd.model import Model
from ekd.parallel import TrainJob, run_jobs
from ekd.plugins import get_backend
from ekd.provenance import sha256_json, package_versions
from ekd.stages import Stage
from ekd.train import TrainConfig, inverse_spread_weights

EPOCHS = 300
BOUNDS = (100, 150, 200, EPOCHS)
SEEDS = (200, 201, 202)
BASE = {"teachers": "diverse:4", "force_weight": 0.1, "weighting": "none", "batch": 64, "teacher_epochs": EPOCHS}
SETTINGS = [
    BASE,
    {**BASE, "force_weight": 0.01},
    {**BASE, "force_weight": 1.0},
    {**BASE, "weighting": "inverse_spread"},
    {**BASE, "teacher_epochs": 150},
]


def keep_bounds(directory: Path, epoch: int, row: dict) -> None:
    """Copy the best-so-far model at each epoch bound: what a run with that bound returns."""
    if epoch in BOUNDS:
        shutil.copyfile(directory / "model.pt", directory / f"model-at-{epoch}.pt")


def model_at(directory: Path, bound: int) -> Model:
    """The model a run bounded at ``bound`` epochs returns (early-stopped runs end sooner)."""
    path = directory / f"model-at-{bound}.pt"
    return Model.load(path if path.is_file() else directory / "model.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("build/sweep"))
    parser.add_argument("--jobs", type=int, default=None, help="trainings side by side (default: one per core)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_ekd.json")
    args = parser.parse_args()

    frames = load_default(with_forces=True)
    train_part, val_part, test_part = random_split(frames, (0.8, 0.1, 0.1), seed=0)
    energy_only = train_part.without_forces(), val_part.without_forces()
    started = time.perf_counter()

    def job(name: str, parts, seed: int, batch: int, force_weight: float = 0.0, options: dict | None = None) -> TrainJob:
        config = TrainConfig(epochs=EPOCHS, seed=seed, batch_size=batch, force_weight=force_weight)
        directory = args.work / name
        digest = sha256_json(name, config.model_dump(), options)
        return TrainJob(Stage(directory, digest), "ani", *parts, config, options or {}, {"sweep": name}, functools.partial(keep_bounds, directory))

    variations = get_backend("ani").variations
    teacher_jobs = {"diverse": [job(f"teacher-diverse-{i}", energy_only, 100 + i, 64, options=variations[i % len(variations)]) for i in range(8)]}
    teacher_jobs["seed-only"] = teacher_jobs["diverse"][:1] + [job(f"teacher-seed-{i}", energy_only, 100 + i, 64) for i in range(1, 4)]
    baseline_jobs = {64: [job(f"baseline-b64-{s}", energy_only, s, 64) for s in SEEDS]}
    unique_teachers = list({j.stage.directory: j for js in teacher_jobs.values() for j in js}.values())
    run_jobs(unique_teachers + [j for js in baseline_jobs.values() for j in js], args.jobs, description="teachers and baselines")

    def directory(j: TrainJob) -> Path:
        return j.stage.directory

    def test_mae(model: Model) -> float:
        return evaluate(model, {"test": test_part})["test"]["force_mae"]

    student_jobs = {}
    for setting in SETTINGS:
        kind, count = setting["teachers"].split(":")
        teachers = [model_at(directory(j), setting["teacher_epochs"]) for j in teacher_jobs[kind][: int(count)]]
        forces = [np.stack([t.predict(part.without_forces()).forces for t in teachers]) for part in (train_part, val_part)]
        parts = []
        for part, per_teacher in zip((train_part, val_part), forces):
            mean, spread = ensemble_statistics(per_teacher)
            weights = {"force_weight": inverse_spread_weights(spread)} if setting["weighting"] == "inverse_spread" else {}
            parts.append(part.with_forces(mean, **weights))
        name = "-".join(f"{k}={v}" for k, v in setting.items() if v != BASE[k]) or "base"
        student_jobs[name] = (setting, [job(f"student-{name}-{s}", parts, s, setting["batch"], setting["force_weight"]) for s in SEEDS])
    run_jobs([j for _, js in student_jobs.values() for j in js], args.jobs, description="students")

    rows = []

    def add(setting: str, jobs: list[TrainJob], **extra) -> None:
        maes = {bound: [test_mae(model_at(directory(j), bound)) for j in jobs] for bound in BOUNDS}
        seconds = [json.loads((directory(j) / "stage.json").read_text())["seconds"] for j in jobs]
        rows.append({"setting": setting, "force_mae": maes, "seconds": seconds, **extra})

    for batch, jobs in baseline_jobs.items():
        add(f"energy-only baseline, batch {batch}", jobs)
    for kind, jobs in teacher_jobs.items():
        add(f"teachers {kind} (each)", jobs)
        for count in sorted({2, 4, len(jobs)} & set(range(2, len(jobs) + 1))):
            ensemble = {bound: [test_mae(Ensemble([model_at(directory(j), bound) for j in jobs[:count]]))] for bound in BOUNDS}
            rows.append({"setting": f"teacher ensemble {kind}:{count}", "force_mae": ensemble, "seconds": []})
    for name, (setting, jobs) in student_jobs.items():
        add(f"student {name}", jobs, **setting)

    print(f"{'setting':<58}" + "".join(f"{'@' + str(b):>14}" for b in BOUNDS) + f"{'s/model':>9}")
    for row in rows:
        cells = "".join(f"{np.mean(v):8.3f}±{np.std(v, ddof=1) if len(v) > 1 else 0:5.3f}" for v in row["force_mae"].values())
        print(f"{row['setting']:<58}{cells}{np.mean(row['seconds']) if row['seconds'] else float('nan'):9.0f}")
    print("force MAE (kcal/mol/Å) on the held-out PySCF forces, mean±std over seeds, by epoch bound")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "rows": rows, "bounds": BOUNDS, "units": "kcal/mol/Å", "seconds": time.perf_counter() - started,
        "jobs": args.jobs, "versions": package_versions(), "test_conformations": len(test_part),
    }, indent=2))


if __name__ == "__main__":
    main()
