"""Materials checks: errors in the units materials scientists read (meV/atom, meV/Å, GPa), and
the properties they check first, computed the same way for the ground truth and for any model:
equilibrium lattice constant and bulk modulus (an energy–volume curve fitted with ASE's
Birch–Murnaghan equation of state), vacancy formation energy and (111) surface energy (positions
relaxed with ASE's BFGS at the model's own lattice constant).

A *system* is a dict naming a cubic crystal: ``{"name": "Cu", "symbols": "Cu", "a": 3.61}``
for an fcc element, or ``{"name": "CuNi", "symbols": "Cu8Ni8", "a": 3.58, "seed": 0}`` for a
random fcc alloy in a 2×2×1 conventional cell (the occupation drawn with ``seed``). Units:
Å, eV, GPa, J/m².
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.calculator import Calculator
from ase.eos import EquationOfState
from ase.data import atomic_numbers
from ase.optimize import BFGS
from ase.symbols import string2symbols

from ekd.data.frames import Dataset

__all__ = ["PROPERTIES", "crystal", "lattice_and_bulk_modulus", "material_properties", "material_properties_of", "materials_metrics", "surface_energy", "system_elements",
           "vacancy_formation_energy"]

#: what :func:`material_properties` reports, with units
PROPERTIES = {"lattice_constant": "Å", "bulk_modulus": "GPa", "vacancy_formation_energy": "eV", "surface_energy_111": "J/m²"}

#: isotropic strains of the energy–volume curve (lattice constant scaled by 1 + s)
EOS_STRAINS = np.linspace(-0.04, 0.04, 9)
RELAX_FMAX = 0.01  # eV/Å
RELAX_STEPS = 200


def materials_metrics(frames: Dataset, energy: np.ndarray, forces: np.ndarray | None, stress: np.ndarray | None) -> dict[str, float]:
    """MAEs of the periodic conformations of ``frames`` (a Dataset with reference energies, and
    forces and stresses where scored) against predictions in eV, eV/Å and eV/Å³:
    ``energy_per_atom_mae_meV`` (meV/atom), ``force_mae_meV`` (meV/Å), ``stress_mae_GPa``."""
    periodic = frames.periodic
    metrics = {}
    if frames.energy is not None:
        metrics["energy_per_atom_mae_meV"] = float(np.mean(np.abs((energy - frames.energy) / frames.sizes)[periodic])) * 1000
    if forces is not None and frames.forces is not None:
        atoms = periodic[frames.conformation_index]
        metrics["force_mae_meV"] = float(np.mean(np.abs(forces - frames.forces)[atoms])) * 1000
    if stress is not None and frames.stress is not None:
        known = periodic & np.isfinite(frames.stress).all(axis=1)
        if known.any():
            metrics["stress_mae_GPa"] = float(np.mean(np.abs(stress - frames.stress)[known])) / units.GPa
    return metrics


def system_elements(system: dict) -> list[int]:
    """Sorted atomic numbers of a system (a model must cover them to be checked on it)."""
    return sorted({atomic_numbers[s] for s in string2symbols(system["symbols"])})


def crystal(system: dict, a: float | None = None) -> Atoms:
    """The system's conventional fcc cell (an element: 4 atoms; an alloy: its 2×2×1 cell) at
    lattice constant ``a`` (Å; default the system's own)."""
    a = system["a"] if a is None else a
    symbols = string2symbols(system["symbols"])
    if len(set(symbols)) == 1:
        return bulk(symbols[0], "fcc", a=a, cubic=True)
    atoms = bulk(symbols[0], "fcc", a=a, cubic=True).repeat((2, 2, 1))
    if len(symbols) != len(atoms):
        raise ValueError(f"alloy {system['symbols']}: expected {len(atoms)} atoms (a 2×2×1 conventional fcc cell)")
    atoms.symbols = np.random.default_rng(system.get("seed", 0)).permutation(symbols)
    return atoms


def _conventional_cells(atoms: Atoms) -> int:
    return len(atoms) // 4


def lattice_and_bulk_modulus(calculator: Calculator, system: dict) -> tuple[float, float]:
    """Equilibrium lattice constant (Å) and bulk modulus (GPa) from a Birch–Murnaghan fit of
    the energy at isotropic strains of ±4 % around the system's lattice constant (positions
    fixed: every atom of an element's cell sits on a symmetric site). A ValueError when the
    energy has no minimum inside that window."""
    volumes, energies = [], []
    for strain in EOS_STRAINS:
        atoms = crystal(system, system["a"] * (1 + strain))
        atoms.calc = calculator
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    lowest = int(np.argmin(energies))
    if lowest in (0, len(energies) - 1):
        raise ValueError(f"no energy minimum within ±{EOS_STRAINS[-1]:.0%} of a = {system['a']:.3f} Å (lowest at the {'compressed' if lowest == 0 else 'expanded'} end)")
    v0, _, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return float((v0 / _conventional_cells(crystal(system))) ** (1 / 3)), float(b / units.GPa)


def _relaxed_energy(atoms: Atoms, calculator: Calculator) -> float:
    atoms.calc = calculator
    BFGS(atoms, logfile=None).run(fmax=RELAX_FMAX, steps=RELAX_STEPS)
    return float(atoms.get_potential_energy())


def vacancy_formation_energy(calculator: Calculator, system: dict, a: float) -> float:
    """E(N−1, relaxed) − (N−1)/N · E(N) (eV) in a 2×2×2 conventional cell (32 atoms) at lattice
    constant ``a`` (the model's own), the first atom removed."""
    perfect = bulk(system["symbols"], "fcc", a=a, cubic=True).repeat((2, 2, 2))
    perfect.calc = calculator
    energy = float(perfect.get_potential_energy())
    defect = perfect.copy()
    del defect[0]
    return _relaxed_energy(defect, calculator) - (len(defect) / len(perfect)) * energy


def surface_energy(calculator: Calculator, system: dict, a: float) -> float:
    """(111) surface energy (J/m²): (E_slab − N·E_bulk/atom) / 2A of a relaxed 1×1, six-layer
    slab with 8 Å of vacuum (periodic in-plane), at lattice constant ``a`` (the model's own)."""
    element = system["symbols"]
    reference = bulk(element, "fcc", a=a)  # primitive: one atom
    reference.calc = calculator
    per_atom = float(reference.get_potential_energy())
    slab = fcc111(element, size=(1, 1, 6), a=a, vacuum=8.0)
    slab.pbc = (True, True, False)
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    gamma = (_relaxed_energy(slab, calculator) - len(slab) * per_atom) / (2 * area)  # eV/Å²
    return float(gamma / (units.J / units.m**2))


def material_properties(calculator: Calculator, system: dict) -> dict[str, float]:
    """Every property of :data:`PROPERTIES` the system has (an alloy: lattice constant and bulk
    modulus), each at the calculator's own lattice constant; ``{"failed": reason}`` when the
    calculator's crystal has no equilibrium near the system's lattice constant."""
    try:
        a, modulus = lattice_and_bulk_modulus(calculator, system)
    except (ValueError, RuntimeError) as error:  # no minimum, or the fit did not converge
        return {"failed": str(error)}
    values = {"lattice_constant": a, "bulk_modulus": modulus}
    if len(set(string2symbols(system["symbols"]))) == 1:
        values["vacancy_formation_energy"] = vacancy_formation_energy(calculator, system, a)
        values["surface_energy_111"] = surface_energy(calculator, system, a)
    return values


def material_properties_of(predictors: dict, spec: dict) -> dict:
    """A ``materials`` block: the ground truth of ``spec`` (a dataset's ``metadata["materials"]``)
    and each predictor's properties (name → model or ensemble), on the systems all of them cover."""
    systems = [s for s in spec["systems"] if all(set(system_elements(s)) <= set(p.species) for p in predictors.values())]
    return {
        "level_of_theory": spec.get("level_of_theory"),
        "units": PROPERTIES,
        "ground_truth": {s["name"]: spec["ground_truth"][s["name"]] for s in systems},
        "models": {name: {s["name"]: material_properties(p.calculator(), s) for s in systems} for name, p in predictors.items()},
    }
