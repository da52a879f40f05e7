"""How fast energy-only ANI converges on the embedded set: learning rate, plateau patience, epochs.

Energy-only models (the teachers and the baseline) set the cost of an EKD run; this measures the
held-out force MAE of one energy-only ANI (seed 200) against the epoch bound for a few
schedules, from the best-so-far model kept at each bound. Trainings run side by side
(``--jobs``). Prints a table and writes benchmarks/results/energy_only_schedule.json.

    .venv/bin/python benchmarks/energy_only_schedule.py [--work build/schedule] [--jobs N]
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from sweep_ekd import keep_bounds, model_at

from ekd.data import load_default, random_split
from ekd.evaluate import evaluate
from ekd.parallel import TrainJob, run_jobs
from ekd.provenance import package_versions
from ekd.stages import Stage
from ekd.train import TrainConfig

BOUNDS = (100, 200, 300, 400)
SCHEDULES = {  # name: (lr, plateau patience, batch size)
    "lr 1e-3, patience 10": (1e-3, 10, 32),
    "lr 3e-3, patience 10": (3e-3, 10, 32),
    "lr 3e-3, patience 5": (3e-3, 5, 32),
    "lr 1e-3, patience 5": (1e-3, 5, 32),
    "lr 3e-3, patience 10, batch 64": (3e-3, 10, 64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("build/schedule"))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "energy_only_schedule.json")
    args = parser.parse_args()
    frames = load_default(with_forces=True)
    train_part, val_part, test_part = random_split(frames, (0.8, 0.1, 0.1), seed=0)
    jobs = {}
    for name, (lr, patience, batch) in SCHEDULES.items():
        directory = args.work / name.replace(" ", "").replace(",", "-")
        config = TrainConfig(epochs=max(BOUNDS), batch_size=batch, lr=lr, lr_patience=patience, seed=200)
        stage = Stage(directory, json.dumps(config.model_dump()))
        jobs[name] = TrainJob(stage, "ani", train_part.without_forces(), val_part.without_forces(), config, {}, {}, functools.partial(keep_bounds, directory))
    run_jobs(list(jobs.values()), args.jobs, description="energy-only schedules")
    rows = {}
    for name, job in jobs.items():
        rows[name] = {b: evaluate(model_at(job.stage.directory, b), {"test": test_part})["test"]["force_mae"] for b in BOUNDS}
    print(f"{'schedule':<32}" + "".join(f"{'@' + str(b):>9}" for b in BOUNDS) + "   force MAE, kcal/mol/Å, held-out PySCF forces")
    for name, maes in rows.items():
        print(f"{name:<32}" + "".join(f"{v:9.2f}" for v in maes.values()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "units": "kcal/mol/Å", "seed": 200, "versions": package_versions()}, indent=2))


if __name__ == "__main__":
    main()
