"""Memory of one training against dataset size: the streaming reader against the in-memory one.

The datasets are the real ANI-1 file (``../shared/data/ani1/ani_gdb_s01.h5``: 10,800 conformations
of CH4, NH3 and H2O, wB97X/6-31G(d) energies) tiled to ``--sizes`` conformations, each copy's
positions perturbed by 0.01 Å (normal, seeded), written once with ekd's block writer into
``--work`` (an ekd HDF5 file, what ``ekd data convert`` makes). For each size and reader a fresh
process runs what ``ekd train --backend ani --data FILE --epochs 1 [--stream]`` runs (energies only,
float32, batches of 256, the default 80/10/10 split, the held-out tenth scored at the end) with the same cache
bound for converted batches (``--cache-mb``), and reports its peak resident memory (VmHWM) above
its resident memory after the imports (torch with its optimizer machinery, ekd and the ANI backend
with torchani loaded). Prints a table and
writes ``benchmarks/results/memory.json``.

    .venv/bin/python benchmarks/memory.py [--sizes 10000 100000 300000] [--cache-mb 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared/data/ani1/ani_gdb_s01.h5"


def tiled(size: int, work: Path) -> Path:
    """``size`` conformations of the ANI-1 file, tiled and perturbed, written a copy at a time."""
    import h5py

    import ekd
    from ekd._io import atomic_path
    from ekd.data.hdf5 import FramesWriter

    path = work / f"ani1-tiled-{size}.h5"
    if path.is_file():
        return path
    source = ekd.Dataset.read(SOURCE)
    rng = np.random.default_rng(size)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = "ekd-frames"
        writer = FramesWriter(handle)
        for start in range(0, size, len(source)):
            block = source.subset(np.arange(min(len(source), size - start)))
            writer.append(dataclasses.replace(block, positions=block.positions + rng.normal(0, 0.01, block.positions.shape)))
        writer.finish({"source": f"{SOURCE.name} tiled to {size} conformations, positions perturbed by 0.01 Å", "level_of_theory": "wB97X/6-31G(d)"})
    return path


def _resident(field: str) -> float:
    """MiB of ``field`` (VmRSS, VmHWM) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(path: str, stream: bool, cache_mb: float, out: str) -> None:
    """In a fresh process: one epoch of ``ekd train`` on ``path``; print the memory as JSON."""
    import torch

    from ekd.model import Model
    from ekd.pipeline import train_model

    Model.build("ani", [1, 6, 7, 8], device="cpu")  # the backend imports torchani (and its own imports) on first use
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # torch loads its optimizer machinery (about 60 MiB) on first use
    baseline = _resident("VmRSS")
    started = time.perf_counter()
    summary = train_model("ani", out, path, stream=stream, show_progress=False, config={"train": {"batch_cache_mb": cache_mb, "batch_size": 256}}, epochs=1)
    print(json.dumps({"baseline_mib": baseline, "peak_mib": _resident("VmHWM"), "above_baseline_mib": _resident("VmHWM") - baseline,
                      "seconds": time.perf_counter() - started, "test_energy_mae": summary.test.energy_mae}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000, 300_000])
    parser.add_argument("--cache-mb", type=float, default=64)
    parser.add_argument("--work", type=Path, default=ROOT / "build/memory")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        path = tiled(size, args.work)
        for stream in (False, True):
            out = args.work / f"run-{size}-{'stream' if stream else 'memory'}"
            code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import memory; memory.measure({str(path)!r}, {stream}, {args.cache_mb}, {str(out)!r})"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            row = {"conformations": size, "reader": "streaming" if stream else "in-memory", "file_mib": path.stat().st_size / 2**20,
                   **json.loads(result.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{size:>8} {row['reader']:<10} {row['above_baseline_mib']:8.1f} MiB above the baseline ({row['baseline_mib']:.0f} MiB), "
                  f"{row['seconds']:.0f} s", flush=True)
    ratios = {}
    for size in args.sizes:
        memory, streaming = (next(r for r in rows if r["conformations"] == size and r["reader"] == reader) for reader in ("in-memory", "streaming"))
        ratios[size] = streaming["above_baseline_mib"] / memory["above_baseline_mib"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "streaming_over_in_memory": ratios, "cache_mb": args.cache_mb, "cpu_count": os.cpu_count()}, indent=2))
    print("\n| conformations | file (MiB) | in-memory reader (MiB above baseline) | streaming reader | ratio |\n|---|---|---|---|---|")
    for size in args.sizes:
        memory, streaming = (next(r for r in rows if r["conformations"] == size and r["reader"] == reader) for reader in ("in-memory", "streaming"))
        print(f"| {size:,} | {memory['file_mib']:.0f} | {memory['above_baseline_mib']:.0f} | {streaming['above_baseline_mib']:.0f} | {ratios[size]:.2f} |")


if __name__ == "__main__":
    main()
