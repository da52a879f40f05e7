"""Students for S66 chemistry from the published ANI-1x ensemble alone (``ekd sample``, issue 32).

1. ``sample``: the 14 S66 monomers (``benchmarks/inputs/s66_monomers.smi``) are sampled and
   labelled by the 8-member ANI-1x ensemble. No S66x8 geometry is used: sampled geometries
   within 0.1 Å RMS (sorted interatomic distances) of an S66x8 conformation are left out
   (``exclude``), and the script checks it and records the closest.
2. ``students``: per backend, an ``ekd run`` with the ensemble as teachers and the sampled data
   as the training set, 3 student seeds, scored on all 528 S66x8 conformations (wB97X/6-31G(d)
   forces, relative energies) and on ``ani1x/ani1x_sample.h5`` (20-30-atom molecules, out of
   domain), beside the ensemble and each of its members.
3. ``compact``: an ANI student with half the AEV features and smaller networks, for speed.
   ``embedded``: the control a user has without sampling: ANI students distilled from the same
   ensemble on ekd's embedded set (``embedded:ccsdt``, teacher energies), same budget.
4. ``md``: MD stability on S66 dimers (every 6th of the 66), 300 K and 600 K, of each backend's
   first student and the ensemble.

Each finished piece is a row of ``benchmarks/results/sample_s66.json`` (resumes; runs live in
``--work``). Prints the table. Hours on 2 CPU cores: run it in the background.

    .venv/bin/python benchmarks/sample_s66.py [--steps sample students embedded md] [--backends ani mace nequip]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ekd
from ekd._io import atomic_path
from ekd.data import Dataset
from ekd.ensemble import load_predictor
from ekd.evaluate.md import MDSettings, md_stability
from ekd.provenance import package_versions
from ekd.sampling.filters import nearest_rms

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
S66 = SHARED / "data/comp6/s66x8_wb97x6-31gd.h5"
ANI1X = SHARED / "data/ani1x/ani1x_sample.h5"
TEACHERS = f"ani-pretrained:{SHARED / 'models/ani-1x_8x'}"
RESULTS = ROOT / "benchmarks/results/sample_s66.json"
#: the sampling (reduced from ekd sample's defaults to fit 2 CPU cores: 3 MD replicas per
#: temperature, a frame every 20 steps, 40 MD steps per pair placement)
SAMPLING = {"replicas": 3, "md_steps": 200, "record_every": 20, "rattles": 16, "soft_mode_samples": 16, "pair_md_steps": 40,
            "exclude": [str(S66)]}
#: students' epochs per backend (reduced budget on 2 cores; early stopping may end them sooner)
EPOCHS = {"ani": 60, "mace": 15, "nequip": 15}
#: a compact ANI student (192 AEV features instead of 384, networks 96-64-32): for speed
COMPACT_ANI = {"radial_shifts": 8, "angle_sections": 4, "hidden": [96, 64, 32]}
MD = {"steps": 500, "every": 6}  # 0.25 ps from every 6th S66 dimer (11 of 66)


def load(path: Path = RESULTS) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def save(results: dict) -> None:
    results["software"] = package_versions(("rdkit",))
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(results, indent=2))


def sample_step(work: Path, results: dict) -> Dataset:
    started = time.perf_counter()
    data = ekd.sample(work / "sample", TEACHERS, smiles_file=ROOT / "benchmarks/inputs/s66_monomers.smi", settings=SAMPLING)
    closest = nearest_rms(data, Dataset.read(S66))
    if closest.min() <= 0.1:
        raise SystemExit(f"{int((closest <= 0.1).sum())} sampled geometries are within 0.1 Å RMS of an S66x8 conformation")
    summary = json.loads((work / "sample/sample.json").read_text())
    results["rows"]["sample"] = {
        "settings": summary["settings"], "conformations": len(data), "atoms": int(data.n_atoms), "sampled": summary["sampled"],
        "gated": summary["gated"], "excluded_near_s66x8": summary["excluded"], "gate_eV_per_A": summary["gate"]["max_force_spread_eV_per_A"], "seconds": summary["seconds"],
        "closest_to_s66x8_rms_A": float(closest[np.isfinite(closest)].min()), "dimers_compared": int(np.isfinite(closest).sum()),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
    }
    save(results)
    return data


def _scores(report, name: str) -> dict:
    out = {}
    for label, dataset in (("s66x8", S66.stem), ("ani1x_sample", ANI1X.stem)):
        scores = report.scores(name, dataset)
        out[label] = {"force_mae": scores.force_mae, "relative_energy_mae": scores.relative_energy_mae, "energy_mae": scores.energy_mae}
    return out


def run_step(work: Path, results: dict, key: str, backend: str, data_path: str | None, energy_labels: str, options: dict | None = None) -> None:
    config = ekd.RunConfig.load(None, {
        "data.path": data_path, "teachers.spec": TEACHERS, "student.backend": backend, "student.seeds": 3, "student.options": options or {},
        "student.energy_labels": energy_labels, "epochs": EPOCHS[backend], "size": "small",
        "evaluate.files": [str(S66), str(ANI1X)],
    })
    started = time.perf_counter()
    run = ekd.distill(config, out=work / key)
    report = run.report
    students = [n for n, m in report.models.items() if m.role == "student"]
    members = [n for n, m in report.models.items() if m.role == "teacher"]
    results["rows"][key] = {
        "backend": backend, "options": options or {}, "data": data_path or "embedded", "epochs": EPOCHS[backend], "conformations": len(run.data),
        "students": {n: _scores(report, n) for n in students},
        "ensemble": _scores(report, "teacher ensemble"),
        "members": {n: _scores(report, n) for n in members},
        "train_seconds": sum((json.loads(p.read_text()).get("seconds") or 0) for p in (work / key / "students").glob("*/stage.json")),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
    }
    save(results)


def md_step(work: Path, results: dict, backends: list[str]) -> None:
    s66 = Dataset.read(S66)
    names = s66.molecules[:: MD["every"]]
    starts = s66.subset(np.sort([int(np.flatnonzero(s66.molecule == n)[0]) for n in names]))
    predictors = {"ANI-1x ensemble": load_predictor(TEACHERS, device="cpu")}
    predictors.update({f"{b} student": load_predictor(work / f"sampled-{b}" / "students" / "seed-200") for b in backends})
    for name, predictor in predictors.items():
        for temperature in (300.0, 600.0):
            key = f"md {name} {temperature:g} K"
            if key in results["rows"]:
                continue
            found = md_stability(predictor, starts, MDSettings(steps=MD["steps"], temperature_K=temperature))
            results["rows"][key] = {k: found[k] for k in ("n_molecules", "n_stable", "fraction_stable", "mean_time_ps", "settings")}
            save(results)


def table(results: dict) -> list[str]:
    rows = results["rows"]
    lines = ["| model | trained on | S66x8 force MAE | S66x8 rel. energy MAE | ANI-1x sample force MAE |", "|---|---|---|---|---|"]

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

    first = next((r for k, r in rows.items() if "ensemble" in r), None)
    if first:
        lines.append(f"| ANI-1x ensemble (8) | published | {cell([first['ensemble']['s66x8']['force_mae']])} | "
                     f"{cell([first['ensemble']['s66x8']['relative_energy_mae']])} | {cell([first['ensemble']['ani1x_sample']['force_mae']])} |")
        members = list(first["members"].values())
        lines.append(f"| its members, mean ± std | published | {cell([m['s66x8']['force_mae'] for m in members])} | "
                     f"{cell([m['s66x8']['relative_energy_mae'] for m in members])} | {cell([m['ani1x_sample']['force_mae'] for m in members])} |")
    for key, row in rows.items():
        if "students" not in row:
            continue
        s = list(row["students"].values())
        lines.append(f"| {row['backend']}{' (compact)' if row.get('options') else ''} student × {len(s)} | {key} ({row['conformations']} conf., {row['epochs']} epochs) | "
                     f"{cell([x['s66x8']['force_mae'] for x in s])} | {cell([x['s66x8']['relative_energy_mae'] for x in s])} | "
                     f"{cell([x['ani1x_sample']['force_mae'] for x in s])} |")
    md = [(k, r) for k, r in rows.items() if k.startswith("md ")]
    if md:
        lines += ["", "| MD (S66 dimers) | stable | mean time (ps) |", "|---|---|---|"]
        lines += [f"| {k[3:]} | {r['n_stable']}/{r['n_molecules']} | {r['mean_time_ps']:.3f} |" for k, r in md]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", nargs="+", default=["sample", "students", "compact", "embedded", "md"])
    parser.add_argument("--backends", nargs="+", default=["ani", "mace", "nequip"])
    parser.add_argument("--work", type=Path, default=ROOT / "runs/bench-s66")
    args = parser.parse_args()
    results = load()
    if "sample" in args.steps or "students" in args.steps:
        sample_step(args.work, results)
    for backend in args.backends if "students" in args.steps else []:
        if f"sampled-{backend}" not in results["rows"]:
            run_step(args.work, results, f"sampled-{backend}", backend, str(args.work / "sample/sampled.h5"), "reference")
    if "compact" in args.steps and "sampled-ani-compact" not in results["rows"]:  # a faster ANI student: half the AEV, smaller networks
        run_step(args.work, results, "sampled-ani-compact", "ani", str(args.work / "sample/sampled.h5"), "reference", COMPACT_ANI)
    if "embedded" in args.steps and "embedded-ani" not in results["rows"]:
        run_step(args.work, results, "embedded-ani", "ani", "embedded:ccsdt", "teachers")
    if "md" in args.steps:
        md_step(args.work, results, [b for b in args.backends if f"sampled-{b}" in results["rows"]])
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
