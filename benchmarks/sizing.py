"""Does the CPU sizing rule hold beyond the embedded set? Epoch times per backend, size and dataset.

For each dataset (the embedded set, 3-8 atoms; MD17 ethanol, 9 atoms; the ANI-1x sample, 20-30
atoms), each backend (ani, mace, nequip) and each size (``small``: what ``size: auto`` picks on a
CPU; ``upstream``: the library's defaults), trains a model for a few epochs on energies only (a
teacher or baseline) and on energies and forces (a student) and reports the median seconds per
epoch, per 1,000 conformations and per 1,000 neighbour pairs, with the mean number of neighbours
within the model's cutoff. One training at a time, one thread (what each of ``--jobs`` trainings
gets on a 2-core machine). Prints a table and writes benchmarks/results/sizing.json.

    .venv/bin/python benchmarks/sizing.py [--epochs 3] [--conformations 1000] [--backends ani mace nequip]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

import ekd
from ekd.backend import Sized
from ekd.graph import neighbour_edges
from ekd.plugins import get_backend
from ekd.provenance import package_versions
from ekd.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"
DATASETS = {
    "embedded (3-8 atoms)": lambda: ekd.Dataset.embedded(with_forces=True),
    "MD17 ethanol (9 atoms)": lambda: ekd.Dataset.read(DATA / "md17/ethanol_md17_2000.xyz", energy_unit="kcal/mol"),
    "ANI-1x sample (20-30 atoms)": lambda: ekd.Dataset.read(DATA / "ani1x/ani1x_sample.h5"),
}


def neighbours_per_atom(data: ekd.Dataset, cutoff: float) -> float:
    """Mean number of atoms within ``cutoff`` (Å) of an atom."""
    return neighbour_edges(data, cutoff)[0].shape[1] / data.n_atoms


def seconds_per_epoch(backend: str, options: dict, data: ekd.Dataset, epochs: int, forces: bool) -> float:
    """Median wall seconds of epochs 2.. (the first builds the batch cache), training and validation."""
    parts = data.split((0.9, 0.1, 0.0), seed=0)
    train_part, val_part = (parts.train, parts.validation) if forces else (parts.train.without_forces(), parts.validation.without_forces())
    config = TrainConfig(epochs=epochs, force_weight=0.1 if forces else 0.0, early_stopping=epochs + 1, device="cpu")
    with tempfile.TemporaryDirectory() as work:
        train(backend, train_part, val_part, work, config, options, show_progress=False)
        with open(Path(work) / "history.csv") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    return statistics.median(seconds[1:] or seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--conformations", type=int, default=1000, help="at most this many per dataset (random, seed 0)")
    parser.add_argument("--backends", nargs="*", default=["ani", "mace", "nequip"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/sizing.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'dataset':<28}{'backend':<8}{'size':<10}{'neigh.':>7}{'E s/ep':>8}{'E+F s/ep':>9}{'E+F s/1k conf':>14}{'E+F ms/1k pairs':>16}")
    for dataset, read in DATASETS.items():
        data = read()
        if len(data) > args.conformations:
            data = data.subset(np.random.default_rng(0).choice(len(data), args.conformations, replace=False))
        for backend in args.backends:
            found = get_backend(backend)
            for size in ("small", "upstream") if isinstance(found, Sized) else ("its one",):
                config = ekd.RunConfig(size="upstream" if size == "its one" else size)
                options = config.sized_options(backend, {})
                cutoff = found.cutoff(found.Options(**options))
                neighbours = neighbours_per_atom(data, cutoff)
                energy_only = seconds_per_epoch(backend, options, data, args.epochs, forces=False)
                with_forces = seconds_per_epoch(backend, options, data, args.epochs, forces=True)
                n_train = round(0.9 * len(data))
                row = {"dataset": dataset, "backend": backend, "size": size, "options": options, "conformations": len(data),
                       "atoms_per_conformation": data.n_atoms / len(data), "cutoff": cutoff, "neighbours_per_atom": neighbours,
                       "energy_only_s_per_epoch": energy_only, "energy_forces_s_per_epoch": with_forces,
                       "energy_forces_s_per_1k_conformations": with_forces / n_train * 1000,
                       "energy_forces_ms_per_1k_pairs": with_forces / (neighbours * data.n_atoms * 0.9) * 1e6}
                rows.append(row)
                print(f"{dataset:<28}{backend:<8}{size:<10}{neighbours:7.1f}{energy_only:8.2f}{with_forces:9.2f}"
                      f"{row['energy_forces_s_per_1k_conformations']:14.2f}{row['energy_forces_ms_per_1k_pairs']:16.2f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "epochs": args.epochs, "threads": 1, "versions": package_versions()}, indent=2))


if __name__ == "__main__":
    main()
