"""Build ekd's coupled-cluster reference set (``embedded:ccsdt``): the paper's situation in miniature.

How it is made
--------------
1. The geometries are the embedded set's own (``embedded:molecules``: 1,600 normal-mode
   conformations of ten small molecules, wB97X/6-31G(d)), so that every conformation has both a
   DFT and a coupled-cluster label.
2. They are split as a run splits the embedded set at its defaults (random, seed 0, 10 %
   validation, 10 % test). The 1,440 training and validation conformations get CCSD(T)/cc-pVDZ
   energies (frozen core) only: ``ekd/datasets/ekd_ref_ccsdt_ccpvdz.h5``.
3. The 160 test conformations get CCSD(T)/cc-pVDZ energies and analytic forces (PySCF's
   ``grad.ccsd_t``): ``ekd/datasets/ekd_ref_ccsdt_ccpvdz_held_out.h5``, a file that training
   never reads. The training file names it (``metadata["held_out"]``), so ``ekd run --data
   embedded:ccsdt`` scores every model on coupled-cluster forces.
4. Each conformation keeps its row in the embedded set (``metadata["embedded_rows"]``) and its
   CCSD T1 diagnostic; conformations with T1 above 0.02 (where CCSD(T) starts to be unreliable)
   are counted in the metadata and printed.

Everything goes through ekd's ``pyscf`` reference calculator (``ekd.reference``), resumably:
finished chunks are kept in ``WORK/energies`` and ``WORK/forces`` and skipped on restart; a
failed calculation is recorded and left out with a message naming it.

Usage::

    python scripts/make_cc_set.py --work build/ccsdt      # about an hour on 2 cores; resumable
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import ekd
from ekd.data.embedded import EMBEDDED
from ekd.reference import compute_reference
from ekd.runconfig import RunConfig

OPTIONS = {"method": "ccsd(t)", "basis": "cc-pvdz", "frozen_core": True}
T1_LIMIT = 0.02  # Lee & Taylor (1989): above it, single-reference CCSD(T) is suspect
OUT = Path(ekd.__file__).parent / "datasets"


def held_out_rows(data: ekd.Dataset) -> np.ndarray:
    """Rows of ``data`` in the test split a run at the defaults cuts (random, seed 0)."""
    section = RunConfig().data
    test = data.split(section.fractions, by=section.split, seed=section.seed).test
    wanted = set(test.conformation_keys())
    return np.array([i for i, key in enumerate(data.conformation_keys()) if key in wanted])


def labelled(data: ekd.Dataset, rows: np.ndarray, work: Path, forces: bool, jobs: int) -> tuple[ekd.Dataset, np.ndarray]:
    """CCSD(T) energies (and forces) of ``data``'s ``rows``, with the rows that succeeded."""
    part = data.subset(rows).with_metadata(source="embedded:molecules")
    result = compute_reference(part, "pyscf", OPTIONS, work, forces=forces, jobs=jobs, chunk=2 if forces else 8)
    failed = {f["index"] for f in result.metadata["reference"]["failures"]}
    return result, np.array([r for k, r in enumerate(rows) if k not in failed])


def with_record(frames: ekd.Dataset, rows: np.ndarray, **extra) -> ekd.Dataset:
    """``frames`` with the metadata users and the report read: rows, T1 diagnostics, cost."""
    record = frames.metadata["reference"]
    t1 = np.array([d["t1_diagnostic"] for d in record["diagnostics"]])
    return frames.with_metadata(
        source="scripts/make_cc_set.py",
        embedded_rows=rows.tolist(),
        t1_diagnostic=t1.round(5).tolist(),
        t1_above_limit=int((t1 > T1_LIMIT).sum()),
        t1_limit=T1_LIMIT,
        cpu_hours=round(record["cpu_seconds"] / 3600, 2),
        program="pyscf " + __import__("pyscf").__version__,
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/ccsdt"))
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the two files (default: ekd's datasets)")
    parser.add_argument("--first", type=int, help="only the first N conformations of each part (a quick check of the script)")
    args = parser.parse_args()
    started = time.time()
    data = ekd.Dataset.read(EMBEDDED["molecules"])
    test = held_out_rows(data)
    train = np.setdiff1d(np.arange(len(data)), test)
    if args.first:
        test, train = test[: args.first], train[: args.first]
    print(f"{len(train)} conformations get CCSD(T) energies, {len(test)} held-out ones energies and forces", flush=True)
    held_out, test_rows = labelled(data, test, args.work / "forces", True, args.jobs)
    energies, train_rows = labelled(data, train, args.work / "energies", False, args.jobs)
    held_out_name = "ekd_ref_ccsdt_ccpvdz_held_out.h5"
    held_out = with_record(held_out, test_rows)
    energies = with_record(energies, train_rows, held_out=held_out_name)
    args.out.mkdir(parents=True, exist_ok=True)
    held_out.write(args.out / held_out_name)
    energies.write(args.out / "ekd_ref_ccsdt_ccpvdz.h5")
    for name, frames in (("training", energies), ("held-out", held_out)):
        meta = frames.metadata
        print(f"{name}: {len(frames)} conformations, {len(meta['reference']['failures'])} failed, {meta['t1_above_limit']} with T1 > {T1_LIMIT}, "
              f"{meta['cpu_hours']} CPU-hours")
    print(f"done in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
