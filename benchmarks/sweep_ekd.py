"""Sweep that chooses ekd's EKD defaults, on the embedded reference set (ANI teachers → ANI student).

One factor at a time around a base setting, every student and baseline over 3 seeds:
  - number of teachers (2, 4, 8) — diverse members (the ANI variations recipe);
  - teachers that differ by seed only (4) against diverse ones (4);
  - student force weight w_F (0.01, 0.1, 1);
  - per-atom weighting of the force term by inverse teacher spread (off, on).
Scores: force MAE on the held-out test split against the PySCF forces (never trained on).
Teachers are trained once and reused; every training is resumable, so the script can be stopped
and started again. Prints a table and writes benchmarks/results/sweep_ekd.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_ekd.py [--work build/sweep] [--epochs 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ekd.data import load_default, random_split
from ekd.evaluate import evaluate
from ekd.data.labels import ensemble_statistics
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.train import TrainConfig, inverse_spread_weights, train

SEEDS = (200, 201, 202)
BASE = {"teachers": "diverse:4", "force_weight": 0.1, "weighting": "none"}
SETTINGS = [
    BASE,
    {**BASE, "teachers": "diverse:2"},
    {**BASE, "teachers": "diverse:8"},
    {**BASE, "teachers": "seed-only:4"},
    {**BASE, "force_weight": 0.01},
    {**BASE, "force_weight": 1.0},
    {**BASE, "weighting": "inverse_spread"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("build/sweep"))
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_ekd.json")
    args = parser.parse_args()

    frames = load_default(with_forces=True)
    train_part, val_part, test_part = random_split(frames, (0.8, 0.1, 0.1), seed=0)
    energy_only = train_part.without_forces(), val_part.without_forces()
    config = lambda seed, **kw: TrainConfig(epochs=args.epochs, seed=seed, **kw)  # noqa: E731
    started = time.perf_counter()

    def fit(name: str, parts, train_config: TrainConfig, options=None) -> Model:
        return train("ani", *parts, args.work / name, train_config, options, show_progress=False).model

    variations = get_backend("ani").variations
    teachers = {
        "diverse": [fit(f"teacher-diverse-{i}", energy_only, config(100 + i), variations[i % len(variations)]) for i in range(8)],
        "seed-only": [fit(f"teacher-seed-{i}", energy_only, config(100 + i)) for i in range(4)],
    }
    labels = {kind: np.stack([m.predict(train_part.without_forces()).forces for m in models]) for kind, models in teachers.items()}
    val_labels = {kind: np.stack([m.predict(val_part.without_forces()).forces for m in models]) for kind, models in teachers.items()}

    def score(model: Model) -> float:
        return evaluate(model, {"test": test_part})["test"]["force_mae"]

    rows = []
    baseline = [score(fit(f"baseline-{s}", energy_only, config(s))) for s in SEEDS]
    rows.append({"setting": "energy-only baseline", "force_mae": baseline})
    for kind, models in teachers.items():
        for i, model in enumerate(models):
            rows.append({"setting": f"teacher {kind} {i}", "force_mae": [score(model)]})
    for setting in SETTINGS:
        kind, count = setting["teachers"].split(":")
        mean, spread = ensemble_statistics(labels[kind][: int(count)])
        val_mean, val_spread = ensemble_statistics(val_labels[kind][: int(count)])
        parts = [train_part.with_forces(mean), val_part.with_forces(val_mean)]
        if setting["weighting"] == "inverse_spread":
            parts = [p.with_forces(p.forces, force_weight=inverse_spread_weights(s)) for p, s in zip(parts, (spread, val_spread))]
        name = "-".join(f"{k}={v}" for k, v in setting.items())
        maes = [score(fit(f"student-{name}-{s}", parts, config(s, force_weight=setting["force_weight"]))) for s in SEEDS]
        rows.append({"setting": f"student {name}", "force_mae": maes, **setting})

    table = [(r["setting"], float(np.mean(r["force_mae"])), float(np.std(r["force_mae"], ddof=1)) if len(r["force_mae"]) > 1 else 0.0) for r in rows]
    print(f"{'setting':<60} {'force MAE':>10} {'± std':>7}  (kcal/mol/Å, held-out PySCF forces)")
    for setting, mean, std in table:
        print(f"{setting:<60} {mean:10.3f} {std:7.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "epochs": args.epochs, "seconds": time.perf_counter() - started, "units": "kcal/mol/Å"}, indent=2))


if __name__ == "__main__":
    main()
