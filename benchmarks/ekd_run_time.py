"""Wall time of the main job: `ekd run --teacher ani --student ani --baseline --eval S66X8` on the embedded set.

Runs the command in a fresh directory, then prints the time of every stage and the headline of
the report, and writes benchmarks/results/ekd_run_time.json. The target is under 10 minutes on
2 CPU cores.

    .venv/bin/python benchmarks/ekd_run_time.py [--work build/bench-run] [-- extra ekd run flags]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("build/bench-run"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ekd_run_time.json")
    parser.add_argument("extra", nargs="*", help="more ekd run flags (after --)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    s66x8 = Path(__file__).resolve().parents[2] / "shared/data/comp6/s66x8_wb97x6-31gd.h5"
    command = [sys.executable, "-m", "ekd", "run", "--teacher", "ani", "--student", "ani", "--baseline", "--eval", str(s66x8), "--out", str(args.work), *args.extra]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    total = time.perf_counter() - started
    report = json.loads((args.work / "report.json").read_text())
    print(f"\n{'stage':<28} {'seconds':>8}")
    for stage, seconds in report["stage_seconds"].items():
        print(f"{stage:<28} {seconds:8.1f}")
    print(f"{'total (wall, incl. evaluation)':<28} {total:8.1f}")
    result = {
        "command": " ".join(command[2:]),
        "total_seconds": total,
        "stage_seconds": report["stage_seconds"],
        "headline": report["headline"],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
