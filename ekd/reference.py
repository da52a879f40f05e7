"""Reference calculators: the quantum chemistry (or any ASE calculator) that labels data.

A reference is a plugin, registered through the ``ekd_register_references`` hook exactly like a
backend. :func:`compute_reference` runs one on every configuration of a dataset, in parallel
worker processes, resumably (finished chunks are kept in a work folder and skipped on restart),
and returns a :class:`~ekd.data.Dataset` with energies (eV) and, when asked, forces (eV/Å),
its ``level_of_theory`` and the reference's name, options and versions recorded. A
configuration whose calculation fails (an SCF that does not converge, a calculator that raises)
is recorded with its error and left out, with a message naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import numpy as np
import pydantic

from ekd.config import validate
from ekd.errors import ConfigError
from ekd.progress import progress_bar
from ekd.provenance import sha256_json, sha256_arrays

if TYPE_CHECKING:
    from ekd.data.frames import Dataset

__all__ = ["Reference", "ReferenceOptions", "ReferenceResult", "compute_reference", "get_reference", "is_periodic", "reference_calculator", "references"]


class ReferenceOptions(pydantic.BaseModel):
    """Base class of a reference's options: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclasses.dataclass(frozen=True)
class ReferenceResult:
    """One configuration's reference: energy (eV), forces (n, 3) eV/Å or None, stress (6,)
    eV/Å³ (periodic cells; ASE's sign and Voigt order) or None, and diagnostics (e.g. a
    coupled-cluster T1 norm) as plain numbers."""

    energy: float
    forces: np.ndarray | None = None
    diagnostics: dict = dataclasses.field(default_factory=dict)
    stress: np.ndarray | None = None


@runtime_checkable
class Reference(Protocol):
    """The contract of a reference calculator.

    Attributes:
        name: what users type (``ekd reference --calculator pyscf``).
        Options: a :class:`ReferenceOptions` subclass (method, basis, ...).

    A reference that computes periodic cells also sets ``periodic = True``: :meth:`compute` is then
    given ``cell`` (3, 3) Å and ``pbc`` (3,) for periodic configurations, and returns their stress
    with the forces. Periodic data given to one without it is refused before anything runs.
    """

    name: ClassVar[str]
    Options: ClassVar[type[ReferenceOptions]]

    def level(self, options: ReferenceOptions) -> str:
        """The level of theory these options compute, e.g. ``wB97X/6-31G*`` (recorded with the data)."""

    def compute(self, numbers: np.ndarray, positions: np.ndarray, options: ReferenceOptions, forces: bool) -> ReferenceResult:
        """Energy (and forces when ``forces``) of one configuration: numbers (n,), positions (n, 3) Å.

        Raise any exception when the calculation fails; the caller records it and moves on.
        """


def is_periodic(reference: Reference) -> bool:
    """Whether ``reference`` computes periodic cells (its optional ``periodic`` attribute)."""
    return bool(getattr(reference, "periodic", False))


def references() -> dict[str, Reference]:
    """Installed reference calculators by name."""
    from ekd.plugins import reference_registry

    return reference_registry()


def get_reference(name: str) -> Reference:
    """The reference called ``name``; a ConfigError naming the installed ones otherwise."""
    found = references()
    if name not in found:
        raise ConfigError(f"unknown reference calculator '{name}'; installed: {', '.join(sorted(found)) or 'none'}")
    return found[name]


def compute_reference(
    data: Dataset,
    calculator: str,
    options: dict | ReferenceOptions | None = None,
    work: str | os.PathLike | None = None,
    forces: bool = False,
    jobs: int | None = None,
    chunk: int = 8,
    show_progress: bool = True,
) -> Dataset:
    """Reference energies (eV) and, with ``forces``, forces (eV/Å) of every configuration, and
    stresses (eV/Å³) of the periodic ones (a reference that declares ``periodic``).

    Args:
        calculator: an installed reference's name (``pyscf``, ``ase``, ...).
        options: its options (validated by its ``Options`` before anything runs).
        work: folder of finished chunks (resumed when it holds them); default: a temporary one.
        jobs: worker processes (default: one per CPU core; each gets cores // jobs threads).
        chunk: configurations per unit of work (and per file in ``work``).
    Returns the configurations that succeeded, with ``metadata["reference"]`` (name, options,
    level, failures with their errors, CPU-seconds) and ``level_of_theory``.
    """
    reference = get_reference(calculator)
    options = options if isinstance(options, ReferenceOptions) else validate(reference.Options, options or {}, f"{calculator} options")
    level = reference.level(options)
    if data.periodic.any() and not is_periodic(reference):
        k = int(np.flatnonzero(data.periodic)[0])
        raise ConfigError(f"{data.metadata.get('source', 'data')}: configuration {k} is periodic, and reference calculator '{calculator}' "
                          "computes isolated molecules only (a reference declares periodic = True to be given cells)")
    with tempfile.TemporaryDirectory() if work is None else contextlib.nullcontext(Path(work)) as folder:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        plan = [np.arange(start, min(start + chunk, len(data))) for start in range(0, len(data), chunk)]
        digests = [sha256_json(calculator, options.model_dump(mode="json"), forces, sha256_arrays(data.subset(rows).without_forces())) for rows in plan]
        todo = [(k, rows) for k, rows in enumerate(plan) if not _finished(folder / f"chunk-{k:05d}.json", digests[k])]
        workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        configurations = lambda rows: [(int(i), data.numbers[data.atoms_of(i)], data.positions[data.atoms_of(i)], _cell(data, i)) for i in rows]  # noqa: E731
        tasks = [(calculator, options.model_dump(mode="json"), configurations(rows), forces, folder / f"chunk-{k:05d}.json", digests[k]) for k, rows in todo]
        with progress_bar(f"reference {calculator} ({level})", len(data), enabled=show_progress, unit="conf") as bar:
            bar.advance(len(data) - sum(len(rows) for _, rows in todo))
            if workers == 1:
                for task in tasks:
                    bar.update(advance=_run_chunk(task), info=level)
            else:
                threads = max(1, (os.cpu_count() or 1) // workers)
                context = multiprocessing.get_context("spawn")
                with context.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
                    for done in pool.imap_unordered(_run_chunk, tasks):
                        bar.update(advance=done, info=level)
                    pool.close()
                    pool.join()
        results = [json.loads((folder / f"chunk-{k:05d}.json").read_text()) for k in range(len(plan))]
    return _assemble(data, results, calculator, options, level, forces)


def _cell(data: Dataset, i: int) -> dict:
    """The keywords giving configuration ``i``'s cell and pbc to a reference (none for a molecule)."""
    return {"cell": data.cells[i], "pbc": data.periodic_axes[i]} if data.periodic[i] else {}


def _finished(path: Path, digest: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("hash") == digest


def _init_worker(threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _run_chunk(task) -> int:
    """Compute one chunk and write its JSON atomically; returns the number of configurations."""
    from ekd._io import atomic_path

    name, options, configurations, forces, path, digest = task  # only the chunk's atoms travel to a worker
    reference = get_reference(name)
    options = reference.Options(**options)
    entries = []
    for i, numbers, positions, cell in configurations:
        started = time.process_time()
        try:
            result = reference.compute(numbers, positions, options, forces, **cell)
            if not np.isfinite(result.energy) or (forces and (result.forces is None or not np.all(np.isfinite(result.forces)))):
                raise ValueError("non-finite energy or forces")
            if forces and cell and (result.stress is None or np.shape(result.stress) != (6,) or not np.all(np.isfinite(result.stress))):
                raise ValueError(f"no finite Voigt stress (6,) for a periodic cell (got {None if result.stress is None else np.shape(result.stress)})")
            entry = {"index": int(i), "energy": float(result.energy), "diagnostics": result.diagnostics}
            if forces:
                entry["forces"] = np.asarray(result.forces, dtype=float).tolist()
            if forces and cell:
                entry["stress"] = np.asarray(result.stress, dtype=float).tolist()
        except Exception as error:  # a failed calculation is recorded and skipped, not fatal
            entry = {"index": int(i), "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
            print(f"ekd reference: configuration {int(i)} failed ({entry['error']}); it is left out", file=sys.stderr)
        entry["cpu_seconds"] = time.process_time() - started
        entries.append(entry)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"hash": digest, "entries": entries}))
    return len(configurations)


def _assemble(data: Dataset, chunks: list[dict], calculator: str, options: ReferenceOptions, level: str, forces: bool) -> Dataset:
    entries = [e for c in chunks for e in c["entries"]]
    good = [e for e in entries if "error" not in e]
    failures = [{"index": e["index"], "molecule": str(data.molecule[e["index"]]), "error": e["error"]} for e in entries if "error" in e]
    labelled = data.subset([e["index"] for e in good]).without_forces()
    record = {
        "calculator": calculator,
        "options": options.model_dump(mode="json"),
        "level_of_theory": level,
        "forces": forces,
        "failures": failures,
        "cpu_seconds": round(sum(e["cpu_seconds"] for e in entries), 6),
        "diagnostics": [e["diagnostics"] for e in good] if any(e["diagnostics"] for e in good) else [],
    }
    periodic = forces and any("stress" in e for e in good)
    return dataclasses.replace(
        labelled,
        energy=np.array([e["energy"] for e in good], dtype=np.float64),
        forces=np.concatenate([np.asarray(e["forces"], dtype=np.float64).reshape(-1, 3) for e in good]) if forces and good else None,
        stress=np.array([e.get("stress", [np.nan] * 6) for e in good], dtype=np.float64) if periodic else None,
    ).with_metadata(level_of_theory=level, reference=record)


def reference_calculator(calculator: str, options: dict | ReferenceOptions | None = None):
    """An ASE calculator (energy eV, forces eV/Å; stress eV/Å³ for periodic cells, with a
    reference that declares ``periodic``) running a reference, e.g. to relax a geometry."""
    from ase.calculators.calculator import Calculator, all_changes

    reference = get_reference(calculator)
    options = options if isinstance(options, ReferenceOptions) else validate(reference.Options, options or {}, f"{calculator} options")

    class ReferenceCalculator(Calculator):
        implemented_properties = ["energy", "forces", "stress"] if is_periodic(reference) else ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            periodic = bool(self.atoms.pbc.any())
            if periodic and not is_periodic(reference):
                raise ConfigError(f"reference calculator '{calculator}' computes isolated molecules only, and these Atoms are periodic")
            cell = {"cell": self.atoms.cell.array, "pbc": self.atoms.pbc} if periodic else {}
            result = reference.compute(self.atoms.numbers, self.atoms.positions, options, True, **cell)
            self.results = {"energy": result.energy, "forces": result.forces}
            if periodic:
                self.results.update(stress=result.stress, free_energy=result.energy)

    return ReferenceCalculator()
