"""Wall time of the command a new user types first: `ekd run --teacher ani --student mace`.

Runs `ekd run --teacher T --student S` (default: ani and mace, no other flag: the defaults as a
user meets them) in a fresh directory and times it; with ``--control`` then reruns it with
``--baseline`` in the same directory, which resumes and trains only the energy-only baselines (the
student's architecture, size and at least its budget), so the report says whether the student
beats them. Prints the time of every stage and the headline, and writes
benchmarks/results/ekd_run_time_<T>_<S>.json. Issue 15's target for ani -> mace: 12 minutes on 2
CPU cores.

    .venv/bin/python benchmarks/ekd_run_time.py [--teacher ani] [--student mace] [--control] [--work DIR] [-- more ekd run flags]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default="ani")
    parser.add_argument("--student", default="mace")
    parser.add_argument("--control", action="store_true", help="then add the energy-only baselines (--baseline, resumed)")
    parser.add_argument("--work", type=Path, default=Path("build/bench-run"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("extra", nargs="*", help="more ekd run flags (after --)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    command = [sys.executable, "-m", "ekd", "run", "--teacher", args.teacher, "--student", args.student, "--out", str(args.work), *args.extra]
    total = timed(command)
    control = timed(command + ["--baseline"]) if args.control else None
    report = json.loads((args.work / "report.json").read_text())
    print(f"\n{'stage':<28} {'seconds':>8}")
    for stage, seconds in report["stage_seconds"].items():
        print(f"{stage:<28} {seconds:8.1f}")
    print(f"{'the command (wall, all stages)':<28} {total:8.1f}")
    if control is not None:
        print(f"{'then --baseline (wall)':<28} {control:8.1f}")
    print(json.dumps(report["headline"], indent=1))
    result = {
        "command": "ekd " + " ".join(command[3:]),
        "total_seconds": total,
        "baseline_seconds": control,
        "stage_seconds": report["stage_seconds"],
        "config": report["config"],
        "headline": report["headline"],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    out = args.out or RESULTS / f"ekd_run_time_{args.teacher}_{args.student}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
