"""The evidence for HIP-NN's CPU size: energy-only models of candidate sizes on the embedded set.

One energy-only HIP-NN (a teacher or baseline) per candidate size and seed, trained on the
teachers' schedule (400 epochs bound, early stopping), two side by side on 2 cores, scored on
the held-out PySCF forces, with the seconds per epoch. ``upstream`` is hippynn's ANI-1x example
(20 features, 20 sensitivities, 2 interaction layers of 3 atom layers, cutoff 6.5 Å).
Finished trainings are reused (each is a resumable stage). Prints a table and writes
benchmarks/results/hippynn_sizes.json.

    .venv/bin/python benchmarks/hippynn_sizes.py [--seeds 100 101] [--work build/hippynn-sizes]
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
SIZES = {
    "upstream": {},
    "64 features": {"n_features": 64},
    "3 interaction layers": {"n_interaction_layers": 3},
    "cutoff 5.5": {"dist_soft_max": 4.5, "dist_hard_max": 5.5},
}


def seconds_per_epoch(history: Path) -> float:
    with open(history) as f:
        return statistics.median(float(row["seconds"]) for row in csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100])
    parser.add_argument("--work", type=Path, default=ROOT / "build/hippynn-sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/hippynn_sizes.json")
    args = parser.parse_args()
    split = ekd.Dataset.embedded(with_forces=True).split((0.8, 0.1, 0.1), seed=0)
    jobs = {(name, seed): TrainJob(Stage(args.work / f"{name.replace(' ', '-')}-{seed}", f"{name} seed {seed}"), "hippynn", split.train.without_forces(),
                                   split.validation.without_forces(), TrainConfig(epochs=400, seed=seed), options, {})
            for name, options in SIZES.items() for seed in args.seeds}
    run_jobs(list(jobs.values()), 2, False)
    rows = {}
    for name, options in SIZES.items():
        runs = [jobs[name, seed].stage.directory for seed in args.seeds]
        maes = [evaluate(ekd.load(run / "model.pt"), {"test": split.test})["test"]["force_mae"] for run in runs]
        rows[name] = {"options": options, "force_mae": maes, "mean": float(np.mean(maes)), "std": float(np.std(maes)),
                      "s_per_epoch_two_side_by_side": float(np.mean([seconds_per_epoch(run / "history.csv") for run in runs])),
                      "parameters": sum(p.numel() for p in ekd.load(runs[0] / "model.pt").module.parameters())}
    print(f"{'HIP-NN energy-only':<24}{'force MAE':>16}{'s/epoch (2 side by side)':>26}{'parameters':>12}")
    for name, row in rows.items():
        print(f"{name:<24}{row['mean']:>9.2f} ± {row['std']:.2f}{row['s_per_epoch_two_side_by_side']:>26.2f}{row['parameters']:>12}")
    print(f"force MAE in kcal/mol/Å on the 160 held-out conformations (PySCF wB97X/6-31G(d) forces), {len(args.seeds)} seed(s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": args.seeds, "sizes": rows, "versions": package_versions()}, indent=2))


if __name__ == "__main__":
    main()
