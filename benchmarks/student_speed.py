"""Speed of distilled students against the published ANI-1x ensemble: the reason to distil.

For each student (``--students NAME=PATH``) and for the 8-member ANI-1x ensemble
(``../shared/models/ani-1x_8x``), on two systems, through an ASE calculator on the CPU with
``--threads`` torch threads:

- **calls/s**: ``atoms.rattle(1e-3, seed=k)`` then ``atoms.get_forces()`` (energy and forces; the
  rattle keeps the calculator from answering from its cache), ``--calls`` calls after ``--warmup``;
- **MD steps/s**: ASE Langevin (0.5 fs, 300 K, friction 0.01/fs, seeded), ``--md-steps`` steps
  after ``--warmup`` steps.

Each is timed ``--repeats`` times and the best is reported (a shared machine's timings of one
run vary by ±20 %; every repeat is in the JSON).

Models: each student through :class:`ekd.calculator.EkdCalculator` and, for an ANI student, also
as a user runs it in MD (``ekd export``: a torchani model with its own ``.ase()``); the ensemble as ekd runs it
(``ani-pretrained:``, float64, every member's forces for the spread) and as torchani runs it
(``torchani.neurochem.modules_from_info`` → one ``ANI`` whose ``Ensemble`` averages the 8 members
in one forward pass, float32, ``ANI.ase()``: the mean's forces only). Systems: the largest S66x8
dimer (``--dimer`` picks another) and the first 20-30-atom molecule of the ANI-1x sample.
``agreement`` checks torchani's model, in float32 and float64, against ekd's ensemble on each
system (eV, eV/Å; float32 rounds absolute energies of ~10⁴ eV to ~1e-3 eV). The speed-up is MD
steps/s over the torchani ensemble's on the same system. Prints a Markdown table and writes
``benchmarks/results/student_speed.json``.

    .venv/bin/python benchmarks/student_speed.py --students ani=runs/x/students/seed-0 mace=... \\
        [--threads 2] [--calls 200] [--md-steps 500] [--warmup 20] [--dimer s66x8/mol23]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models/ani-1x_8x"
S66X8 = SHARED / "data/comp6/s66x8_wb97x6-31gd.h5"
ANI1X = SHARED / "data/ani1x/ani1x_sample.h5"
MD = {"timestep_fs": 0.5, "temperature_K": 300.0, "friction_per_fs": 0.01, "seed": 0}
EKD_ENSEMBLE, TORCHANI_ENSEMBLE = "ANI-1x ensemble (ekd)", "ANI-1x ensemble (torchani)"


def systems(dimer: str | None) -> dict[str, dict]:
    """The S66x8 dimer (the largest first conformation, or ``dimer``) and a 20-30-atom ANI-1x molecule."""
    import ekd

    s66 = ekd.Dataset.read(S66X8)
    firsts = [int(np.flatnonzero(s66.molecule == name)[0]) for name in s66.molecules]
    pick = firsts[int(np.argmax(s66.sizes[firsts]))] if dimer is None else firsts[s66.molecules.index(dimer)]
    ani = ekd.Dataset.read(ANI1X)
    other = int(np.flatnonzero((ani.sizes >= 20) & (ani.sizes <= 30))[0])
    found = {}
    for key, path, frames, index in (("s66x8 dimer", S66X8, s66, pick), ("ani-1x molecule", ANI1X, ani, other)):
        rows = frames.atoms_of(index)
        atoms = Atoms(numbers=frames.numbers[rows], positions=frames.positions[rows])
        found[key] = {"name": str(frames.molecule[index]), "conformation": index, "n_atoms": len(atoms), "formula": atoms.get_chemical_formula(),
                      "file": str(path.relative_to(SHARED.parent)), "atoms": atoms}
    return found


def torchani_ensemble(dtype: torch.dtype = torch.float32):
    """torchani's own ANI-1x: one ``ANI`` with the 8 NeuroChem members in a ``torchani.nn.Ensemble``."""
    from torchani.arch import ANI
    from torchani.neurochem import NeurochemInfo, modules_from_info

    const, sae, prefix, size = (MODELS.parent / f"{MODELS.name}.info").read_text().split()  # paths relative to the .info file
    info = NeurochemInfo(MODELS.parent / sae, MODELS.parent / const, MODELS.parent / prefix, int(size))
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # torchani makes the self energies in the default dtype: float64 keeps the file's digits
    try:
        aev, networks, self_energies, symbols = modules_from_info(info)
    finally:
        torch.set_default_dtype(default)
    model = ANI(symbols, aev, networks, self_energies, periodic_table_index=True).to(dtype)
    return model.requires_grad_(False).eval()


def exported_torchani(model):
    """The torchani model ``ekd export`` writes for an ANI student, loaded back."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.pt"
        model.export(path)
        return torch.load(path, weights_only=False).requires_grad_(False).eval()


def calls_per_second(atoms: Atoms, calculator, calls: int, warmup: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calculator
    for k in range(warmup + calls):
        if k == warmup:
            started = time.perf_counter()
        atoms.rattle(1e-3, seed=k)
        atoms.get_forces()
    return calls / (time.perf_counter() - started)


def md_steps_per_second(atoms: Atoms, calculator, steps: int, warmup: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(MD["seed"])
    thermalize_momenta(atoms, MD["temperature_K"], rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())  # as ekd.evaluate.md runs it
    dynamics = Langevin(atoms, MD["timestep_fs"] * units.fs, temperature_K=MD["temperature_K"], friction=MD["friction_per_fs"] / units.fs,
                        fixcm=False, rng=rng)
    dynamics.run(warmup)
    started = time.perf_counter()
    dynamics.run(steps)
    return steps / (time.perf_counter() - started)


def agreement(atoms: Atoms, ekd_calculator, torchani_models: dict) -> dict:
    """|ΔE| (eV) and max |ΔF| (eV/Å) of torchani's ensemble (each dtype) against ekd's, one conformation."""
    reference = atoms.copy()
    reference.calc = ekd_calculator
    energy, forces = reference.get_potential_energy(), reference.get_forces()
    found = {}
    for dtype, model in torchani_models.items():
        other = atoms.copy()
        other.calc = model.ase()
        found[f"torchani {dtype} - ekd: energy (eV)"] = abs(other.get_potential_energy() - energy)
        found[f"torchani {dtype} - ekd: forces (eV/Å, max)"] = float(np.abs(other.get_forces() - forces).max())
    return found


def table(results: list[dict], systems: dict) -> list[str]:
    """One row per model; per system calls/s, MD steps/s and the MD speed-up over torchani's ensemble."""
    header = "| model | " + " | ".join(f"{s['name']} ({s['n_atoms']} atoms): calls/s | MD steps/s | × torchani" for s in systems.values()) + " |"
    lines = [header, "|---" * (1 + 3 * len(systems)) + "|"]
    for model in dict.fromkeys(row["model"] for row in results):
        cells = []
        for key in systems:
            row = next(r for r in results if r["model"] == model and r["system"] == key)
            cells.append(f"{row['calls_per_s']:.1f} | {row['md_steps_per_s']:.1f} | {row['md_speedup_over_torchani']:.2f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    from ekd._io import atomic_path
    from ekd.calculator import EkdCalculator
    from ekd.ensemble import load_predictor
    from ekd.provenance import package_versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", nargs="*", default=[], metavar="NAME=PATH", help="a model.pt or a folder holding one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--md-steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls and MD steps before each timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each; the best is reported (the others are kept in the JSON)")
    parser.add_argument("--dimer", help="S66x8 molecule id (default: the largest dimer)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/student_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    students = dict(spec.split("=", 1) for spec in args.students)
    ensemble = load_predictor(f"ani-pretrained:{MODELS}", device="cpu")
    torchani_models = {"float32": torchani_ensemble(torch.float32), "float64": torchani_ensemble(torch.float64)}
    predictors = {name: load_predictor(path, device="cpu") for name, path in students.items()}
    models = {name: {"path": path, "backend": predictors[name].backend.name, "dtype": str(predictors[name].dtype).removeprefix("torch.")}
              for name, path in students.items()}
    models[EKD_ENSEMBLE] = {"spec": f"ani-pretrained:{MODELS}", "members": len(ensemble), "dtype": str(ensemble.models[0].dtype).removeprefix("torch."),
                            "how": "ekd.Ensemble through EkdCalculator: every member's energy and forces (spread included)"}
    models[TORCHANI_ENSEMBLE] = {"api": "torchani.neurochem.NeurochemInfo + modules_from_info -> torchani.arch.ANI (nn.Ensemble of 8), ANI.ase()",
                                 "dtype": "float32", "how": "one forward pass averages the members; forces of the mean only"}
    calculators = {name: (lambda p=p: EkdCalculator(p)) for name, p in predictors.items()}
    for name, predictor in predictors.items():  # an ANI student as a user runs it in MD: exported, torchani's own calculator
        if predictor.backend.name == "ani":
            exported = exported_torchani(predictor)
            models[f"{name} (exported, torchani)"] = {**models[name], "how": "ekd export → torchani model, its own ASE calculator (.ase())"}
            calculators[f"{name} (exported, torchani)"] = lambda m=exported: m.ase()
    calculators[EKD_ENSEMBLE] = lambda: EkdCalculator(ensemble)
    calculators[TORCHANI_ENSEMBLE] = lambda: torchani_models["float32"].ase()

    found, results, agreed = systems(args.dimer), [], {}
    for key, system in found.items():
        atoms = system["atoms"]
        agreed[key] = agreement(atoms, EkdCalculator(ensemble), torchani_models)
        rows = []
        for name, calculator in calculators.items():
            calls = [calls_per_second(atoms, calculator(), args.calls, args.warmup) for _ in range(args.repeats)]
            steps = [md_steps_per_second(atoms, calculator(), args.md_steps, args.warmup) for _ in range(args.repeats)]
            rows.append({"model": name, "system": key, "n_atoms": len(atoms), "calls_per_s": max(calls), "md_steps_per_s": max(steps),
                         "calls_per_s_repeats": calls, "md_steps_per_s_repeats": steps})
            print(f"{key}: {name}: {rows[-1]['calls_per_s']:.1f} calls/s, {rows[-1]['md_steps_per_s']:.1f} MD steps/s", flush=True)
        baseline = next(r["md_steps_per_s"] for r in rows if r["model"] == TORCHANI_ENSEMBLE)
        results += [{**row, "md_speedup_over_torchani": row["md_steps_per_s"] / baseline} for row in rows]

    report = {
        "what": __doc__.split("\n")[0],
        "settings": {"threads": args.threads, "repeats": args.repeats, "calls": args.calls, "md_steps": args.md_steps, "warmup": args.warmup, "rattle_A": 1e-3, "md": MD},
        "systems": {key: {k: v for k, v in system.items() if k != "atoms"} for key, system in found.items()},
        "models": models,
        "results": results,
        "agreement": agreed,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version(), "versions": package_versions()},
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print("\n".join(table(results, found)))
    for key, values in agreed.items():
        print(f"{key}: " + ", ".join(f"{k} {v:.1e}" for k, v in values.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
