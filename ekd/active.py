"""Active learning: grow the training data where the teachers disagree (``ekd grow``).

Round ``r`` lives in ``OUT/round-<r>/`` and every step of it resumes:

1. an EKD run (:class:`ekd.Run`) on the data so far: teachers on the reference energies, labels,
   students, scored on the held-out set (``data.test_path``, or the file the data name) and, when
   ``evaluate.md`` is set, for MD stability; from round 1 on each model starts from its namesake
   of the round before (``warm_start``);
2. sampling: Langevin MD with the round's first student from random conformations of every
   molecule (``sampling/*.traj``); frames after a bond broke (the MD stability criterion) are
   discarded;
3. selection of ``per_round`` candidates by the teachers' force spread (``force_spread``), their
   energy spread (``energy_spread``) or at random (``random``, the control); the two spread rules
   take the highest-spread candidates that differ from every one already taken (sorted pair
   distances further apart than ``min_distance`` Å RMS), so that no near-copies are bought;
4. reference energies for the selected only, through the reference-calculator hook
   (:func:`ekd.reference.compute_reference`): a failed calculation is recorded and left out, a
   coupled-cluster T1 diagnostic above ``t1_limit`` is flagged. The data of round ``r + 1`` are
   those of round ``r`` and the new ones.

``OUT/grow.json`` has, per round: conformations trained on, held-out force MAE of the teacher
ensemble and the students (kcal/mol/Å), MD stability, reference CPU-seconds spent, failures and
flags; ``grow.md`` is the same as a table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pydantic

from ekd._io import atomic_path
from ekd.config import validate
from ekd.data import Dataset
from ekd.ensemble import Ensemble
from ekd.errors import ConfigError, DataError
from ekd.evaluate.md import MDSettings, bond_deviation, bonds, run_md
from ekd.graph import MIN_DISTANCE
from ekd.model import Model
from ekd.provenance import sha256_json, sha256_arrays, sha256_file
from ekd.report import HELD_OUT
from ekd.sampling.filters import descriptor, distinct, mean_per_conformation
from ekd.run import Run
from ekd.runconfig import RunConfig

__all__ = ["GrowSettings", "grow", "select"]

#: which MD frames are candidates (in the sampling's hash: candidates kept by other rules are redone)
_SAMPLING_RULES = f"finite, bonds within max_bond_deviation, no pair closer than {MIN_DISTANCE} Å"

Strategy = Literal["force_spread", "energy_spread", "random"]


class GrowSettings(pydantic.BaseModel):
    """How the data grow: rounds, sampling, selection and the reference that labels new data."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    rounds: int = pydantic.Field(3, ge=1, description="rounds of new data (the run of the last data is scored too)")
    per_round: int = pydantic.Field(50, ge=1, description="new reference calculations per round")
    select: Strategy = "force_spread"
    initial: int | None = pydantic.Field(200, ge=2, description="conformations of the data to start from (seeded); None: all")
    temperature_K: float = pydantic.Field(600.0, gt=0, description="sampling MD temperature")
    md_steps: int = pydantic.Field(400, ge=1, description="sampling MD steps per start (0.5 fs)")
    sample_every: int = pydantic.Field(20, ge=1, description="steps between sampled frames")
    starts_per_molecule: int = pydantic.Field(4, ge=1)
    min_distance: float = pydantic.Field(0.1, ge=0, description="Å; spread rules take no two candidates closer than this")
    reference: str | None = None  # calculator; None: the one that made the data (metadata["reference"])
    reference_options: dict | None = None  # its options; None: the data's
    t1_limit: float = pydantic.Field(0.02, gt=0, description="flag coupled-cluster results with a larger T1 diagnostic")
    seed: int = 0


def select(candidates: Dataset, scores: np.ndarray | None, count: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``count`` candidates: the highest ``scores`` first, skipping any within
    ``min_distance`` (Å, RMS of sorted pair distances) of one already taken; ``scores`` None:
    at random. Fewer are returned only when fewer are far enough apart."""
    if scores is None:
        return np.sort(rng.permutation(len(candidates))[:count])
    rows = [candidates.atoms_of(i) for i in range(len(candidates))]
    keys = [candidates.numbers[atoms].tobytes() for atoms in rows]
    descriptors = [descriptor(candidates.positions[atoms]) for atoms in rows]
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.sort(np.array(distinct(descriptors, order, min_distance, count, keys), dtype=int))


def sample(model: Model, data: Dataset, settings: GrowSettings, folder: Path, seed: int) -> Dataset:
    """MD frames from ``settings.starts_per_molecule`` random conformations of every molecule of
    ``data``, with ``model``; frames after a bond broke, or with two atoms closer than
    :data:`ekd.graph.MIN_DISTANCE` (data ekd refuses), are left out. Trajectories in ``folder``."""
    rng = np.random.default_rng(seed)
    md = MDSettings(steps=settings.md_steps, temperature_K=settings.temperature_K, check_every=settings.sample_every)
    folder.mkdir(parents=True, exist_ok=True)
    numbers, positions, molecules = [], [], []
    for name in data.molecules:
        rows = np.flatnonzero(data.molecule == name)
        for k, row in enumerate(rng.choice(rows, size=min(settings.starts_per_molecule, len(rows)), replace=False)):
            atoms = data.atoms_of(int(row))
            start_numbers, start = data.numbers[atoms], data.positions[atoms]
            path = folder / f"{name.replace('/', '_')}-{k}.traj"
            run_md(model, start_numbers, start, md.model_copy(update={"seed": int(rng.integers(2**31))}), path)
            pairs, lengths = bonds(start_numbers, start)
            for frame in _frames(path):
                if np.all(np.isfinite(frame)) and bond_deviation(frame, pairs, lengths) <= md.max_bond_deviation and _closest_pair(frame) >= MIN_DISTANCE:
                    numbers.append(start_numbers)
                    positions.append(frame)
                    molecules.append(name)
    if not numbers:
        raise DataError(f"{folder}: sampling gave no intact frame (every bond broke: a student this unstable cannot sample)")
    return Dataset.from_arrays(numbers, positions, molecules)


def _closest_pair(positions: np.ndarray) -> float:
    """Å between the two closest atoms of a molecule (inf for one atom)."""
    i, j = np.triu_indices(len(positions), 1)
    return float(np.min(np.linalg.norm(positions[i] - positions[j], axis=-1), initial=np.inf))


def _frames(path: Path) -> list[np.ndarray]:
    from ase.io import read

    return [atoms.positions.copy() for atoms in read(path, index=":")]


def _reference(data: Dataset, settings: GrowSettings) -> tuple[str, dict]:
    """The calculator and options that label new data: the settings', else the data's own."""
    made_by = data.metadata.get("reference") or {}
    calculator = settings.reference or made_by.get("calculator")
    if calculator is None:
        raise ConfigError(f"{data.metadata.get('source', 'the data')}: no record of the reference that made it; give one (ekd grow --reference NAME)")
    options = settings.reference_options if settings.reference_options is not None else (made_by.get("options", {}) if calculator == made_by.get("calculator") else {})
    return calculator, options


def _scores(candidates: Dataset, ensemble: Ensemble, strategy: Strategy) -> np.ndarray | None:
    """Per candidate: the teachers' mean per-atom force spread or energy spread (eV/Å, eV)."""
    if strategy == "random":
        return None
    prediction = ensemble.predict(candidates, forces=strategy == "force_spread")
    if strategy == "energy_spread":
        return prediction.energy_spread
    return mean_per_conformation(candidates, prediction.force_spread)


def _round_summary(run: Run, new: Dataset | None, selected: int, t1_limit: float) -> dict:
    report = run.report
    held_out = report.headline.get(HELD_OUT)
    students = [n for n, m in report.models.items() if m.role == "student"]
    record = (new.metadata.get("reference") or {}) if new is not None else {}
    t1 = [d.get("t1_diagnostic") for d in record.get("diagnostics", []) if d.get("t1_diagnostic") is not None]
    md = report.md_stability
    return {
        "conformations": len(run.data),
        "ensemble_force_mae": report.scores("teacher ensemble").force_mae,
        "student_force_mae": held_out.student_force_mae.mean if held_out else None,
        "student_force_mae_by_seed": {n: report.scores(n).force_mae for n in students},
        "md_fraction_stable": {n: md["models"][n]["fraction_stable"] for n in md["models"]} if md else None,
        "selected": selected,
        "new": 0 if new is None else len(new),
        "failed": len(record.get("failures", [])),
        "t1_above_limit": int(sum(v > t1_limit for v in t1)),
        "reference_cpu_seconds": record.get("cpu_seconds", 0.0),
    }


def grow(out: str | os.PathLike, config: RunConfig | None = None, settings: GrowSettings | dict | None = None,
         data: Dataset | None = None, show_progress: bool = True) -> dict:
    """Rounds of EKD runs, each adding ``per_round`` reference energies where the rule selects.

    Args:
        out: the output folder (resumed when it holds rounds of the same settings).
        config: the runs' settings (teachers, student, training; ``data.path`` is the start);
            ``evaluate.md`` (if set) scores each round's MD stability.
        settings: :class:`GrowSettings` (or their mapping).
        data: the starting data, if held in memory (default: ``config.data.path``).
    Returns the ``grow.json`` mapping: the settings and one summary per round.
    """
    out = Path(out)
    config = config if config is not None else RunConfig()
    if config.data.stream:
        raise ConfigError("ekd grow adds conformations to its data in memory; data.stream (--stream) does not apply")
    settings = settings if isinstance(settings, GrowSettings) else validate(GrowSettings, settings or {}, "grow")
    start = Run(out / "source", config, data, show_progress=False)  # reads the data, and the held-out file they name
    pool, config = start.data, start.config
    if start.held_out is None:
        raise ConfigError("ekd grow needs a held-out set with reference forces to score each round: --test FILE (data.test_path)")
    calculator, options = _reference(pool, settings)
    from ekd.reference import get_reference  # the calculator must exist before any round runs

    get_reference(calculator)
    rng = np.random.default_rng(settings.seed)
    if settings.initial is not None and settings.initial < len(pool):
        pool = pool.subset(np.sort(rng.permutation(len(pool))[: settings.initial]))
    current = pool.with_metadata(source=str(out / "round-0/data.h5"), reference={"calculator": calculator, "options": options})
    summary = {"settings": settings.model_dump(), "reference": {"calculator": calculator, "options": options}, "rounds": []}
    previous: Path | None = None
    for r in range(settings.rounds + 1):
        folder = out / f"round-{r}"
        round_config = config.model_copy(update={"warm_start": str(previous) if previous else None})
        run = Run(folder, round_config, current, show_progress=show_progress)
        run.run()
        new, selected = None, 0
        if r < settings.rounds:
            new, selected = _new_data(run, folder, settings, calculator, options, rng_seed=settings.seed * 1000 + r)
            current = Dataset.concatenate([run.data, new]).with_metadata(reference={"calculator": calculator, "options": options})
        summary["rounds"].append(_round_summary(run, new, selected, settings.t1_limit))
        _write(out, summary)
        previous = folder
    return summary


def _new_data(run: Run, folder: Path, settings: GrowSettings, calculator: str, options: dict, rng_seed: int) -> tuple[Dataset, int]:
    """Sample, select and label this round's new conformations (each step kept and resumed)."""
    from ekd.reference import compute_reference

    student = run.students[0]
    digest = sha256_json("sample", _SAMPLING_RULES, settings.model_dump(exclude={"rounds"}), sha256_file(student.path), sha256_arrays(run.data), rng_seed)
    candidates_path = folder / "candidates.h5"
    candidates = Dataset.read(candidates_path) if candidates_path.is_file() else None
    if candidates is None or candidates.metadata.get("hash") != digest:
        candidates = sample(student, run.data, settings, folder / "sampling", rng_seed).with_metadata(hash=digest)
        candidates.write(candidates_path)
    scores = _scores(candidates, run.teachers, settings.select)
    chosen = candidates.subset(select(candidates, scores, settings.per_round, settings.min_distance, np.random.default_rng(rng_seed)))
    print(f"ekd grow: {folder.name}: {len(candidates)} sampled, {len(chosen)} selected by {settings.select}", file=sys.stderr)
    new = compute_reference(chosen.with_metadata(source=str(candidates_path)), calculator, options, work=folder / "reference", show_progress=run.show_progress)
    flagged = [d for d in new.metadata["reference"]["diagnostics"] if d.get("t1_diagnostic", 0) > settings.t1_limit]
    if flagged:
        print(f"ekd grow: {folder.name}: {len(flagged)} new conformations have a T1 diagnostic above {settings.t1_limit} "
              "(single-reference coupled cluster is suspect there); they are kept and counted in grow.json", file=sys.stderr)
    return new, len(chosen)


def _write(out: Path, summary: dict) -> None:
    with atomic_path(out / "grow.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    lines = ["| round | conformations | ensemble force MAE | student force MAE | new | failed | T1 flagged | reference CPU-s |", "|---|---|---|---|---|---|---|---|"]
    for r, s in enumerate(summary["rounds"]):
        student = "–" if s["student_force_mae"] is None else f"{s['student_force_mae']:.2f}"
        lines.append(f"| {r} | {s['conformations']} | {s['ensemble_force_mae']:.2f} | {student} | {s['new']} | {s['failed']} | {s['t1_above_limit']} | "
                     f"{s['reference_cpu_seconds']:.0f} |")
    with atomic_path(out / "grow.md") as tmp:
        tmp.write_text(f"# ekd grow ({summary['settings']['select']})\n\nHeld-out force MAE in kcal/mol/Å.\n\n" + "\n".join(lines) + "\n")
