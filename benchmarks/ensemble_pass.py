"""Labelling throughput of a published ensemble: ekd one pass per member, ekd's shared pass,
and torchani's own ensemble.

The published ANI-1x (8 members, ``../shared/models/ani-1x_8x``) predicts energies and forces of
COMP6 S66x8 (528 conformations, 6-34 atoms) in float64 on the CPU, batches of 256, three ways:

- **ekd, one pass per member**: ``Model.predict`` of each member (what an ensemble of members
  that share nothing runs);
- **ekd, shared pass**: ``Ensemble.predict``, which computes the AEVs once per batch for members
  that share them (``ekd.backend.SharedFeatures``) and takes each member's forces by a backward
  pass through the AEVs: every member's forces, as labelling needs for the spread;
- **torchani's own ensemble** (``torchani.neurochem`` → ``ANI`` with an ``Ensemble`` of the 8
  networks, padded batches): the members' mean energy and the forces of that mean only, one
  backward pass; what a torchani user runs, though it gives no per-member forces.

Each is timed after one warm-up pass (median of ``--repeats``). Prints a table and writes
``benchmarks/results/ensemble_pass.json``.

    .venv/bin/python benchmarks/ensemble_pass.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared/models/ani-1x_8x"
DATA = ROOT.parent / "shared/data/comp6/s66x8_wb97x6-31gd.h5"


def torchani_ensemble(frames, batch_size: int) -> np.ndarray:
    """Forces (A, 3) eV/Å of the mean of torchani's own ANI-1x ensemble, padded batches."""
    from torchani.arch import ANI
    from torchani.neurochem import NeurochemInfo, modules_from_info
    from torchani.units import HARTREE_TO_EV

    info = NeurochemInfo(MODELS / "sae_linfit.dat", MODELS / "rHCNO-5.2R_16-3.5A_a4-8.params", MODELS / "train", 8)
    aev, networks, self_energies, symbols = modules_from_info(info)
    model = ANI(symbols, aev, networks, self_energies, periodic_table_index=True).double()
    forces = []
    for part in frames.batches(batch_size):
        width = int(part.sizes.max())
        species = torch.full((len(part), width), -1, dtype=torch.long)
        coordinates = torch.zeros((len(part), width, 3), dtype=torch.float64)
        for k in range(len(part)):
            rows = part.atoms_of(k)
            species[k, : rows.stop - rows.start] = torch.from_numpy(part.numbers[rows])
            coordinates[k, : rows.stop - rows.start] = torch.from_numpy(part.positions[rows])
        coordinates.requires_grad_(True)
        energy = model((species, coordinates)).energies
        (gradient,) = torch.autograd.grad(energy.sum(), coordinates)
        forces.extend(-gradient[k, : n].numpy() * HARTREE_TO_EV for k, n in enumerate(part.sizes))
    return np.concatenate(forces)


def timed(function, repeats: int) -> tuple[float, object]:
    function()  # warm-up
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), result


def main() -> None:
    import ekd
    from ekd.ensemble import load_pretrained

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ensemble_pass.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = ekd.Dataset.read(DATA)
    ensemble = ekd.Ensemble(load_pretrained("ani", MODELS, dtype=torch.float64, device="cpu"))
    rows = {}
    seconds, alone = timed(lambda: [m.predict(frames, batch_size=args.batch_size) for m in ensemble.models], args.repeats)
    rows["ekd, one pass per member"] = seconds
    seconds, shared = timed(lambda: ensemble.predict(frames, batch_size=args.batch_size), args.repeats)
    rows["ekd, shared pass"] = seconds
    seconds, own = timed(lambda: torchani_ensemble(frames, args.batch_size), args.repeats)
    rows["torchani's own ensemble (mean forces only)"] = seconds
    agreement = {
        "shared vs one pass per member, member forces (eV/Å, max)": float(np.abs(shared.member_forces - np.stack([p.forces for p in alone])).max()),
        "shared mean vs torchani's mean forces (eV/Å, max)": float(np.abs(shared.forces - own).max()),
    }
    result = {"conformations": len(frames), "members": len(ensemble), "threads": args.threads, "dtype": "float64",
              "seconds": rows, "conformations_per_second": {k: len(frames) / v for k, v in rows.items()}, "agreement": agreement,
              "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("| way | seconds | conformations/s |\n|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.2f} | {len(frames) / value:.0f} |")
    for name, value in agreement.items():
        print(f"{name}: {value:.2e}")


if __name__ == "__main__":
    main()
