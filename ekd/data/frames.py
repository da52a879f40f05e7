"""The neutral dataset container: conformations of molecules or periodic cells with energies,
forces and stresses.

Units inside ekd: positions in Å, energies in eV, forces in eV/Å, stresses in eV/Å³. Readers
convert at the boundary.
Atoms of all conformations are stored concatenated (ragged layout): conformation ``i`` owns the
atom rows ``ptr[i]:ptr[i + 1]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Iterator, Literal, NamedTuple, Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ekd.data.options import ReadOptions
from ekd.errors import ConfigError, DataError
from ekd.provenance import sha256_arrays

__all__ = ["VOIGT", "Dataset", "PerConformation", "Split", "atom_rows", "formula", "molecule_split", "random_split", "voigt_stress"]

#: (rows, columns) of a 3×3 stress's Voigt components in ASE's order: xx, yy, zz, yz, xz, xy
VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])

#: reading and writing, wired in by the package :mod:`ekd.data` (which imports the formats), so
#: that the container imports none of the modules that build it: ``read``, ``write``, ``embedded``
_IO: dict = {}


def formula(numbers: np.ndarray) -> str:
    """Hill-ordered chemical formula of one conformation's atomic numbers, e.g. ``CH4O``."""
    counts = Counter(chemical_symbols[z] for z in numbers)
    order = ["C", "H"] if "C" in counts else []
    order += sorted(s for s in counts if s not in order)
    return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order)


def atom_rows(ptr: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(A',) the atom rows of conformations ``index`` (in that order) of a layout with offsets ``ptr``."""
    index = np.asarray(index, dtype=np.int64)
    sizes = ptr[index + 1] - ptr[index]
    return np.repeat(ptr[index] - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()), dtype=np.int64)


#: the widest a conformation may be, Å (coordinates beyond are not a geometry: wrong units or garbage)
MAX_EXTENT = 1e4


class PerConformation:
    """What every set of conformations offers from its per-conformation arrays (``ptr``,
    ``molecule``, ``cell``, ``pbc``, ``stress``, ``metadata``): sizes, periodicity, batches and
    splits. :class:`Dataset` holds its atoms in memory; :class:`ekd.data.stream.StreamedDataset`
    reads them from disk a batch at a time."""

    def __len__(self) -> int:
        return len(self.ptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        """(N,) number of atoms of each conformation."""
        return np.diff(self.ptr)

    @property
    def molecules(self) -> list[str]:
        """Distinct molecule ids, in order of first appearance."""
        _, first = np.unique(self.molecule, return_index=True)
        return [str(self.molecule[i]) for i in sorted(first)]

    @property
    def molecule_ids(self) -> np.ndarray:
        """(N,) an integer per conformation naming its molecule (equal ids: the same molecule)."""
        return np.unique(self.molecule, return_inverse=True)[1].reshape(-1)

    @property
    def cells(self) -> np.ndarray:
        """(N, 3, 3) cell vectors as rows, Å (zeros for molecules)."""
        return self.cell if self.cell is not None else np.zeros((len(self), 3, 3))

    @property
    def stresses(self) -> np.ndarray:
        """(N, 6) stresses, eV/Å³ (NaN where unknown, and for molecules)."""
        return self.stress if self.stress is not None else np.full((len(self), 6), np.nan)

    @property
    def periodic_axes(self) -> np.ndarray:
        """(N, 3) bool: periodic along each cell vector (all False for molecules)."""
        return self.pbc if self.pbc is not None else np.zeros((len(self), 3), dtype=bool)

    @property
    def periodic(self) -> np.ndarray:
        """(N,) bool: which conformations are periodic (along any cell vector)."""
        return self.periodic_axes.any(axis=1)

    def load(self) -> "Dataset":
        """These conformations in memory, as a :class:`Dataset`."""
        raise NotImplementedError

    def batch_indices(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
        """The conformations of each of :meth:`batches`: consecutive or, with ``shuffle``, seeded random."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        return [order[start : start + batch_size] for start in range(0, len(self), batch_size)]

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator["Dataset"]:
        """Consecutive (or, with ``shuffle``, seeded random) batches of conformations, in memory."""
        for index in self.batch_indices(batch_size, shuffle, seed):
            yield self.subset(index).load()

    def blocks(self, size: int = 4096, ranks: int = 1, rank: int = 0) -> Iterator[tuple[int, "Dataset"]]:
        """(first conformation, block in memory) of consecutive blocks of ``size`` conformations;
        with ``ranks``, only the blocks of rank ``rank`` (every ``ranks``-th)."""
        for start in range(rank * size, len(self), ranks * size):
            yield start, self.subset(np.arange(start, min(start + size, len(self)))).load()

    def check_coordinates(self, first: int = 0) -> None:
        """Raise a DataError naming the file, conformation (numbered from ``first``) and atom when
        a position is not finite or a conformation spans more than :data:`MAX_EXTENT` Å (such
        coordinates are not a geometry, and would crash the neighbour list)."""
        positions, ptr = self.positions, self.ptr  # (a Dataset's: a streamed one is checked a block at a time)
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        problem = "is not finite" if len(bad) else None
        if not len(bad) and len(positions):
            filled = np.flatnonzero(np.diff(ptr) > 0)
            low, high = np.minimum.reduceat(positions, ptr[filled]), np.maximum.reduceat(positions, ptr[filled])
            extent = (high - low).max(axis=1)
            if extent.max() > MAX_EXTENT:
                k = filled[int(np.argmax(extent))]
                rows = positions[ptr[k] : ptr[k + 1]]
                bad = [ptr[k] + int(np.abs(rows - np.median(rows, axis=0)).max(axis=1).argmax())]
                problem = f"makes it {extent.max():.3g} Å across (more than {MAX_EXTENT:g} Å: check the units, or remove it)"
        if problem:
            atom = int(bad[0])
            k = int(np.searchsorted(ptr, atom, side="right") - 1)
            x, y, z = positions[atom]
            raise DataError(f"{self.metadata.get('source', 'data')}: conformation {first + k} ({self.molecule[k]}): atom {atom - ptr[k]} at "
                            f"({x:.4g}, {y:.4g}, {z:.4g}) Å {problem}")

    def check_elements(self, supported, what: str) -> None:
        """Raise a DataError naming the file if any element is outside ``supported`` (atomic numbers)."""
        extra = sorted(set(self.elements) - {int(z) for z in supported})
        if extra:
            names = lambda zs: " ".join(chemical_symbols[z] for z in zs)  # noqa: E731
            raise DataError(
                f"{self.metadata.get('source', 'data')}: element(s) {names(extra)} not supported by {what} "
                f"(it covers {names(sorted(supported))})"
            )

    def split(self, fractions: Sequence[float] = (0.8, 0.1, 0.1), by: Literal["random", "molecule"] = "random", seed: int = 0) -> "Split":
        """Seeded (train, validation, test) parts, by conformation or by whole molecule."""
        return Split(*(self.subset(index) for index in self.split_indices(fractions, by, seed)))

    def split_indices(self, fractions: Sequence[float] = (0.8, 0.1, 0.1), by: Literal["random", "molecule"] = "random",
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The conformations of each part of :meth:`split` (increasing indices): the same parts
        of any dataset of the same conformations (its labels, a streamed view)."""
        if len(fractions) != 3:
            raise ConfigError(f"split fractions {list(fractions)}: expected three (train, validation, test)")
        splitter = {"random": _random_indices, "molecule": _molecule_indices}.get(by)
        if splitter is None:
            raise ConfigError(f"split by '{by}': expected 'random' or 'molecule'")
        return tuple(splitter(self, fractions, seed))


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset(PerConformation):
    """A set of conformations of molecules, with reference energies and forces when known.

    Make one with :meth:`read` (any supported file), :meth:`from_atoms` (ASE), :meth:`embedded`
    (ekd's reference set) or :meth:`from_arrays`; :meth:`split` gives seeded train, validation
    and test parts.

    Attributes:
        numbers: (A,) atomic numbers of all atoms, conformation after conformation.
        positions: (A, 3) Cartesian positions, Å.
        ptr: (N + 1,) atom offsets; conformation ``i`` is ``ptr[i]:ptr[i + 1]``.
        molecule: (N,) molecule / group id of each conformation (str).
        energy: (N,) total energies, eV, or None when the data carry none.
        forces: (A, 3) forces (−dE/dx), eV/Å, or None.
        atom_data: extra per-atom arrays (A, ...), e.g. the teachers' ``force_spread``.
        metadata: where the data came from: source, sha256, level_of_theory, energy_key, ...
        cell: (N, 3, 3) each conformation's cell vectors as rows, Å, or None when every
            conformation is an isolated molecule.
        pbc: (N, 3) bool, periodic along each cell vector (with ``cell``; False rows: molecules).
        stress: (N, 6) eV/Å³, (1/V) ∂E/∂ε in ASE's sign and Voigt order (xx, yy, zz, yz, xz, xy),
            NaN rows for molecules; or None.
    """

    numbers: np.ndarray
    positions: np.ndarray
    ptr: np.ndarray
    molecule: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    atom_data: dict = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None
    stress: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = self.metadata.get("source", "frames")
        n_atoms, n_conf = len(self.numbers), len(self.ptr) - 1
        checks = [
            (self.positions.shape == (n_atoms, 3), f"positions shape {self.positions.shape}, expected ({n_atoms}, 3)"),
            (n_conf >= 0 and self.ptr[0] == 0 and self.ptr[-1] == n_atoms, "atom offsets do not cover the atoms"),
            (np.all(np.diff(self.ptr) > 0), "a conformation has no atoms"),
            (len(self.molecule) == n_conf, f"{len(self.molecule)} molecule ids for {n_conf} conformations"),
            (self.energy is None or self.energy.shape == (n_conf,), f"energy shape, expected ({n_conf},)"),
            (self.forces is None or self.forces.shape == (n_atoms, 3), f"forces shape, expected ({n_atoms}, 3)"),
        ]
        checks += [(len(v) == n_atoms, f"atom_data '{k}' has {len(v)} rows for {n_atoms} atoms") for k, v in self.atom_data.items()]
        checks += [
            ((self.cell is None) == (self.pbc is None), "cell and pbc come together"),
            (self.cell is None or self.cell.shape == (n_conf, 3, 3), f"cell shape, expected ({n_conf}, 3, 3)"),
            (self.pbc is None or self.pbc.shape == (n_conf, 3), f"pbc shape, expected ({n_conf}, 3)"),
            (self.stress is None or self.stress.shape == (n_conf, 6), f"stress shape, expected ({n_conf}, 6): Voigt xx yy zz yz xz xy"),
        ]
        for ok, message in checks:
            if not ok:
                raise DataError(f"{where}: {message}")
        if self.energy is not None and not np.all(np.isfinite(self.energy)):
            bad = int(np.flatnonzero(~np.isfinite(self.energy))[0])
            key = self.metadata.get("energy_key", "energy")
            raise DataError(f"{where}: key '{key}' has a non-finite energy at conformation {bad}")
        if self.forces is not None and not np.all(np.isfinite(self.forces)):
            key = self.metadata.get("force_key", "forces")
            raise DataError(f"{where}: key '{key}' has non-finite forces")
        if self.stress is not None and not np.all(np.isfinite(self.stress[self.periodic])):
            bad = int(np.flatnonzero(self.periodic & ~np.isfinite(self.stress).all(axis=1))[0])
            raise DataError(f"{where}: periodic conformation {bad} has a non-finite stress")
        if np.any(self.numbers < 1) or np.any(self.numbers >= len(chemical_symbols)):
            raise DataError(f"{where}: atomic numbers outside 1..{len(chemical_symbols) - 1}")
        if self.cell is not None and not np.isfinite(self.cell).all():
            bad = int(np.flatnonzero(~np.isfinite(self.cell).reshape(n_conf, 9).all(axis=1))[0])
            raise DataError(f"{where}: conformation {bad} has a non-finite cell {self.cell[bad].tolist()}")
        if self.cell is not None:
            flat = np.abs(np.linalg.det(self.cell)) < 1e-6
            bad = np.flatnonzero(self.periodic & flat)
            if bad.size:
                raise DataError(f"{where}: conformation {bad[0]} is periodic (pbc {self.pbc[bad[0]].tolist()}) but its cell has no volume; "
                                "give all three cell vectors (a slab: vacuum along the non-periodic one)")

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        numbers: Sequence[np.ndarray],
        positions: Sequence[np.ndarray],
        molecule: Sequence[str],
        energy: np.ndarray | None = None,
        forces: Sequence[np.ndarray] | None = None,
        metadata: dict | None = None,
        cell: np.ndarray | None = None,
        pbc: np.ndarray | None = None,
        stress: np.ndarray | None = None,
    ) -> "Dataset":
        """Build from per-conformation arrays: ``numbers[i]`` (n_i,), ``positions[i]`` (n_i, 3), ...;
        ``cell`` (N, 3, 3) Å and ``pbc`` (N, 3) for periodic conformations (None: molecules);
        ``stress`` (N, 6) eV/Å³, Voigt (NaN rows for molecules)."""
        sizes = [len(z) for z in numbers]
        ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        cat = lambda arrays, shape: np.concatenate(arrays) if arrays else np.zeros(shape)  # noqa: E731
        return cls(
            numbers=cat([np.asarray(z) for z in numbers], (0,)).astype(np.int64),
            positions=cat([np.asarray(p, dtype=np.float64) for p in positions], (0, 3)),
            ptr=ptr,
            molecule=np.asarray(molecule, dtype=str).reshape(-1),
            energy=None if energy is None else np.asarray(energy, dtype=np.float64),
            forces=None if forces is None else cat([np.asarray(f, dtype=np.float64) for f in forces], (0, 3)),
            metadata=dict(metadata or {}),
            cell=None if cell is None else np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3),
            pbc=None if pbc is None else np.asarray(pbc, dtype=bool).reshape(-1, 3),
            stress=None if stress is None else np.asarray(stress, dtype=np.float64).reshape(-1, 6),
        )

    @classmethod
    def concatenate(cls, parts: Sequence["Dataset"]) -> "Dataset":
        """Join several Dataset; energies/forces/atom_data are kept only where every part has them,
        stresses where any part has them (NaN rows for the others)."""
        if not parts:
            raise DataError("nothing to concatenate")
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [p.n_atoms for p in parts[:-1]])
        keep = lambda attr: all(getattr(p, attr) is not None for p in parts)  # noqa: E731
        common = set.intersection(*(set(p.atom_data) for p in parts))
        return cls(
            numbers=np.concatenate([p.numbers for p in parts]),
            positions=np.concatenate([p.positions for p in parts]),
            ptr=np.concatenate([[0]] + [p.ptr[1:] + o for p, o in zip(parts, offsets)]),
            molecule=np.concatenate([p.molecule for p in parts]),
            energy=np.concatenate([p.energy for p in parts]) if keep("energy") else None,
            forces=np.concatenate([p.forces for p in parts]) if keep("forces") else None,
            atom_data={k: np.concatenate([p.atom_data[k] for p in parts]) for k in sorted(common)},
            metadata={"parts": [p.metadata for p in parts]},
            cell=np.concatenate([p.cells for p in parts]) if any(p.cell is not None for p in parts) else None,
            pbc=np.concatenate([p.periodic_axes for p in parts]) if any(p.cell is not None for p in parts) else None,
            stress=np.concatenate([p.stresses for p in parts]) if any(p.stress is not None for p in parts) else None,
        )

    # size and access ----------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def has_forces(self) -> bool:
        """Whether the conformations carry force labels."""
        return self.forces is not None

    def load(self) -> "Dataset":
        """Itself: a Dataset is in memory."""
        return self

    def sha256(self) -> str:
        """sha256 of the arrays (what a model trained on them depends on), hashed once per
        Dataset: its arrays are not changed in place."""
        if "_sha256" not in self.__dict__:
            object.__setattr__(self, "_sha256", sha256_arrays(self))
        return self.__dict__["_sha256"]

    @property
    def conformation_index(self) -> np.ndarray:
        """(A,) index of the conformation each atom belongs to."""
        return np.repeat(np.arange(len(self)), self.sizes)

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present."""
        return sorted(int(z) for z in np.unique(self.numbers))

    def composition(self, species: list[int], rows: slice = slice(None)) -> np.ndarray:
        """(n, S) count of each of ``species`` (atomic numbers) in each conformation of ``rows``
        (consecutive conformations; default all)."""
        start, stop, _ = rows.indices(len(self))
        stop = max(start, stop)
        numbers = self.numbers[self.ptr[start] : self.ptr[stop]]
        column = np.full(max(max(species, default=0), int(numbers.max(initial=0))) + 1, len(species))
        column[list(species)] = np.arange(len(species))
        counts = np.zeros((stop - start, len(species) + 1))
        np.add.at(counts, (np.repeat(np.arange(stop - start), self.sizes[start:stop]), column[numbers]), 1.0)
        return counts[:, : len(species)]

    def conformation_keys(self, decimals: int = 4) -> list[bytes]:
        """One key per conformation from its elements and positions (rounded to ``decimals`` Å)
        and cell: equal conformations get equal keys (to find a test set's overlap with training)."""
        rounded = np.round(self.positions, decimals) + 0.0  # + 0.0: -0.0 and 0.0 get one key
        cells = np.round(self.cells, decimals) + 0.0
        return [self.numbers[self.atoms_of(i)].tobytes() + rounded[self.atoms_of(i)].tobytes() + cells[i].tobytes() for i in range(len(self))]

    def atoms_of(self, i: int) -> slice:
        """Atom rows of conformation ``i``."""
        return slice(int(self.ptr[i]), int(self.ptr[i + 1]))

    def subset(self, index: Sequence[int] | np.ndarray) -> "Dataset":
        """The conformations at ``index`` (in that order), as a new Dataset."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"conformation index out of range for {len(self)} conformations")
        index = index % max(len(self), 1)
        sizes = self.sizes[index]
        rows = atom_rows(self.ptr, index)
        return dataclasses.replace(
            self,
            numbers=self.numbers[rows],
            positions=self.positions[rows],
            ptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            molecule=self.molecule[index],
            energy=None if self.energy is None else self.energy[index],
            forces=None if self.forces is None else self.forces[rows],
            atom_data={k: v[rows] for k, v in self.atom_data.items()},
            cell=None if self.cell is None else self.cell[index],
            pbc=None if self.pbc is None else self.pbc[index],
            stress=None if self.stress is None else self.stress[index],
        )

    # variants -----------------------------------------------------------------------------
    def with_metadata(self, **items) -> "Dataset":
        """A copy with ``items`` added to the metadata."""
        return dataclasses.replace(self, metadata={**self.metadata, **items})

    def with_forces(self, forces: np.ndarray | None, **atom_data: np.ndarray) -> "Dataset":
        """A copy whose force labels are ``forces`` (A, 3) eV/Å (None drops them)."""
        return dataclasses.replace(self, forces=forces, atom_data={**self.atom_data, **atom_data})

    def with_stress(self, stress: np.ndarray | None) -> "Dataset":
        """A copy whose stress labels are ``stress`` (N, 6) eV/Å³, Voigt (None drops them)."""
        return dataclasses.replace(self, stress=stress)

    def without_forces(self) -> "Dataset":
        """A copy with no force or stress labels (the energy's derivatives) and no per-atom extras
        (the teachers' spread and force weights) but the conformations' loss ``weight``: what
        energy-only training may see, so that its stage does not depend on the teachers. Itself
        when it has none."""
        kept = {k: v for k, v in self.atom_data.items() if k == "weight"}
        if self.forces is None and self.stress is None and kept == self.atom_data:
            return self
        return dataclasses.replace(self, forces=None, stress=None, atom_data=kept)

    # the user's entry points -------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | os.PathLike, options: ReadOptions | None = None, **kwargs) -> "Dataset":
        """Read any supported file (ekd HDF5, ANI/COMP6 HDF5, anything ``ase.io`` reads) into eV/Å.

        Reading options (``energy_key``, ``force_key``, ``force_sign``, ``energy_unit``,
        ``molecule_key``, ``format``) are given as a :class:`ekd.data.ReadOptions` or as keywords.
        """
        return _IO["read"](path, options, **kwargs)

    @classmethod
    def embedded(cls, with_forces: bool = False, name: Literal["molecules", "metals", "ccsdt"] = "molecules") -> "Dataset":
        """An embedded reference set: ``molecules``, wB97X/6-31G(d), 1,600 conformations of ten
        small H/C/N/O molecules (the default data); ``metals``, EMT, 784 periodic cells of fcc
        Cu, Al, Ni and CuNi; ``ccsdt``, CCSD(T)/cc-pVDZ energies of the molecules' training and
        validation conformations, whose held-out CCSD(T) forces are a file of their own
        (docs/reference_set.md). Forces (and stresses) are held-out truth, returned only with
        ``with_forces``."""
        return _IO["embedded"](with_forces, name)

    @classmethod
    def from_atoms(cls, images: Sequence[Atoms], molecule_key: str = "molecule") -> "Dataset":
        """Conformations from ASE ``Atoms`` (positions Å).

        Energies (eV), forces (eV/Å) and stresses (eV/Å³; of periodic images) are taken from
        each image's calculator results (as ``ase.io.read`` attaches them) when every image (every
        periodic one, for stresses) has them; the molecule id is
        ``atoms.info[molecule_key]``, else the chemical formula. Cells and periodicity are kept
        when any image is periodic.
        """
        images = list(images)
        if not images:
            raise DataError("from_atoms: no Atoms given")
        periodic = any(a.pbc.any() for a in images)
        results = [_own_results(k, a) for k, a in enumerate(images)]
        has = lambda key: all(key in r for r in results)  # noqa: E731
        stress = None
        if periodic and all("stress" in r for a, r in zip(images, results) if a.pbc.any()):
            stress = np.array([voigt_stress(r["stress"]) if a.pbc.any() else np.full(6, np.nan) for a, r in zip(images, results)])
        data = cls.from_arrays(
            numbers=[a.numbers for a in images],
            positions=[a.positions for a in images],
            molecule=[str(a.info.get(molecule_key, formula(a.numbers))) for a in images],
            energy=np.array([r["energy"] for r in results]) if has("energy") else None,
            forces=[r["forces"] for r in results] if has("forces") else None,
            metadata={"source": "from_atoms"},
            cell=np.array([a.cell.array for a in images]) if periodic else None,
            pbc=np.array([a.pbc for a in images]) if periodic else None,
            stress=stress,
        )
        data.check_coordinates()
        return data.with_metadata(source="ase.Atoms")

    def to_atoms(self) -> list[Atoms]:
        """One ``Atoms`` per conformation (with its cell and pbc); energies, forces and stresses
        (if any) as calculator results, the molecule id in ``info["molecule"]``."""
        from ase.calculators.singlepoint import SinglePointCalculator

        images = []
        for i in range(len(self)):
            rows = self.atoms_of(i)
            atoms = Atoms(numbers=self.numbers[rows], positions=self.positions[rows], cell=self.cells[i], pbc=self.periodic_axes[i],
                          info={"molecule": str(self.molecule[i])})
            results = {}
            if self.energy is not None:
                results["energy"] = float(self.energy[i])
            if self.forces is not None:
                results["forces"] = self.forces[rows].copy()
            if self.stress is not None and np.isfinite(self.stress[i]).all():
                results["stress"] = self.stress[i].copy()
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            images.append(atoms)
        return images

    def write(self, path: str | os.PathLike) -> None:
        """Write by file extension: ``.h5`` ekd HDF5, ``.xyz`` extended XYZ (eV, Å)."""
        _IO["write"](self, path)


def _own_results(k: int, atoms: Atoms) -> dict:
    """The calculator results of image ``k`` that belong to it: refused when its calculator last
    computed other atoms (one calculator shared by several images keeps only the last one's
    results) or a result has another image's shape."""
    calc = atoms.calc
    if calc is None or not calc.results:
        return {}
    where = f"from_atoms: image {k} ({atoms.get_chemical_formula()})"
    if calc.check_state(atoms):
        raise DataError(f"{where}: its calculator holds the results of other atoms (one calculator shared by several images?); "
                        "give each image its own results, e.g. atoms.calc = SinglePointCalculator(atoms, energy=..., forces=...)")
    if "forces" in calc.results and np.shape(calc.results["forces"]) != (len(atoms), 3):
        raise DataError(f"{where}: forces of shape {np.shape(calc.results['forces'])}, expected ({len(atoms)}, 3)")
    return calc.results


def voigt_stress(stress: np.ndarray) -> np.ndarray:
    """(6,) Voigt stress (xx, yy, zz, yz, xz, xy) from ASE's (6,), (3, 3) or flattened (9,) form."""
    stress = np.asarray(stress, dtype=np.float64)
    if stress.size == 9:
        return stress.reshape(3, 3)[VOIGT]
    return stress.reshape(6)


class Split(NamedTuple):
    """A dataset's seeded parts: train (fit), validation (early stopping, model selection) and
    test (held out: never trained on)."""

    train: Dataset
    validation: Dataset
    test: Dataset


# seeded train/validation/test splits, by conformation or by whole molecule ----------------------------
def _cut_points(n: int, fractions: Sequence[float]) -> np.ndarray:
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ConfigError(f"split fractions {list(fractions)} must be non-negative and sum to 1")
    return np.round(np.cumsum(fractions)[:-1] * n).astype(int)


def _random_indices(frames: PerConformation, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(frames))
    return [np.sort(part) for part in np.split(order, _cut_points(len(frames), fractions))]


def _molecule_indices(frames: PerConformation, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    names = np.asarray(frames.molecules)
    if len(names) < len(fractions):
        raise ConfigError(f"cannot split {len(names)} molecules into {len(fractions)} parts by molecule")
    shuffled = names[np.random.default_rng(seed).permutation(len(names))]
    groups = np.split(shuffled, _cut_points(len(names), fractions))
    return [np.flatnonzero(np.isin(frames.molecule, group)) for group in groups]


def random_split(frames: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[Dataset]:
    """Split conformations at random (seeded) into parts of the given fractions."""
    return list(frames.split(fractions, "random", seed))


def molecule_split(frames: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> list[Dataset]:
    """Split whole molecules (seeded): no molecule has conformations in two parts.

    Fractions apply to the number of molecules, not conformations.
    """
    return list(frames.split(fractions, "molecule", seed))
