"""Spread-selected growth against random selection (``ekd grow``) on the coupled-cluster set.

For each selection rule and seed, ``ekd.grow`` starts from ``--initial`` conformations of
``embedded:ccsdt`` (CCSD(T)/cc-pVDZ energies) with four ANI teachers and one ANI student, and
buys ``--per-round`` new CCSD(T) energies per round on geometries the round's student samples by
MD; every round is scored on the held-out CCSD(T) forces and for MD stability. At an equal
number of reference energies, the rules are compared by the students' held-out force MAE (mean
± std over the seeds) and their MD survival. Prints a table, writes ``benchmarks/results/active.json``
and ``docs/active.png`` (force MAE against the reference energies bought). Each grow run
resumes; hours on 2 CPU cores: run it in the background.

    .venv/bin/python benchmarks/active.py [--rules force_spread energy_spread random] [--seeds 0 1 2] [--work build/active]

The results of rules not named in ``--rules`` that ``--out`` already holds are kept (and tabled).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import ekd
from ekd.evaluate.md import MDSettings

ROOT = Path(__file__).resolve().parents[1]
#: MD stability per round, of the students only: each molecule 0.5 ps at 300 K (ekd md runs 2 ps; here 4 rounds × 3 rules × 3 seeds)
MD = MDSettings(steps=1000)


def table(results: dict) -> list[str]:
    """Per round and rule: reference energies bought, student force MAE and MD survival (mean ± std over seeds)."""
    lines = ["| round | new CCSD(T) energies | " + " | ".join(f"{rule}: force MAE, MD intact" for rule in results) + " |",
             "|---" * (2 + len(results)) + "|"]
    rounds = min(len(runs[0]["rounds"]) for runs in results.values() if runs)
    for r in range(rounds):
        bought = sum(results[next(iter(results))][0]["rounds"][k]["new"] for k in range(r))
        cells = []
        for runs in results.values():
            mae = [run["rounds"][r]["student_force_mae"] for run in runs]
            stable = [np.mean([v for n, v in (run["rounds"][r]["md_fraction_stable"] or {}).items() if n.startswith("student")]) for run in runs]
            cells.append(f"{np.mean(mae):.2f} ± {np.std(mae):.2f}, {100 * np.mean(stable):.0f} %")
        lines.append(f"| {r} | {bought} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for rule, runs in results.items():
        bought = np.cumsum([0] + [r["new"] for r in runs[0]["rounds"][:-1]])
        mae = np.array([[r["student_force_mae"] for r in run["rounds"]] for run in runs])
        axis.errorbar(bought, mae.mean(0), yerr=mae.std(0), marker="o", capsize=3, label=f"{rule} ({len(runs)} seeds)")
    axis.set_xlabel("new CCSD(T) energies bought")
    axis.set_ylabel("student force MAE vs held-out CCSD(T) (kcal/mol/Å)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="*", default=["force_spread", "energy_spread", "random"], choices=["force_spread", "energy_spread", "random"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--initial", type=int, default=200)
    parser.add_argument("--data", default="embedded:ccsdt")
    parser.add_argument("--work", type=Path, default=ROOT / "build/active")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/active.json")
    args = parser.parse_args()
    config = ekd.RunConfig.load(None, {"data.path": args.data, "teachers.spec": "ani", "student.backend": "ani", "student.seeds": 1,
                                       "evaluate.md": MD.model_dump(), "evaluate.md_models": ["student"]})
    # the other rules' results already in --out (same data) are kept: a rule can be added later
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept = previous.get("results", {}) if previous.get("data") == args.data else {}
    results: dict[str, list[dict]] = {rule: runs for rule, runs in kept.items() if rule not in args.rules} | {rule: [] for rule in args.rules}
    walls = {run: seconds for run, seconds in previous.get("wall_seconds", {}).items() if run.rsplit("-seed", 1)[0] in results and run.rsplit("-seed", 1)[0] not in args.rules}
    for seed in args.seeds:
        for rule in args.rules:
            started = time.perf_counter()
            settings = ekd.GrowSettings(rounds=args.rounds, per_round=args.per_round, initial=args.initial, select=rule, seed=seed)
            results[rule].append(ekd.grow(args.work / f"{rule}-seed{seed}", config, settings, show_progress=False))
            walls[f"{rule}-seed{seed}"] = round(time.perf_counter() - started, 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"data": args.data, "results": results, "wall_seconds": walls, "cpu_count": os.cpu_count()}, indent=2))
    print("\n".join(table(results)))
    print("force MAE in kcal/mol/Å (students, mean ± std over seeds) on the held-out CCSD(T) forces; MD intact: share of molecules "
          f"whose bonds held for {MD.steps * MD.timestep_fs / 1000:g} ps at {MD.temperature_K:g} K")
    plot(results, ROOT / "docs/active.png")


if __name__ == "__main__":
    main()
