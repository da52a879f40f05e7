"""Build ekd's embedded reference set: wB97X/6-31G(d) energies and forces with PySCF.

How it is made
--------------
1. Ten small H/C/N/O molecules start from ASE's G2 geometries and are relaxed at
   wB97X/6-31G(d) (ASE BFGS on PySCF gradients, fmax 0.01 eV/Å).
2. The analytic wB97X/6-31G(d) Hessian at the minimum gives the normal modes.
3. Conformations are drawn from the classical harmonic Boltzmann distribution of those modes at a
   temperature drawn uniformly from 300-1000 K per conformation (normal-mode sampling, as for
   ANI-1). Geometries where any atom pair comes closer than 0.7x its equilibrium distance are
   rejected and redrawn.
4. Each conformation gets a wB97X/6-31G(d) energy and analytic forces (the level of theory of
   ANI-1 and COMP6) from ekd's ``pyscf`` reference calculator (``ekd.reference``, the same one
   ``ekd reference`` runs), in eV and eV/Å.

Everything is seeded (one RNG stream per molecule), so a rerun draws the same geometries.
The computation is resumable: the reference calculator keeps finished chunks of conformations in
``WORK/<molecule>.reference/`` and skips them on restart.

Usage::

    python scripts/make_reference_set.py compute --work build/refset      # hours on 2 cores
    python scripts/make_reference_set.py assemble --work build/refset     # writes the package file
    python scripts/make_reference_set.py check-ani1 --n 24                # PySCF vs ANI-1 s01

Needs ``pip install pyscf`` (the ``reference`` extra of ekd).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.optimize import BFGS

MOLECULES = ["H2O", "NH3", "CH4", "HCN", "H2CO", "CH3OH", "C2H2", "C2H4", "HCOOH", "N2H4"]
CONFORMATIONS_PER_MOLECULE = 160
TEMPERATURE_RANGE_K = (300.0, 1000.0)
MIN_DISTANCE_RATIO = 0.7
SEED = 20250318
XC = "wb97x"
BASIS = "6-31g*"
LEVEL_OF_THEORY = "wB97X/6-31G(d)"
CHUNK = 10


#: the embedded set's level of theory as options of ekd's ``pyscf`` reference calculator
REFERENCE_OPTIONS = {"method": XC, "basis": BASIS, "conv_tol": 1e-10}


def relax(name: str) -> Atoms:
    from ekd.reference import reference_calculator

    atoms = molecule(name)
    atoms.calc = reference_calculator("pyscf", REFERENCE_OPTIONS)
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=100)
    atoms.calc = None
    return atoms


def normal_modes(atoms: Atoms):
    """Mass-weighted normal modes: eigenvalues (eV/Å²/amu) and eigenvectors, rigid modes dropped."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=list(zip(atoms.get_chemical_symbols(), atoms.positions.tolist())),
        basis=BASIS,
        unit="Angstrom",
        verbose=0,
    )
    mf = dft.RKS(mol)
    mf.xc = XC
    mf.conv_tol = 1e-11
    mf.kernel()
    n = len(atoms)
    hessian = mf.Hessian().kernel().transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    hessian *= units.Hartree / units.Bohr**2
    inv_sqrt_mass = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    mass_weighted = hessian * inv_sqrt_mass[:, None] * inv_sqrt_mass[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (mass_weighted + mass_weighted.T))
    n_rigid = 5 if _is_linear(atoms) else 6
    return eigenvalues[n_rigid:], eigenvectors[:, n_rigid:], inv_sqrt_mass


def _is_linear(atoms: Atoms) -> bool:
    centred = atoms.positions - atoms.positions.mean(0)
    return np.linalg.svd(centred, compute_uv=False)[1] < 1e-3


def sample_geometries(atoms: Atoms, modes, count: int, rng: np.random.Generator):
    """Harmonic Boltzmann samples around ``atoms``; returns positions (count, n, 3) and T (K)."""
    eigenvalues, eigenvectors, inv_sqrt_mass = modes
    if np.any(eigenvalues <= 0):
        raise RuntimeError("non-positive vibrational eigenvalue: geometry is not a minimum")
    reference = atoms.positions
    ref_dist = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    pairs = np.triu_indices(len(atoms), 1)
    geometries, temperatures = [], []
    while len(geometries) < count:
        temperature = rng.uniform(*TEMPERATURE_RANGE_K)
        amplitudes = rng.normal(size=len(eigenvalues)) * np.sqrt(units.kB * temperature / eigenvalues)
        displacement = (eigenvectors @ amplitudes) * inv_sqrt_mass
        positions = reference + displacement.reshape(-1, 3)
        dist = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        if np.all(dist[pairs] >= MIN_DISTANCE_RATIO * ref_dist[pairs]):
            geometries.append(positions)
            temperatures.append(temperature)
    return np.array(geometries), np.array(temperatures)


def _save_atomic(path: Path, **arrays) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _molecule_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "little")


def prepare(name: str, work: Path) -> dict:
    """Relaxed geometry, modes and the full list of sampled geometries of one molecule (cached)."""
    path = work / f"{name}.plan.npz"
    if path.exists():
        return dict(np.load(path))
    atoms = relax(name)
    modes = normal_modes(atoms)
    rng = np.random.default_rng(_molecule_seed(name))
    positions, temperatures = sample_geometries(atoms, modes, CONFORMATIONS_PER_MOLECULE, rng)
    plan = dict(
        numbers=atoms.numbers,
        equilibrium=atoms.positions,
        frequencies_cm=np.sqrt(modes[0]) * units.s / (2 * np.pi * units._c * 100),
        positions=positions,
        temperatures=temperatures,
    )
    _save_atomic(path, **plan)
    return plan


def planned(name: str, work: Path):
    """The planned conformations of one molecule as a Dataset (positions only)."""
    from ekd.data import Dataset

    plan = prepare(name, work)
    n = len(plan["positions"])
    return Dataset.from_arrays([plan["numbers"]] * n, list(plan["positions"]), [name] * n)


def compute(work: Path):
    """Reference energies and forces of every planned conformation, molecule by molecule, resumably."""
    from ekd.data import Dataset
    from ekd.reference import compute_reference

    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in MOLECULES:
        t0 = time.time()
        frames = planned(name, work)
        print(f"planned {name} in {time.time() - t0:.0f} s", flush=True)
        labelled = compute_reference(frames, "pyscf", REFERENCE_OPTIONS, work / f"{name}.reference", forces=True, jobs=1, chunk=CHUNK)
        failures = labelled.metadata["reference"]["failures"]
        if failures:
            sys.exit(f"{name}: {len(failures)} conformations failed, e.g. {failures[0]}")
        parts.append(labelled)
    return Dataset.concatenate(parts)


def assemble(work: Path, out: Path) -> None:
    """Write the finished conformations as an ekd HDF5 file (computes what is missing)."""
    from ekd.data import write_ekd_h5

    frames = compute(work)
    frames = frames.with_metadata(
        level_of_theory=LEVEL_OF_THEORY,
        source="scripts/make_reference_set.py",
        generator=json.dumps(
            dict(
                molecules=MOLECULES,
                per_molecule=CONFORMATIONS_PER_MOLECULE,
                temperature_range_K=TEMPERATURE_RANGE_K,
                min_distance_ratio=MIN_DISTANCE_RATIO,
                seed=SEED,
                program="pyscf " + __import__("pyscf").__version__,
                xc=XC,
                basis=BASIS,
            )
        ),
    )
    write_ekd_h5(frames, out)
    print(f"wrote {len(frames)} conformations to {out}")


def check_ani1(n: int, path: Path) -> None:
    """PySCF relative energies on ANI-1 s01 conformations against the stored ones (kcal/mol)."""
    from ekd.data import read
    from ekd.reference import compute_reference

    frames = read(path)
    rng = np.random.default_rng(SEED)
    rows = []
    for name in sorted(set(frames.molecule)):
        index = np.flatnonzero(np.asarray(frames.molecule) == name)
        pick = rng.choice(index, size=n // 3, replace=False)
        ours = compute_reference(frames.subset(pick), "pyscf", REFERENCE_OPTIONS, jobs=1, show_progress=False).energy
        stored = frames.energy[pick]
        kcal = units.kcal / units.mol
        rel_ours = (ours - ours.mean()) / kcal
        rel_stored = (stored - stored.mean()) / kcal
        rows.append((name, len(pick), np.abs(rel_ours - rel_stored).max(), np.ptp(rel_stored)))
        print(f"{name}: {len(pick)} conformations, max |dE_rel| = {rows[-1][2]:.4f} kcal/mol "
              f"over a {rows[-1][3]:.1f} kcal/mol range; offset {(ours - stored).mean() / kcal:+.4f} kcal/mol")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compute")
    p.add_argument("--work", type=Path, default=Path("build/refset"))
    p = sub.add_parser("assemble")
    p.add_argument("--work", type=Path, default=Path("build/refset"))
    p.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("check-ani1")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--path", type=Path, default=Path("../shared/data/ani1/ani_gdb_s01.h5"))
    args = parser.parse_args()
    if args.command == "compute":
        compute(args.work)
    elif args.command == "assemble":
        from ekd.data import DEFAULT_DATASET

        assemble(args.work, args.out or DEFAULT_DATASET)
    else:
        check_ani1(args.n, args.path)


if __name__ == "__main__":
    main()
