"""MD stability: Langevin NVT runs from each molecule's (or periodic system's) first conformation.

A molecule's run fails when a bond of the starting geometry (covalent radii, ``ase.data``)
deviates from its starting length by more than ``max_bond_deviation`` Å, the criterion of Fu et
al. ("Forces are not enough", TMLR 2023). A periodic cell's run (NVT in its box: atoms may
diffuse, so bonds are no criterion) fails when two atoms, images included, come closer than
``min_distance_factor`` × the sum of their covalent radii, or the temperature exceeds
``max_temperature_factor`` × the thermostat's. Any run fails when positions stop being finite.
ASE units inside (eV, Å, ASE time); settings and reports in fs, ps and K.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
from ase import Atoms, units
from ase.constraints import FixCom
from ase.data import covalent_radii
from ase.io import Trajectory
from ase.neighborlist import neighbor_list
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from ekd.calculator import EkdCalculator
from ekd.data import Dataset, formula
from ekd.progress import progress_bar

__all__ = ["MDSettings", "bond_deviation", "bonds", "md_stability", "run_md"]

BOND_FACTOR = 1.2  # a bond: distance below 1.2 × the sum of the two covalent radii


class MDSettings(pydantic.BaseModel):
    """How each molecule is run and when a run counts as failed."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    steps: int = pydantic.Field(4000, ge=1, description="MD steps per molecule")
    timestep_fs: float = pydantic.Field(0.5, gt=0)
    temperature_K: float = pydantic.Field(300.0, gt=0)
    friction_per_fs: float = pydantic.Field(0.01, gt=0, description="Langevin friction, 1/fs")
    max_bond_deviation: float = pydantic.Field(0.5, gt=0, description="Å; a larger change of any bond length is a failure")
    min_distance_factor: float = pydantic.Field(0.5, gt=0, lt=1, description="periodic: a pair closer than this × its covalent radii sum is a failure")
    max_temperature_factor: float = pydantic.Field(3.0, gt=1, description="periodic: a temperature above this × the thermostat's is a failure")
    check_every: int = pydantic.Field(10, ge=1, description="steps between stability checks (and trajectory frames)")
    seed: int = 0
    max_molecules: int | None = pydantic.Field(None, ge=1, description="run only the data's first N molecules; None: all")


def bonds(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bonded pairs (i < j) of one geometry and their lengths (Å)."""
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    radii = covalent_radii[numbers]
    i, j = np.triu_indices(len(numbers), 1)
    bonded = distances[i, j] < BOND_FACTOR * (radii[i] + radii[j])
    return np.stack([i[bonded], j[bonded]], axis=1), distances[i, j][bonded]


def bond_deviation(positions: np.ndarray, pairs: np.ndarray, lengths: np.ndarray) -> float:
    """The largest change (Å) of the bonds ``pairs`` from their ``lengths`` (see :func:`bonds`)."""
    if not len(pairs):
        return 0.0
    current = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=-1)
    return float(np.max(np.abs(current - lengths)))


def closest_pair_ratio(atoms: Atoms) -> float:
    """The smallest distance between two atoms (images included) over the sum of their covalent
    radii (1: touching; the ratio at which a run fails is ``min_distance_factor``)."""
    radii = covalent_radii[atoms.numbers]
    i, j, d = neighbor_list("ijd", atoms, 2 * float(radii.max()))
    return float(np.min(d / (radii[i] + radii[j]))) if len(d) else float("inf")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def run_md(predictor, numbers: np.ndarray, positions: np.ndarray, settings: MDSettings, trajectory: str | Path | None = None, on_check=None,
           cell: np.ndarray | None = None, pbc: np.ndarray | None = None) -> dict:
    """One Langevin run of one molecule, or of a periodic cell (``cell`` (3, 3) Å, ``pbc`` (3,)),
    with ``predictor`` (a model or an ensemble's mean).

    Returns ``stable``, ``steps_run``, ``time_ps`` (until failure, or the whole run),
    ``mean_temperature_K`` and, for a molecule, ``max_bond_deviation`` (Å, over the checks run),
    for a cell ``min_distance_ratio`` (closest pair over its covalent radii sum) and
    ``max_temperature_K``; numbers are None once positions are not finite (so that the results
    stay valid JSON). ``on_check(steps)`` is called after every ``check_every`` steps.
    """
    periodic = pbc is not None and bool(np.any(pbc))
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell if periodic else None, pbc=pbc if periodic else False)
    atoms.calc = EkdCalculator(predictor)
    rng = np.random.default_rng(settings.seed)
    thermalize_momenta(atoms, settings.temperature_K, rng=rng)
    Stationary(atoms)
    if not periodic:
        ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(
        atoms, settings.timestep_fs * units.fs, temperature_K=settings.temperature_K,
        friction=settings.friction_per_fs / units.fs, fixcm=False, rng=rng,
    )
    writer = Trajectory(str(trajectory), "w", atoms) if trajectory is not None else None
    pairs, lengths = (None, None) if periodic else bonds(atoms.numbers, atoms.positions)  # bonds: molecules only
    steps, worst, temperatures, stable = 0, (float("inf") if periodic else 0.0), [], True
    try:
        while steps < settings.steps:
            chunk = min(settings.check_every, settings.steps - steps)
            dynamics.run(chunk)
            steps += chunk
            temperatures.append(atoms.get_temperature())
            if writer is not None:
                writer.write(atoms)
            if on_check is not None:
                on_check(chunk)
            if not np.all(np.isfinite(atoms.positions)):
                worst, stable = float("nan"), False
                break
            if periodic:
                worst = min(worst, closest_pair_ratio(atoms))
                failed = worst < settings.min_distance_factor or temperatures[-1] > settings.max_temperature_factor * settings.temperature_K
            else:
                worst = max(worst, bond_deviation(atoms.positions, pairs, lengths))
                failed = worst > settings.max_bond_deviation
            if failed:
                stable = False
                break
    finally:
        if writer is not None:
            writer.close()
    checks = {"min_distance_ratio": _finite(worst), "max_temperature_K": _finite(np.max(temperatures))} if periodic else {"max_bond_deviation": _finite(worst)}
    return {
        "stable": stable,
        "steps_run": steps,
        "time_ps": steps * settings.timestep_fs / 1000,
        **checks,
        "mean_temperature_K": _finite(np.mean(temperatures)),
    }


def md_stability(predictor, frames: Dataset, settings: MDSettings | None = None, trajectory_dir: str | Path | None = None, show_progress: bool = True) -> dict:
    """Run MD from the first conformation of each molecule (or periodic system) in ``frames``;
    per-molecule results and a summary (``fraction_stable``, ``mean_time_ps``: failure time, or
    the run's length)."""
    settings = settings or MDSettings()
    frames.check_elements(predictor.species, "the model")
    names = frames.molecules[: settings.max_molecules]
    starts = {name: int(np.flatnonzero(frames.molecule == name)[0]) for name in names}
    if trajectory_dir is not None:
        Path(trajectory_dir).mkdir(parents=True, exist_ok=True)
    molecules = {}
    with progress_bar("MD stability", len(starts) * settings.steps, show_progress, unit="step") as bar:
        for name, index in starts.items():
            atoms = frames.atoms_of(index)
            numbers, positions = frames.numbers[atoms], frames.positions[atoms]
            trajectory = Path(trajectory_dir) / f"{name.replace('/', '_')}.traj" if trajectory_dir is not None else None
            result = run_md(predictor, numbers, positions, settings, trajectory, on_check=lambda n, name=name: bar.update(n, name),
                            cell=frames.cells[index], pbc=frames.periodic_axes[index])
            bar.advance(settings.steps - result["steps_run"])  # a failed run ends early
            molecules[name] = {"formula": formula(numbers), **result}
    n_stable = sum(r["stable"] for r in molecules.values())
    return {
        "n_molecules": len(molecules),
        "n_stable": n_stable,
        "fraction_stable": n_stable / len(molecules),
        "mean_time_ps": float(np.mean([r["time_ps"] for r in molecules.values()])),
        "molecules": molecules,
        "settings": settings.model_dump(),
        "units": {"time": "ps", "temperature": "K", "bond_deviation": "Å", "min_distance_ratio": "closest pair / covalent radii sum"},
    }
