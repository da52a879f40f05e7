"""Build ekd's periodic reference set: fcc Cu, Al, Ni and a CuNi alloy with EMT as ground truth.

How it is made
--------------
1. Each system's EMT lattice constant comes from an energy–volume fit
   (``ekd.evaluate.materials.lattice_and_bulk_modulus``, the same code that scores models).
2. Configurations, all seeded:
   - ``md``: bulk cells (an element: 2×1×1 conventional cell, 8 atoms; the alloy: 2×2×1,
     16 atoms, random occupation) at the EMT lattice constant scaled by a random ±2 %, run with
     Langevin NVT on EMT at 300, 600, 900 and 1200 K; snapshots every 25 steps of 2 fs after 100
     steps of equilibration.
   - ``strain``: the same cells under a random symmetric strain (components within ±3 %, plus an
     isotropic ±5 %), atoms rattled by 0.05 Å.
   - ``vacancy`` (elements): a 2×2×1 cell (16 sites) with one atom removed, MD at 300 and 600 K.
   - ``slab`` (elements): a (111) slab, 2×2 in-plane, 3 layers (12 atoms), 6 Å of vacuum on
     each side, periodic in-plane only, MD at 300 and 600 K.
3. Each configuration gets EMT's energy, forces and stress from ekd's ``ase`` reference
   calculator (``ekd.reference.compute_reference``, the same code ``ekd reference`` runs), in eV,
   eV/Å and eV/Å³.
4. The ground truth of the materials checks (lattice constant, bulk modulus, vacancy formation
   and (111) surface energies, ``ekd.evaluate.materials``) is computed with EMT and stored in
   the file's metadata (``materials``), beside the generator's parameters.

Usage::

    python scripts/make_periodic_set.py [--out ekd/datasets/ekd_periodic_emt.h5]     # a minute on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import ekd
from ekd.evaluate.materials import crystal, lattice_and_bulk_modulus, material_properties
from ekd.provenance import package_versions
from ekd.reference import compute_reference

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261130
SYSTEMS = [
    {"name": "Cu", "symbols": "Cu", "a": 3.61},
    {"name": "Al", "symbols": "Al", "a": 4.05},
    {"name": "Ni", "symbols": "Ni", "a": 3.52},
    {"name": "CuNi", "symbols": "Cu8Ni8", "a": 3.56, "seed": 0},
]
TEMPERATURES_K = (300, 600, 900, 1200)
SNAPSHOTS_PER_TEMPERATURE = 30
DEFECT_TEMPERATURES_K = (300, 600)
SNAPSHOTS_PER_DEFECT_RUN = 12
STRAINED = 40
TIMESTEP_FS, EVERY, EQUILIBRATION = 2.0, 25, 100
REFERENCE = {"calculator": "ase.calculators.emt:EMT", "level_of_theory": "EMT"}


def is_element(system: dict) -> bool:
    return system["symbols"].isalpha() and system["symbols"] == system["name"]


def bulk_cell(system: dict, a: float) -> Atoms:
    """The training cell: an element's 2×1×1 conventional cell (8 atoms), the alloy's own (16)."""
    return bulk(system["symbols"], "fcc", a=a, cubic=True).repeat((2, 1, 1)) if is_element(system) else crystal(system, a)


def md_snapshots(atoms: Atoms, temperature: float, count: int, rng: np.random.Generator) -> list[Atoms]:
    """``count`` snapshots of Langevin NVT on EMT at ``temperature`` K."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    dynamics.run(EQUILIBRATION)
    snapshots = []
    for _ in range(count):
        dynamics.run(EVERY)
        snapshots.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc))
    return snapshots


def configurations(system: dict, a: float, rng: np.random.Generator) -> list[tuple[str, Atoms]]:
    """(kind, Atoms) of one system: MD, strained cells and, for an element, a vacancy and a slab."""
    found = []
    for temperature in TEMPERATURES_K:
        cell = bulk_cell(system, a * (1 + rng.uniform(-0.02, 0.02)))
        found += [(f"md-{temperature}K", s) for s in md_snapshots(cell, temperature, SNAPSHOTS_PER_TEMPERATURE, rng)]
    for _ in range(STRAINED):
        atoms = bulk_cell(system, a * (1 + rng.uniform(-0.05, 0.05)))
        strain = rng.uniform(-0.03, 0.03, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        found.append(("strain", atoms))
    if is_element(system):
        vacancy = bulk(system["symbols"], "fcc", a=a, cubic=True).repeat((2, 2, 1))
        del vacancy[0]
        slab = fcc111(system["symbols"], size=(2, 2, 3), a=a, vacuum=6.0)
        slab.pbc = (True, True, False)
        for temperature in DEFECT_TEMPERATURES_K:
            found += [("vacancy", s) for s in md_snapshots(vacancy, temperature, SNAPSHOTS_PER_DEFECT_RUN, rng)]
            found += [("slab", s) for s in md_snapshots(slab, temperature, SNAPSHOTS_PER_DEFECT_RUN, rng)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "ekd/datasets/ekd_periodic_emt.h5")
    parser.add_argument("--work", type=Path, default=ROOT / "build/periodic-set", help="the reference's finished chunks (resumable)")
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    images, names, ground_truth, systems = [], [], {}, []
    for system in SYSTEMS:
        a, _ = lattice_and_bulk_modulus(EMT(), system)
        systems.append({**system, "a": a})  # the evaluator's starting point: EMT's own lattice constant
        system_truth = material_properties(EMT(), systems[-1])
        ground_truth[system["name"]] = system_truth
        for kind, atoms in configurations(system, a, rng):
            images.append(atoms)
            names.append(f"{system['name']}/{kind}")
        print(f"{system['name']}: a0 {a:.4f} Å, {sum(n.startswith(system['name'] + '/') for n in names)} configurations; EMT {system_truth}")
    for atoms, name in zip(images, names):
        atoms.info["molecule"] = name
    data = ekd.Dataset.from_atoms(images)
    labelled = compute_reference(data, "ase", REFERENCE, work=args.work, forces=True)
    failures = labelled.metadata["reference"]["failures"]
    if failures:
        raise SystemExit(f"EMT failed on {len(failures)} configurations: {failures[:3]}")
    generator = {
        "script": "scripts/make_periodic_set.py", "seed": SEED, "systems": SYSTEMS, "temperatures_K": TEMPERATURES_K,
        "snapshots_per_temperature": SNAPSHOTS_PER_TEMPERATURE, "defect_temperatures_K": DEFECT_TEMPERATURES_K,
        "snapshots_per_defect_run": SNAPSHOTS_PER_DEFECT_RUN, "strained": STRAINED, "timestep_fs": TIMESTEP_FS,
        "every": EVERY, "equilibration": EQUILIBRATION, "versions": package_versions(),
    }
    labelled = labelled.with_metadata(generator=generator, materials={"systems": systems, "ground_truth": ground_truth, "level_of_theory": "EMT"},
                                      description="fcc Cu, Al, Ni and CuNi (EMT): MD at 300-1200 K, strained cells, a vacancy, (111) slabs")
    ekd.data.write(labelled, args.out)
    sizes = labelled.sizes
    print(f"wrote {args.out}: {len(labelled)} configurations of {sizes.min()}-{sizes.max()} atoms ({labelled.n_atoms} atoms)")


if __name__ == "__main__":
    main()
