"""Seed structures for sampling: molecules from SMILES (RDKit conformer embedding) or read from
any structure file ekd reads (the first conformation of each molecule). Positions in Å."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ekd.data import Dataset
from ekd.errors import ConfigError, DataError

__all__ = ["Seed", "read_smiles_file", "seeds_from_file", "seeds_from_smiles"]


@dataclasses.dataclass(frozen=True)
class Seed:
    """One seed molecule: its name, atomic numbers (n,), positions (n, 3) Å and SMILES if any."""

    name: str
    numbers: np.ndarray
    positions: np.ndarray
    smiles: str | None = None


def read_smiles_file(path: str | os.PathLike) -> list[str]:
    """The entries of a SMILES file: one ``SMILES [name]`` per line; blank lines and lines that
    start with ``#`` skipped (within a line ``#`` is a SMILES triple bond)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such SMILES file")
    entries = [line.strip() for line in path.read_text().splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise DataError(f"{path}: no SMILES in it (expected one 'SMILES [name]' per line)")
    return entries


def seeds_from_smiles(entries: Sequence[str], seed: int = 0) -> list[Seed]:
    """One 3D conformer per entry (``SMILES`` or ``SMILES name``), hydrogens added, embedded by
    RDKit's ETKDG with ``seed`` and relaxed with MMFF94 where it has parameters."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem
    except ImportError:
        raise ConfigError("SMILES seeds need RDKit, which is not installed: pip install rdkit") from None
    RDLogger.DisableLog("rdApp.*")  # its parse errors become ours, one line each
    seeds = []
    for entry in entries:
        smiles, _, name = entry.strip().partition(" ")
        molecule = Chem.MolFromSmiles(smiles) if smiles else None
        if molecule is None:
            raise DataError(f"SMILES '{smiles}': RDKit cannot read it (check the bonds, rings and charges)")
        molecule = Chem.AddHs(molecule)
        parameters = AllChem.ETKDGv3()
        parameters.randomSeed = seed
        if AllChem.EmbedMolecule(molecule, parameters) != 0:
            raise DataError(f"SMILES '{smiles}': RDKit found no 3D conformer for it")
        if AllChem.MMFFHasAllMoleculeParams(molecule):
            AllChem.MMFFOptimizeMolecule(molecule, maxIters=2000)
        numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
        positions = np.asarray(molecule.GetConformer().GetPositions(), dtype=float)
        seeds.append(Seed(name.strip() or smiles, numbers, positions, smiles))
    return _unique(seeds)


def seeds_from_file(path: str | os.PathLike) -> list[Seed]:
    """The first conformation of each molecule of a structure file (any format ekd reads)."""
    frames = Dataset.read(path)
    seeds = []
    for name in frames.molecules:
        atoms = frames.atoms_of(int(np.flatnonzero(frames.molecule == name)[0]))
        seeds.append(Seed(str(name), frames.numbers[atoms].copy(), frames.positions[atoms].copy()))
    return _unique(seeds)


def _unique(seeds: list[Seed]) -> list[Seed]:
    names = [s.name for s in seeds]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"seed names repeat: {', '.join(repeated)} (name each SMILES: 'SMILES name')")
    return seeds
