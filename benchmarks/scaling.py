"""Data-parallel training and sharded labelling on 1 and 2 ranks (gloo, CPU).

Per backend (ANI, MACE and NequIP at their CPU sizes): seconds per epoch (median after the
first) of one training on ``--conformations`` conformations of the embedded set (energies and
forces, float32, global batch 32) on 1 rank (every core) and on 2 ranks (one core each), each a
fresh process, and the share of the training spent in collectives (the summed losses and
gradients). Then labelling the whole embedded set with four ANI teachers on 1 and 2 ranks:
conformations per second, and the time to merge the shards. Prints a table and writes
``benchmarks/results/scaling.json``. Run it on a quiet machine.

Memory against dataset size, the streaming reader against the in-memory one: ``benchmarks/memory.py``.

    .venv/bin/python benchmarks/scaling.py [--conformations 256] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("ani", "mace", "nequip")


def timed_training(backend: str, conformations: int, epochs: int, out: str, report: str) -> None:
    """One training (on this process's ranks), timing the collectives; rank 0 writes ``report``."""
    import torch

    import ekd
    from ekd import distributed
    from ekd.runconfig import RunConfig
    from ekd.train import TrainConfig, train

    spent = [0.0]

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started
        return wrapper

    distributed.all_sum, distributed.sync_gradients = timed(distributed.all_sum), timed(distributed.sync_gradients)
    rows = np.arange(conformations) * (1600 // conformations)  # every molecule of the embedded set
    data = ekd.Dataset.embedded(with_forces=True).subset(rows)
    parts = data.subset(np.flatnonzero(np.arange(conformations) % 8)), data.subset(np.arange(0, conformations, 8))  # 7/8 training, 1/8 validation
    config = TrainConfig(epochs=epochs, batch_size=32, force_weight=0.1, dtype="float32", device="cpu", early_stopping=100)
    result = train(backend, *parts, out, config, RunConfig().sized_options(backend, {}), show_progress=False)
    if distributed.is_main():
        seconds = np.loadtxt(Path(out) / "history.csv", delimiter=",", skiprows=1, ndmin=2)[:, 4]
        Path(report).write_text(json.dumps({"seconds_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),  # after the first (warm-up)
                                            "communication_share": spent[0] / result.seconds, "threads": torch.get_num_threads(), "ranks": distributed.world()}))


def timed_labelling(teachers: str, shards: str, report: str) -> None:
    """Label the embedded set with the ensemble in ``teachers``; rank 0 writes ``report``."""
    import ekd
    from ekd import distributed
    from ekd.pipeline import label

    data = ekd.Dataset.embedded()
    ensemble = ekd.load(teachers)
    started = time.perf_counter()
    label(data, ensemble, show_progress=False, shards=Path(shards))
    seconds = time.perf_counter() - started
    if distributed.is_main():
        Path(report).write_text(json.dumps({"seconds": seconds, "conformations": len(data), "ranks": distributed.world()}))


def merge_seconds(shards: Path, ranks: int) -> float:
    started = time.perf_counter()
    parts = [np.load(shards / f"shard-{r}-of-{ranks}.npz") for r in range(ranks)]
    np.concatenate([p["forces"] for p in parts], axis=1), np.concatenate([p["energies"] for p in parts], axis=1)
    return time.perf_counter() - started


def main() -> None:
    from ekd.testing import on_ranks

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conformations", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--teachers", default=str(ROOT / "build/pair-matrix/ani-ani/teachers"), help="a trained ensemble (a folder of members)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scaling.json")
    args = parser.parse_args()
    results = {"training": {}, "labelling": {}, "cpu_count": os.cpu_count(), "conformations": args.conformations, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for backend in BACKENDS:
            for ranks in (1, 2):
                out, report = work / f"{backend}-{ranks}", work / f"{backend}-{ranks}.json"  # a fresh process per rank, 1 or 2
                on_ranks(ranks, "scaling:timed_training", backend, args.conformations, args.epochs, str(out), str(report))
                results["training"][f"{backend}, {ranks} rank(s)"] = json.loads(report.read_text())
        if Path(args.teachers).is_dir():
            for ranks in (1, 2):
                shards, report = work / f"label-{ranks}", work / f"label-{ranks}.json"
                on_ranks(ranks, "scaling:timed_labelling", args.teachers, str(shards), str(report))
                if ranks > 1:
                    results["labelling"]["merge_seconds"] = merge_seconds(shards, ranks)
                row = json.loads(report.read_text())
                results["labelling"][f"{ranks} rank(s)"] = {**row, "conformations_per_second": row["conformations"] / row["seconds"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"{'training':<22}{'s/epoch':>9}{'in collectives':>16}")
    for name, row in results["training"].items():
        print(f"{name:<22}{row['seconds_per_epoch']:>9.2f}{100 * row['communication_share']:>15.0f}%")
    for name, row in results["labelling"].items():
        if isinstance(row, dict):
            print(f"labelling, {name}: {row['conformations_per_second']:.0f} conformations/s")
    if "merge_seconds" in results["labelling"]:
        print(f"merging 2 shards: {results['labelling']['merge_seconds']:.3f} s")


if __name__ == "__main__":
    main()
