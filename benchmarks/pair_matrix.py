"""Every teacher → student pair at ekd's defaults, with the baseline and the force-trained limit.

For each pair of {ani, mace, nequip} (and the mixed ensemble ``ani:2,mace:1,nequip:1`` → ani), and
HIP-NN's pairs (hippynn → hippynn, ani → hippynn, hippynn → ani, hippynn → mace and the mixed
``ani:2,hippynn:2`` → hippynn),
runs ``ekd run --teacher T --student S --baseline --eval S66x8`` at the defaults in its own
folder, and once per student architecture trains the limit EKD approaches: the same architecture
and budget on the reference forces (3 seeds). Resumable: finished stages are skipped, and pairs
already in the JSON are not rerun. Prints a table (teacher ensemble, student, baseline,
student/baseline with the spread verdict, the share of the baseline→limit gap the student closes,
COMP6 S66x8, wall time) and writes ``benchmarks/results/pair_matrix.json`` after every pair,
with the model-minutes per stage. Hours on 2 CPU cores: run it in the background.

``--data embedded:metals`` runs the pairs on ekd's periodic set instead (no S66x8 and no limit; the JSON adds
the errors in meV/atom, meV/Å and GPa and the materials checks against EMT: lattice constant,
bulk modulus, vacancy and surface energies of the students and baselines). ``--seed-only-teachers``
trains teachers that differ by seed only instead of by each backend's diversity recipe.

    .venv/bin/python benchmarks/pair_matrix.py [--work build/pair-matrix] [--pairs ani-mace ...] [--epochs N]
    .venv/bin/python benchmarks/pair_matrix.py --data embedded:metals --pairs ani-ani ani-mace \
        --work build/pair-matrix-metals --out benchmarks/results/pair_matrix_metals.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

import ekd
from ekd.report import HELD_OUT, PERIODIC_METRICS, materials_summary, summary_table

ROOT = Path(__file__).resolve().parents[1]
S66X8 = ROOT.parent / "shared/data/comp6/s66x8_wb97x6-31gd.h5"
BACKENDS = ("ani", "mace", "nequip")
HIPNN_PAIRS = (("hippynn", "hippynn"), ("ani", "hippynn"), ("hippynn", "ani"), ("hippynn", "mace"))  # HIP-NN, the EKD paper's architecture
PAIRS = ({f"{t}-{s}": (t, s) for t in BACKENDS for s in BACKENDS} | {"mixed-ani": ("ani:2,mace:1,nequip:1", "ani")}
         | {f"{t}-{s}": (t, s) for t, s in HIPNN_PAIRS} | {"mixed-hippynn": ("ani:2,hippynn:2", "hippynn")})


def limit(student: str, work: Path, config: ekd.RunConfig) -> list[float]:
    """Held-out force MAE (kcal/mol/Å) of the student architecture trained like a student, on
    the same split, but on the reference forces instead of the teachers' (one per seed)."""
    from ekd.evaluate import evaluate
    from ekd.parallel import run_jobs
    from ekd.pipeline import student_jobs

    run = ekd.Run(work / f"limit-{student}", config, show_progress=False)
    train, validation, test = run.split  # with the reference forces
    jobs = student_jobs(run.directory, config, train, validation, {"energy_labels": "reference", "forces": "reference"})
    run_jobs(jobs, config.jobs, False, f"limit {student}")
    return [evaluate(ekd.load(job.stage.directory / "model.pt"), {"test": test})["test"]["force_mae"] for job in jobs]


def stage_minutes(report: ekd.Report) -> dict[str, float]:
    """Model-minutes per stage kind (each training's own seconds, summed)."""
    kinds: dict[str, float] = {}
    for stage, seconds in report.stage_seconds.items():
        kind = stage.split("/")[0]
        kinds[kind] = kinds.get(kind, 0.0) + (seconds or 0.0) / 60
    return {k: round(v, 1) for k, v in kinds.items()}


def share_trainings(work: Path, name: str, results: dict, role: str, **settings) -> str | None:
    """Copy the finished ``role`` trainings ("teachers", or "baselines") of an earlier pair with
    the same teacher spec (or student backend) and the same ``settings`` (result fields) into
    this pair's run, which finds their stages done where their inputs are the same (a teacher
    depends only on the member and the data, a baseline only on the student backend and the
    energies); the name of that pair, whose wall time for them this pair's stands for."""
    field, value = ("teachers", PAIRS[name][0]) if role == "teachers" else ("student", PAIRS[name][1])
    for other, row in results.items():
        same = row[field] == value and all(row.get(key) == wanted for key, wanted in settings.items())
        if same and row.get(f"{role}_from") is None and (work / other / role).is_dir():
            if not (work / name / role).exists():
                shutil.copytree(work / other / role, work / name / role)
            return other
    return None


def reused(work: Path, name: str, other: str | None, role: str) -> str | None:
    """``other`` if this pair's ``role`` stages are the copies of its (same hashes: not retrained), else None."""
    hashes = lambda pair: {p.parent.name: json.loads(p.read_text())["hash"] for p in (work / pair / role).glob("*/stage.json")}  # noqa: E731
    return other if other is not None and hashes(name) == hashes(other) else None


def timed_stages(run: ekd.Run) -> tuple[ekd.Report, dict[str, float]]:
    """Run every stage; the report and each stage's wall seconds."""
    walls, report = {}, None
    for stage, call in (("teach", run.teach), ("label", run.label), ("students and baselines", run.train_students), ("evaluate", run.evaluate)):
        started = time.perf_counter()
        report = call()
        walls[stage] = round(time.perf_counter() - started, 1)
    return report, walls


def periodic_scores(report: ekd.Report) -> dict:
    """Held-out errors in materials units (meV/atom, meV/Å, GPa), mean over seeds per role."""
    scores = {}
    for role in ("teacher ensemble", "student", "baseline"):
        rows = [m.datasets[HELD_OUT] for n, m in report.models.items() if n.startswith(role) and HELD_OUT in m.datasets]
        scores[role] = {key: float(np.mean([getattr(r, key) for r in rows])) for key in PERIODIC_METRICS if rows and getattr(rows[0], key) is not None}
    return scores


def limit_cell(row: dict) -> str:
    return f"{row['limit_force_mae']['mean']:.2f}" if row.get("limit_force_mae") else "-"


def markdown_table(results: dict) -> str:
    """The measured pairs as the docs show them (force MAE kcal/mol/Å, minutes)."""
    lines = ["| teachers → student | teacher ensemble | student | baseline | student/baseline | force-trained limit | gap closed | S66x8 student/baseline | wall min (teach, label, students+baselines, report) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        s, b, w = r["student_force_mae"], r["baseline_force_mae"], r["wall_seconds_per_stage"]
        verdict = " (> spread)" if r["difference_exceeds_spread"] else " (within spread)"
        gap = f"{100 * r['gap_closed']:.0f} %" if r["gap_closed"] is not None else "-"
        s66 = f"{r['s66x8_student_over_baseline']:.2f}" if r["s66x8_student_over_baseline"] else "-"
        shared = f"; teachers of {r['teachers_from']}" if r["teachers_from"] else ""
        shared += f"; baselines of {r['baselines_from']}" if r.get("baselines_from") else ""
        shared += "; resumed: the rest of an interrupted run only" if r["resumed"] else ""
        stages = ", ".join(f"{w[k] / 60:.1f}" for k in ("teach", "label", "students and baselines", "evaluate"))
        lines.append(f"| {r['teachers']} → {r['student']} | {r['teacher_ensemble_force_mae']:.2f} | {s['mean']:.2f} ± {s['std']:.2f} | "
                     f"{b['mean']:.2f} ± {b['std']:.2f} | **{r['student_over_baseline']:.2f}**{verdict} | {limit_cell(r)} | {gap} | "
                     f"{s66} | {sum(w.values()) / 60:.1f} ({stages}{shared}) |")
    return "\n".join(lines)


def materials_markdown(results: dict) -> str:
    """The periodic pairs' errors in materials units and their materials checks (empty for molecules)."""
    lines = []
    for r in results.values():
        if not r.get("materials"):
            continue
        p = r["periodic_scores"]
        cell = lambda role: " / ".join(f"{p[role][k]:.{d}f}" if k in p[role] else "-" for k, d in zip(PERIODIC_METRICS, (1, 0, 2)))  # noqa: E731
        lines += ["", f"**{r['teachers']} → {r['student']}** (meV/atom / meV/Å / GPa): ensemble {cell('teacher ensemble')}, "
                  f"student {cell('student')}, baseline {cell('baseline')}", "", *summary_table(r["materials"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build/pair-matrix")
    parser.add_argument("--pairs", nargs="*", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--epochs", type=int, help="bound every model (a quick check; the matrix runs at the defaults)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pair_matrix.json")
    parser.add_argument("--redo", action="store_true", help="rerun pairs already in --out (finished stages are still reused)")
    parser.add_argument("--markdown", action="store_true", help="only print the measured pairs as a Markdown table (for the docs)")
    parser.add_argument("--data", help="dataset of every pair (default: the embedded molecules, scored on S66x8 too), e.g. embedded:metals")
    parser.add_argument("--stress-weight", type=float, help="the students' stress term (periodic data; what ekd run --stress-weight sets)")
    parser.add_argument("--student-epochs", type=int, help="the students' epoch bound (default: the students' own, ekd.runconfig.STUDENT_TRAIN)")
    parser.add_argument("--seed-only-teachers", action="store_true", help="teachers that differ by seed only (teachers.variations: {}), not by each backend's recipe")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for row in results.values():
        row.setdefault("seed_only_teachers", False)  # (measured before the option existed)
    if args.markdown:
        print(markdown_table(results))
        print(materials_markdown(results))
        return
    limits: dict[str, list[float]] = {}
    for name in args.pairs:
        if name in results and results[name]["epochs_bound"] == args.epochs and not args.redo:
            continue  # measured: a rerun would time only the evaluation
        teacher, student = PAIRS[name]
        resumed = (args.work / name).is_dir()
        teachers_from = share_trainings(args.work, name, results, "teachers", epochs_bound=args.epochs, seed_only_teachers=args.seed_only_teachers)
        baselines_from = share_trainings(args.work, name, results, "baselines", epochs_bound=args.epochs)
        overrides = {"teachers.spec": teacher, "student.backend": student, "student.baseline": True, "data.path": args.data,
                     "evaluate.files": [str(S66X8)] if S66X8.is_file() and args.data is None else [], "epochs": args.epochs,
                     "student.train.stress_weight": args.stress_weight, "student.train.epochs": args.student_epochs,
                     **({"teachers.variations": {}} if args.seed_only_teachers else {})}
        config = ekd.RunConfig.load(None, overrides)
        report, walls = timed_stages(ekd.Run(args.work / name, config, show_progress=False))
        teachers_from = reused(args.work, name, teachers_from, "teachers")
        baselines_from = reused(args.work, name, baselines_from, "baselines")
        if teachers_from:
            walls["teach"] = results[teachers_from]["wall_seconds_per_stage"]["teach"]
        if student not in limits and args.data is None:  # the limit is measured on the molecules only (hours on periodic data)
            limits[student] = limit(student, args.work, config)
        held_out = report.held_out
        baseline, limit_mae = held_out.baseline_force_mae.mean, float(np.mean(limits[student])) if student in limits else None
        s66 = report.headline.get(S66X8.stem)
        results[name] = {
            "teachers": teacher,
            "student": student,
            "size": config.resolved_size(),
            "teacher_ensemble_force_mae": report.scores("teacher ensemble").force_mae,
            "student_force_mae": held_out.student_force_mae.__dict__,
            "baseline_force_mae": held_out.baseline_force_mae.__dict__,
            "student_over_baseline": held_out.student_over_baseline,
            "difference_exceeds_spread": held_out.difference_exceeds_spread,
            "limit_force_mae": {"mean": limit_mae, "values": limits[student]} if limit_mae is not None else None,
            "gap_closed": (baseline - held_out.student_force_mae.mean) / (baseline - limit_mae) if limit_mae is not None and baseline > limit_mae else None,
            "s66x8_student_over_baseline": s66.student_over_baseline if s66 else None,
            "data": args.data or "embedded:molecules",
            "periodic_scores": periodic_scores(report) if args.data else None,
            "materials": materials_summary(report.materials) if report.materials else None,
            "model_minutes_per_stage": stage_minutes(report),
            "wall_seconds_per_stage": walls,
            "wall_seconds": round(sum(walls.values()), 1),
            "teachers_from": teachers_from,  # its teachers were trained by that pair (same spec): the teach wall time is that pair's
            "baselines_from": baselines_from,  # its baselines were trained by that pair (same student): its students+baselines wall time is the students'
            "resumed": resumed,  # wall times of the rest only: the model-minutes are whole
            "cpu_count": os.cpu_count(),
            "epochs_bound": args.epochs,
            "stress_weight": args.stress_weight,
            "student_epochs": args.student_epochs,
            "seed_only_teachers": args.seed_only_teachers,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(f"{'pair':<12}{'ensemble':>9}{'student':>16}{'baseline':>16}{'ratio':>7}{'gap closed':>11}{'S66x8':>7}{'wall min':>9}")
    for name, r in results.items():
        s, b = r["student_force_mae"], r["baseline_force_mae"]
        gap = f"{100 * r['gap_closed']:.0f} %" if r["gap_closed"] is not None else "-"
        s66 = f"{r['s66x8_student_over_baseline']:.2f}" if r["s66x8_student_over_baseline"] else "-"
        print(f"{name:<12}{r['teacher_ensemble_force_mae']:>9.2f}{s['mean']:>9.2f} ± {s['std']:<4.2f}{b['mean']:>9.2f} ± {b['std']:<4.2f}"
              f"{r['student_over_baseline']:>7.2f}{'*' if r['difference_exceeds_spread'] else ' '}{gap:>10}{s66:>7}{r['wall_seconds'] / 60:>9.1f}")
    print("force MAE in kcal/mol/Å on the held-out PySCF forces; * the difference (either way) exceeds the seed spread")


if __name__ == "__main__":
    main()
