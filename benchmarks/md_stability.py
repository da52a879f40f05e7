"""MD stability of an EKD run's models: do distilled students stay intact longer than the
energy-only baselines?

Runs `ekd.evaluate.md.md_stability` (Langevin NVT from each molecule's first conformation; a run
fails when a bond changes by more than 0.5 Å) for the teacher ensemble, every student and every
baseline of a finished `ekd run ... --baseline` directory, models side by side (one thread each),
prints a table and writes benchmarks/results/md_stability_<temperature>K_seed<seed>.json.

    .venv/bin/python benchmarks/md_stability.py RUN_DIR [--temperature 1000] [--steps 4000] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ekd.data import load_default
from ekd.evaluate.md import MDSettings, md_stability
from ekd.provenance import package_versions
from ekd.run import Run

ROLES = ("teacher ensemble", "student", "baseline")


def one_model(run_dir: Path, name: str, settings: MDSettings) -> dict:
    import torch

    torch.set_num_threads(1)
    result = md_stability(Run.open(run_dir).models()[name].predictor, load_default(with_forces=False), settings, show_progress=False)
    return {k: v for k, v in result.items() if k != "settings"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--temperature", type=float, default=1000.0, help="K")
    parser.add_argument("--steps", type=int, default=4000, help="of 0.5 fs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = MDSettings(steps=args.steps, temperature_K=args.temperature, seed=args.seed)
    names = [name for name, model in Run.open(args.run_dir).models().items() if model.role in ROLES]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {name: pool.submit(one_model, args.run_dir, name, settings) for name in names}
        models = {name: future.result() for name, future in futures.items()}

    print(f"{'model':<20}{'intact':>8}{'mean time (ps)':>16}   failed molecules ({settings.steps * settings.timestep_fs / 1000:g} ps at {args.temperature:g} K)")
    for name, result in models.items():
        failed = ", ".join(f"{m} ({r['time_ps']:.2f})" for m, r in result["molecules"].items() if not r["stable"])
        print(f"{name:<20}{result['n_stable']:>5}/{result['n_molecules']:<2}{result['mean_time_ps']:>16.3f}   {failed or '-'}")
    summary = {}
    for role in ("student", "baseline"):
        runs = [r for name, r in models.items() if name.startswith(role + " ")]
        fractions = [r["fraction_stable"] for r in runs]
        summary[role] = {"fraction_intact_mean": float(np.mean(fractions)), "fraction_intact_std": float(np.std(fractions)), "n": len(runs)}
        print(f"{role + 's':<20}intact {np.mean(fractions):.2f} ± {np.std(fractions):.2f} of the molecules (mean over {len(runs)} seeds)")
    out = args.out or Path(__file__).parent / "results" / f"md_stability_{args.temperature:g}K_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"run_dir": str(args.run_dir), "settings": settings.model_dump(), "summary": summary, "models": models, "versions": package_versions()}
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
