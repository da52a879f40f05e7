"""The CUDA path, checked against the CPU: every installed backend at its upstream size in
float64 gives the same energies, forces and (periodic) stresses on CUDA as on the CPU (≤ 1e-6
relative), forces that are −dE/dx on CUDA (finite differences), batched = one at a time; then a
2-epoch `ekd run` per backend (teachers and student of that backend, --size upstream) on CUDA.

    python benchmarks/gpu_check.py [--backends ani mace nequip hippynn] [--device cuda]

Prints a table and writes benchmarks/results/gpu_check.json (one row per backend and check).
Without a CUDA device it says so and exits 1; ``--device cpu`` runs the same checks CPU against
CPU (the script's own plumbing, nothing about CUDA).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ekd
from ekd._io import atomic_path
from ekd.backend import Statistics
from ekd.data import Dataset
from ekd.model import Model
from ekd.plugins import backends, get_backend
from ekd.provenance import package_versions
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules, periodic_cells, test_molecules

RESULTS = Path(__file__).parent / "results" / "gpu_check.json"
RELATIVE = 1e-6


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(|b|, 1e-12), elementwise over finite entries."""
    finite = np.isfinite(b)
    return float(np.max(np.abs(a[finite] - b[finite])) / max(np.max(np.abs(b[finite])), 1e-12)) if finite.any() else 0.0


def numeric_forces(model: Model, frames: Dataset, step: float = 1e-4) -> np.ndarray:
    """−dE/dx by central differences (eV/Å), one coordinate at a time."""
    forces = np.zeros_like(frames.positions)
    for index in np.ndindex(*frames.positions.shape):
        energies = []
        for sign in (1, -1):
            moved = frames.positions.copy()
            moved[index] += sign * step
            energies.append(model.predict(dataclasses.replace(frames, positions=moved), forces=False).energy.sum())
        forces[index] = -(energies[0] - energies[1]) / (2 * step)
    return forces


def model_checks(backend: str, device: str, work: Path) -> list[dict]:
    """CPU against ``device`` for one backend at its upstream size, float64."""
    found = get_backend(backend)
    options = found.Options().model_dump()  # the library's own sizes (what --size upstream uses)
    species = labelled_molecules(2).elements
    statistics = Statistics.of(labelled_molecules(2), species, found.cutoff(found.Options(**options)))
    cpu = Model.build(found, species, statistics, options, seed=0, dtype=torch.float64, device="cpu")
    cpu.save(work / f"{backend}.pt")
    there = Model.load(work / f"{backend}.pt", device=device)
    frames, rows = test_molecules(), []
    a, b = there.predict(frames), cpu.predict(frames)
    rows.append({"check": "molecules: energy", "relative": relative(a.energy, b.energy)})
    rows.append({"check": "molecules: forces", "relative": relative(a.forces, b.forces)})
    one = frames.subset([4])
    rows.append({"check": f"forces = -dE/dx on {device}", "relative": relative(there.predict(one).forces, numeric_forces(there, one)), "tolerance": 1e-4})
    alone = np.concatenate([there.predict(frames.subset([k])).forces for k in range(len(frames))])
    rows.append({"check": f"batched = one at a time on {device}", "relative": relative(a.forces, alone)})
    if getattr(found, "periodic", False):
        cells = periodic_cells()
        a, b = there.predict(cells, stress=True), cpu.predict(cells, stress=True)
        rows += [{"check": f"periodic: {name}", "relative": relative(getattr(a, name), getattr(b, name))} for name in ("energy", "forces", "stress")]
    for row in rows:
        row["ok"] = row["relative"] <= row.get("tolerance", RELATIVE)
    return rows


def run_check(backend: str, device: str, work: Path) -> dict:
    """A 2-epoch ``ekd run`` of ``backend`` teaching ``backend`` at --size upstream on ``device``."""
    config = RunConfig.load(None, {"teachers.spec": f"{backend}:2", "student.backend": backend, "student.seeds": 2, "student.baseline": True,
                                   "size": "upstream", "epochs": 2, "jobs": 1, "train": {"device": device}})
    data = Dataset.embedded(with_forces=True).subset(range(0, 1600, 8))  # 200 conformations of the embedded set (forces: held-out truth)
    started = time.perf_counter()
    report = ekd.distill(config, data=data, out=work / f"run-{backend}", show_progress=False).report
    headline = report.held_out
    devices = {str(m.module.parameters().__next__().device.type) for m in ekd.Run.open(work / f"run-{backend}", show_progress=False).students}
    return {"check": "2-epoch ekd run, --size upstream", "seconds": round(time.perf_counter() - started, 1), "trained_on": sorted(devices),
            "student_force_mae": headline.student_force_mae.mean, "ok": bool(np.isfinite(headline.student_force_mae.mean))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=sorted(b for b in backends() if b != "pairmlp"))
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here: nothing to check (the CUDA path stays untested); --device cpu checks the script itself", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            rows += [{"backend": backend, **row} for row in model_checks(backend, args.device, Path(folder))]
            rows.append({"backend": backend, **run_check(backend, args.device, Path(folder))})
    print(f"{'backend':<9}{'check':<42}{'relative':>12}  ok")
    for row in rows:
        print(f"{row['backend']:<9}{row['check']:<42}{row.get('relative', float('nan')):>12.2e}  {'yes' if row['ok'] else 'NO'}")
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.device.startswith("cuda"):  # (a CPU run checks the script, not the CUDA path: not a result)
        with atomic_path(RESULTS) as tmp:
            tmp.write_text(json.dumps({"what": __doc__.split("\n")[0], "device": device, "tolerance": RELATIVE, "versions": package_versions(),
                                       "rows": rows}, indent=2))
        print(f"wrote {RESULTS}")
    return 0 if all(row["ok"] for row in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
