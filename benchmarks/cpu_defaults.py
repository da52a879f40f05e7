"""The evidence for two CPU defaults: the students' epoch bound and NequIP's CPU size.

1. Students: MACE students (CPU size, 3 seeds) trained on one run's labels with epoch bounds of
   50 and 100, scored on the held-out PySCF forces. The labels come from ``--labels-run``, a
   finished ``ekd run --teacher ani --student mace`` (default build/literal).
2. NequIP: one energy-only model per candidate size (seed 100, 400 epochs, the teachers'
   schedule), scored the same way, with its seconds per epoch.

Finished trainings are reused (each is a resumable stage). Prints two tables and writes
benchmarks/results/cpu_defaults.json.

    .venv/bin/python benchmarks/cpu_defaults.py [--labels-run build/literal] [--work build/exp]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np

import ekd
from ekd.evaluate import evaluate
from ekd.parallel import TrainJob, run_jobs
from ekd.provenance import package_versions
from ekd.stages import Stage
from ekd.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
STUDENT_BOUNDS = (50, 100)
NEQUIP_SIZES = {"3x16": {"num_layers": 3, "num_features": 16}, "2x32": {"num_layers": 2}}  # layers x features


def held_out_mae(model_path: Path, test: ekd.Dataset) -> float:
    return evaluate(ekd.load(model_path), {"test": test})["test"]["force_mae"]


def student_bounds(labels_run: Path, work: Path, test: ekd.Dataset) -> dict:
    labels = ekd.Labels.read(labels_run / "labels.h5")
    rows = {}
    for epochs in STUDENT_BOUNDS:
        config = ekd.RunConfig.load(None, {"student.backend": "mace", "student.train": {"epochs": epochs}, "size": "small"})
        out = work / f"students-{epochs}"
        ekd.train_students(labels, out, config, show_progress=False)
        maes = [held_out_mae(out / "students" / f"seed-{config.student.seed + k}" / "model.pt", test) for k in range(config.student.seeds)]
        rows[epochs] = {"force_mae": maes, "mean": float(np.mean(maes)), "std": float(np.std(maes))}
    return rows


def nequip_sizes(work: Path, split: ekd.Split) -> dict:
    jobs = {name: TrainJob(Stage(work / f"nequip-{name}", name), "nequip", split.train.without_forces(),
                           split.validation.without_forces(), TrainConfig(epochs=400, seed=100), options, {})
            for name, options in NEQUIP_SIZES.items()}
    run_jobs(list(jobs.values()), 2, False)
    rows = {}
    for name, job in jobs.items():
        with open(job.stage.directory / "history.csv") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
        rows[name] = {"options": NEQUIP_SIZES[name], "force_mae": held_out_mae(job.stage.directory / "model.pt", split.test),
                      "s_per_epoch_two_side_by_side": statistics.median(seconds)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels-run", type=Path, default=ROOT / "build/literal")
    parser.add_argument("--work", type=Path, default=ROOT / "build/exp")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cpu_defaults.json")
    args = parser.parse_args()
    split = ekd.Dataset.embedded(with_forces=True).split((0.8, 0.1, 0.1), seed=0)
    students = student_bounds(args.labels_run, args.work, split.test)
    sizes = nequip_sizes(args.work, split)
    print(f"{'MACE students (3 seeds), epoch bound':<40}{'held-out force MAE':>20}")
    for epochs, row in students.items():
        print(f"{epochs:<40}{row['mean']:>13.2f} ± {row['std']:.2f}")
    print(f"\n{'NequIP energy-only, layers x features':<40}{'force MAE':>10}{'s/epoch (2 side by side)':>26}")
    for name, row in sizes.items():
        print(f"{name:<40}{row['force_mae']:>10.2f}{row['s_per_epoch_two_side_by_side']:>26.2f}")
    print("force MAE in kcal/mol/Å on the 160 held-out conformations (PySCF wB97X/6-31G(d) forces)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"students": students, "nequip_sizes": sizes, "versions": package_versions()}, indent=2))


if __name__ == "__main__":
    main()
