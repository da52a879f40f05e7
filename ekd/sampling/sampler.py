"""``ekd sample``: geometries for a student made by the teachers themselves, from seed molecules.

For each seed (relaxed with the teachers first): Langevin MD over a temperature ladder, random
rattles and thermal displacements along the softest normal modes; for each pair of seeds (a
seed with itself included): the two placed at a ladder of closest contacts, from touching to
apart, in random orientations, and short MD from each placement. Every geometry is labelled
with the teachers' mean energy and forces and their force spread as it is made; geometries with
overlapping atoms, a broken or new covalent bond, or within ``distinct_rms`` of one kept are
left out, as are those near the ``exclude`` files (a test set); the spread gate drops (or
down-weights) those where the teachers disagree.

Layout of ``OUT``: ``seeds.h5`` (the relaxed seeds), ``parts/<system>.h5`` (one per seed or
pair, each kept once finished: a killed sampling resumes there), ``sampled.h5`` (the dataset),
``sample.json`` (settings, provenance and counts) and ``spread.png``. Ranks (torchrun) take the
systems in turn.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pydantic

from ekd import distributed
from ekd._io import atomic_path
from ekd.config import validate
from ekd.data import Dataset, formula
from ekd.ensemble import Ensemble, load_predictor
from ekd.errors import ConfigError, DataError
from ekd.graph import MIN_DISTANCE
from ekd.model import energy_level
from ekd.progress import progress_bar
from ekd.provenance import package_versions, sha256_arrays, sha256_json, sha256_weights
from ekd.sampling.dynamics import Frames, labelled, langevin
from ekd.sampling.filters import descriptor, distinct, intact, mean_per_conformation, nearest_rms
from ekd.sampling.geometry import hessian, placed_pair, rattled, soft_mode_displacements
from ekd.sampling.seeds import Seed, read_smiles_file, seeds_from_file, seeds_from_smiles

__all__ = ["SampleSettings", "sample"]

#: what a part's geometries depend on besides the settings (changing it redoes the parts)
_FORMAT = "ekd-sample-1"
_APART = 10.0  # Å: the closest contact of a pair's reference geometry, whose bonds must stay


class SampleSettings(pydantic.BaseModel):
    """How the teachers make geometries. Temperatures in K, times in fs, lengths in Å, spreads in eV/Å."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    relax: bool = pydantic.Field(True, description="relax each seed with the teachers first (MD and modes start at their minimum)")
    temperatures_K: tuple[float, ...] = pydantic.Field((100.0, 300.0, 600.0), min_length=1, description="the MD temperature ladder of each seed")
    replicas: int = pydantic.Field(4, ge=0, description="MD runs per seed and temperature")
    md_steps: int = pydantic.Field(200, ge=0, description="steps of each seed's MD runs")
    record_every: int = pydantic.Field(10, ge=1, description="MD steps between kept geometries")
    timestep_fs: float = pydantic.Field(0.5, gt=0)
    friction_per_fs: float = pydantic.Field(0.01, gt=0)
    rattles: int = pydantic.Field(16, ge=0, description="random rattles per seed")
    rattle_sigma: float = pydantic.Field(0.05, gt=0, description="Å, per coordinate")
    soft_mode_samples: int = pydantic.Field(16, ge=0, description="thermal displacements along the softest modes per seed (at the top temperature)")
    soft_modes: int = pydantic.Field(6, ge=1, description="how many of the softest vibrations are mixed")
    pairs: bool = pydantic.Field(True, description="sample every pair of seeds (each with itself too)")
    contacts: tuple[float, ...] = pydantic.Field((1.7, 1.9, 2.2, 2.6, 3.0, 3.6, 4.5, 6.0), min_length=1,
                                                 description="Å: closest intermolecular distances of the pair placements")
    orientations: int = pydantic.Field(1, ge=1, description="random orientations per pair and contact")
    pair_md_steps: int = pydantic.Field(80, ge=0, description="MD steps from each pair placement")
    pair_temperature_K: float = pydantic.Field(300.0, gt=0)
    min_distance: float = pydantic.Field(MIN_DISTANCE, gt=0, description="Å; geometries with two atoms closer are left out")
    max_bond_deviation: float = pydantic.Field(0.5, gt=0, description="Å; a seed bond changed by more is broken")
    distinct_rms: float = pydantic.Field(0.02, ge=0, description="Å RMS of sorted pair distances: a geometry closer to one kept is a near-copy")
    max_force_spread: float | Literal["auto"] | None = pydantic.Field(
        "auto", description="eV/Å: the teachers' mean per-atom force spread above which a geometry is outside their competence; "
                            "auto: spread_factor × the median spread at the relaxed seeds (where they are at home); None: no gate")
    spread_factor: float = pydantic.Field(2.0, gt=1, description="the auto gate's multiple of the seeds' median spread")
    gated: Literal["drop", "weight"] = pydantic.Field("drop", description="what the gate does: drop those geometries or keep them at gated_weight")
    gated_weight: float = pydantic.Field(0.1, gt=0, le=1, description="loss weight of gated geometries (gated: weight)")
    exclude: tuple[str, ...] = pydantic.Field((), description="files (e.g. your test set) whose geometries are kept out: any sampled one within exclude_rms of them is left out")
    exclude_rms: float = pydantic.Field(0.1, gt=0, description="Å RMS of sorted interatomic distances (conservative: RMSD after alignment is never smaller)")
    seed: int = 0

    def sampling(self, pair: bool) -> dict:
        """The settings that decide the geometries of a seed alone or of a pair (not the gate,
        which is applied at the end)."""
        alone = {"temperatures_K", "replicas", "md_steps", "rattles", "rattle_sigma", "soft_mode_samples", "soft_modes"}
        pairs = {"contacts", "orientations", "pair_md_steps", "pair_temperature_K"}
        gate = {"max_force_spread", "spread_factor", "gated", "gated_weight", "pairs", "exclude", "exclude_rms"}
        return self.model_dump(exclude=gate | (alone if pair else pairs))


@dataclasses.dataclass(frozen=True)
class _System:
    """One unit of work: a seed alone, or a pair of seeds."""

    seeds: tuple[Seed, ...]

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.seeds)

    @property
    def numbers(self) -> np.ndarray:
        return np.concatenate([s.numbers for s in self.seeds])


def sample(out: str | os.PathLike, teachers: Ensemble | str | os.PathLike, smiles: Sequence[str] = (), smiles_file: str | os.PathLike | None = None,
           structures: Sequence[str | os.PathLike] = (), settings: SampleSettings | dict | None = None, show_progress: bool = True) -> Dataset:
    """Sample and label geometries for the seeds with ``teachers``; returns the dataset saved in ``out/sampled.h5``.

    Args:
        out: the output folder (a killed sampling resumes there; parts made with other settings,
            seeds or teachers are redone).
        teachers: an :class:`Ensemble`, or where one is (``ani-pretrained:PATH``, a run's
            ``teachers`` folder).
        smiles: seed molecules as ``SMILES`` or ``SMILES name`` (needs RDKit).
        smiles_file: a file of them, one per line.
        structures: structure files (any format ekd reads): the first conformation of each molecule.
        settings: :class:`SampleSettings` (or their mapping).
    Returns positions (Å), the teachers' mean energies (eV) and forces (eV/Å), their force spread
    (``atom_data['force_spread']``, eV/Å) and, with ``gated: weight``, ``atom_data['weight']``.
    """
    out = Path(out)
    settings = settings if isinstance(settings, SampleSettings) else validate(SampleSettings, settings or {}, "sample")
    entries = list(smiles) + (read_smiles_file(smiles_file) if smiles_file is not None else [])
    seeds = (seeds_from_smiles(entries, settings.seed) if entries else []) + [s for path in structures for s in seeds_from_file(path)]
    if not seeds:
        raise ConfigError("ekd sample: no seed molecules (give SMILES, a SMILES file or a structure file)")
    for path in settings.exclude:  # (read at the end: checked before any work)
        if not Path(path).is_file():
            raise ConfigError(f"sample.exclude: {path} does not exist (a file whose geometries are kept out of the sample)")
    ensemble = teachers if isinstance(teachers, Ensemble) else load_predictor(teachers)
    if not isinstance(ensemble, Ensemble):
        raise ConfigError(f"{teachers}: one model, not an ensemble (sampling needs the teachers' spread)")
    missing = sorted({int(z) for s in seeds for z in s.numbers} - set(ensemble.species))
    if missing:
        offenders = [s.name for s in seeds if set(s.numbers.tolist()) & set(missing)]
        raise ConfigError(f"seeds {', '.join(offenders)}: elements {formula(np.array(missing))} are not among the teachers' ({formula(np.array(ensemble.species))})")
    teacher_record = [{"name": n, "backend": m.backend.name, "weights_sha256": sha256_weights(m.module)} for n, m in zip(ensemble.names, ensemble.models)]
    started = time.perf_counter()
    seeds = _relaxed(out, seeds, ensemble, settings, teacher_record)
    systems = [_System((s,)) for s in seeds]
    if settings.pairs:
        systems += [_System(pair) for pair in itertools.combinations_with_replacement(seeds, 2)]
    parts = _sample_systems(out, systems, ensemble, settings, teacher_record, show_progress)
    if not distributed.is_main():
        distributed.barrier()
        return Dataset.read(out / "sampled.h5")
    data, summary = _assemble(out, parts, seeds, ensemble, settings, teacher_record, time.perf_counter() - started)
    distributed.barrier()
    print(_describe(summary), file=sys.stderr)
    return data


def _relaxed(out: Path, seeds: list[Seed], ensemble: Ensemble, settings: SampleSettings, teachers: list[dict]) -> list[Seed]:
    """The seeds at the teachers' minimum (BFGS to 0.01 eV/Å, at most 500 steps), kept in ``seeds.h5``."""
    if not settings.relax:
        return seeds
    path = out / "seeds.h5"
    digest = sha256_json(_FORMAT, "relax", teachers, [(s.name, s.numbers.tolist(), s.positions.tolist()) for s in seeds])
    if distributed.is_main() and not (path.is_file() and Dataset.read(path).metadata.get("hash") == digest):
        from ase import Atoms
        from ase.optimize import BFGS

        relaxed = []
        for s in seeds:
            atoms = Atoms(numbers=s.numbers, positions=s.positions)
            atoms.calc = ensemble.calculator()
            BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
            relaxed.append(atoms.positions.copy())
        Dataset.from_arrays([s.numbers for s in seeds], relaxed, [s.name for s in seeds], metadata={"hash": digest}).write(path)
    distributed.barrier()
    frames = Dataset.read(path)
    return [dataclasses.replace(s, positions=frames.positions[frames.atoms_of(k)].copy()) for k, s in enumerate(seeds)]


def _part_path(out: Path, system: _System) -> Path:
    return out / "parts" / (system.name.replace("/", "_") + ".h5")


def _sample_systems(out: Path, systems: list[_System], ensemble: Ensemble, settings: SampleSettings, teachers: list[dict],
                    show_progress: bool) -> list[Path]:
    """Each system's part file, made by this rank for its share (systems r, r + W, ...) unless
    already there with the same inputs; every rank returns all the paths once all are made."""
    digests = {s.name: sha256_json(_FORMAT, settings.sampling(len(s.seeds) > 1), teachers, [(x.name, x.numbers.tolist(), x.positions.tolist()) for x in s.seeds])
               for s in systems}
    mine = systems[distributed.rank()::distributed.world()]
    todo = [s for s in mine if not _finished(_part_path(out, s), digests[s.name])]
    with progress_bar("sampling", len(mine), show_progress and distributed.is_main(), unit="system") as bar:
        bar.advance(len(mine) - len(todo))
        for system in todo:
            bar.update(0, system.name)
            started, rng = time.perf_counter(), np.random.default_rng([settings.seed, zlib.crc32(system.name.encode())])
            frames, counts = _filtered(system, _candidates(system, ensemble, settings, rng), settings, rng)
            counts["seconds"] = round(time.perf_counter() - started, 2)
            _write_part(_part_path(out, system), system, frames, {"hash": digests[system.name], "counts": counts})
            bar.update(1, system.name)
    distributed.barrier()
    return [_part_path(out, s) for s in systems]


def _write_part(path: Path, system: _System, frames: Frames, record: dict) -> None:
    """The system's kept geometries (``path``), or, when every one was filtered out, its record
    alone (``path`` with ``.json``), so that a resume skips it too."""
    empty = path.with_suffix(".json")
    for stale in (path, empty):
        stale.unlink(missing_ok=True)
    if not len(frames):
        with atomic_path(empty) as tmp:
            tmp.write_text(json.dumps(record))
        return
    k = len(frames)
    part = Dataset.from_arrays([system.numbers] * k, list(frames.positions), [system.name] * k, energy=frames.energy,
                               forces=list(frames.forces), metadata=record)
    part.with_forces(part.forces, force_spread=frames.force_spread.reshape(-1)).write(path)


def _record(path: Path) -> dict | None:
    """The hash and counts of a finished part, or None."""
    if path.is_file():
        return Dataset.read(path).metadata
    empty = path.with_suffix(".json")
    return json.loads(empty.read_text()) if empty.is_file() else None


def _finished(path: Path, digest: str) -> bool:
    return (_record(path) or {}).get("hash") == digest


def _candidates(system: _System, ensemble: Ensemble, settings: SampleSettings, rng: np.random.Generator) -> dict[str, Frames]:
    """The system's labelled geometries by how they were made, before any filter."""
    numbers = system.numbers
    if len(system.seeds) == 1:
        start = system.seeds[0].positions
        temperatures = np.repeat(settings.temperatures_K, settings.replicas)
        made = {"seed": labelled(ensemble, numbers, [start])}
        if len(temperatures) and settings.md_steps:
            made["md"] = langevin(ensemble, numbers, np.repeat(start[None], len(temperatures), 0), temperatures, settings.md_steps,
                                  settings.record_every, rng, settings.timestep_fs, settings.friction_per_fs)
        made["rattle"] = labelled(ensemble, numbers, rattled(start, settings.rattle_sigma, settings.rattles, rng))
        if settings.soft_mode_samples and len(numbers) > 1:
            modes = soft_mode_displacements(numbers, start, hessian(ensemble, numbers, start), settings.soft_modes, settings.soft_mode_samples,
                                            max(settings.temperatures_K), rng)
            made["soft mode"] = labelled(ensemble, numbers, modes)
        return made
    first, second = (s.positions for s in system.seeds)
    placements = [placed_pair(first, second, contact, rng) for contact in settings.contacts for _ in range(settings.orientations)]
    made = {"pair": labelled(ensemble, numbers, placements)}
    if settings.pair_md_steps:
        made["pair md"] = langevin(ensemble, numbers, np.array(placements), np.full(len(placements), settings.pair_temperature_K),
                                   settings.pair_md_steps, settings.record_every, rng, settings.timestep_fs, settings.friction_per_fs)
    return made


def _filtered(system: _System, made: dict[str, Frames], settings: SampleSettings, rng: np.random.Generator) -> tuple[Frames, dict]:
    """The geometries that pass every filter (near-copies judged in random order), and the counts."""
    numbers = system.numbers
    reference = system.seeds[0].positions if len(system.seeds) == 1 else placed_pair(*(s.positions for s in system.seeds), _APART, rng)
    counts = {"made": {kind: len(frames) for kind, frames in made.items()}, "overlap": 0, "broken": 0, "new bond": 0}
    everything = Frames.join(list(made.values()))
    keep = []
    for row, positions in enumerate(everything.positions):
        verdict = intact(numbers, reference, positions, settings.min_distance, settings.max_bond_deviation)
        if verdict is None and not np.all(np.isfinite(everything.forces[row])):
            verdict = "broken"  # (the teachers themselves failed there)
        if verdict is None:
            keep.append(row)
        else:
            counts[verdict] += 1
    kept = everything.take(np.array(keep, dtype=int))
    rows = distinct([descriptor(p) for p in kept.positions], rng.permutation(len(kept)), settings.distinct_rms) if len(kept) else []
    counts["near copies"] = len(kept) - len(rows)
    counts["kept"] = len(rows)
    return kept.take(np.sort(np.array(rows, dtype=int))), counts


def _assemble(out: Path, parts: list[Path], seeds: list[Seed], ensemble: Ensemble, settings: SampleSettings, teachers: list[dict],
              seconds: float) -> tuple[Dataset, dict]:
    """The sampled dataset: the parts joined, the spread gate applied, provenance recorded."""
    found, counts = [], {}
    for path in parts:
        part = Dataset.read(path) if path.is_file() else None
        counts[path.stem] = (part.metadata if part is not None else _record(path))["counts"]
        found += [part] if part is not None else []
    if not found:
        raise DataError(f"{out}: sampling kept no geometry (every one overlapped, broke a bond or was a near-copy: see sample.json)")
    data = Dataset.concatenate(found)
    excluded = _near(data, settings)
    data = data.subset(np.flatnonzero(~excluded))
    if not len(data):
        raise DataError(f"{out}: every sampled geometry is within {settings.exclude_rms} Å RMS of the exclude files")
    spread = mean_per_conformation(data, data.atom_data["force_spread"])
    threshold = _gate(settings, seeds, ensemble)
    above = spread > threshold if threshold is not None else np.zeros(len(data), bool)
    if settings.gated == "drop":
        data = data.subset(np.flatnonzero(~above))
    else:
        data = data.with_forces(data.forces, weight=np.repeat(np.where(above, settings.gated_weight, 1.0), data.sizes))
    if not len(data):
        raise DataError(f"{out}: the teachers' force spread is above the gate, {threshold:.3g} eV/Å, on every sampled geometry (sample.max_force_spread)")
    summary = {
        "settings": settings.model_dump(),
        "seeds": [{"name": s.name, "smiles": s.smiles, "formula": formula(s.numbers), "positions_sha256": sha256_json(s.positions.tolist())} for s in seeds],
        "teachers": teachers,
        "level_of_theory": energy_level(ensemble.models),
        "software": package_versions(("rdkit",)),
        "systems": counts,
        "sampled": int(len(above)),
        "excluded": int(excluded.sum()),
        "exclude": {"files": list(settings.exclude), "rms_A": settings.exclude_rms},
        "gated": int(above.sum()),
        "gated_share": float(above.mean()),
        "gate": {"max_force_spread_eV_per_A": threshold, "rule": settings.max_force_spread, "action": settings.gated},
        "conformations": len(data),
        "seconds": round(seconds, 1),
        "sampling_seconds": round(sum(c.get("seconds", 0.0) for c in counts.values()), 1),
    }
    data = data.with_metadata(source=str(out / "sampled.h5"), level_of_theory=summary["level_of_theory"], energy_labels="teachers",
                              sampled={k: summary[k] for k in ("settings", "seeds", "teachers", "software", "gate", "gated", "sampled")})
    data = dataclasses.replace(data, metadata={k: v for k, v in data.metadata.items() if k not in ("hash", "counts")})
    data.write(out / "sampled.h5")
    summary["sha256"] = sha256_arrays(data)
    with atomic_path(out / "sample.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    _plot_spread(out / "spread.png", spread, threshold)
    return data, summary


def _near(data: Dataset, settings: SampleSettings) -> np.ndarray:
    """(N,) bool: geometries within ``exclude_rms`` of one in the ``exclude`` files."""
    if not settings.exclude:
        return np.zeros(len(data), bool)
    return nearest_rms(data, Dataset.concatenate([Dataset.read(p) for p in settings.exclude])) <= settings.exclude_rms


def _gate(settings: SampleSettings, seeds: list[Seed], ensemble: Ensemble) -> float | None:
    """The spread gate in eV/Å: as set, or ``spread_factor`` × the median of the teachers' mean
    per-atom force spread at the (relaxed) seeds."""
    if settings.max_force_spread != "auto":
        return settings.max_force_spread
    at_seeds = [labelled(ensemble, s.numbers, [s.positions]).force_spread.mean() for s in seeds]
    return float(settings.spread_factor * np.median(at_seeds))


def _plot_spread(path: Path, spread: np.ndarray, threshold: float | None) -> None:
    """Histogram of the teachers' force spread per sampled geometry, with the gate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2))
    bins = np.logspace(np.log10(max(spread.min(), 1e-4)), np.log10(max(spread.max(), 2e-4)), 50)
    axes.hist(spread, bins=bins, color="tab:blue")
    axes.set_xscale("log")
    if threshold is not None:
        axes.axvline(threshold, color="tab:red", label=f"gate {threshold:.3g} eV/Å")
        axes.legend()
    axes.set_xlabel("teachers' mean per-atom force spread (eV/Å)")
    axes.set_ylabel("geometries")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def _describe(summary: dict) -> str:
    made = sum(sum(c["made"].values()) for c in summary["systems"].values())
    removed = {k: sum(c[k] for c in summary["systems"].values()) for k in ("overlap", "broken", "new bond", "near copies")}
    removed["near the exclude files"] = summary["excluded"]
    action = "dropped" if summary["gate"]["action"] == "drop" else "down-weighted"
    systems = len(summary["systems"])
    return (f"ekd sample: {systems} system{'s' if systems != 1 else ''}, {made} geometries made; left out: "
            + ", ".join(f"{v} {k}" for k, v in removed.items())
            + f"; {summary['gated']} ({100 * summary['gated_share']:.1f} %) {action} by the spread gate; "
            f"{summary['conformations']} kept; {summary['seconds']:.0f} s (the systems took {summary['sampling_seconds']:.0f} s to sample)")
