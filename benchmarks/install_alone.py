"""Each backend plugin installs alone: a fresh environment with ekd and one backend trains an epoch.

For each of ``./install.sh core ani``, ``core mace``, ``core nequip``, ``core hippynn`` and a
plain ``pip install -e . -e plugins/ekd-mace`` (MACE with its own e3nn pin) or ``-e
plugins/ekd-hippynn``, in a new virtual
environment under ``--work``: which backends load (exactly the one installed), the e3nn version,
and one training epoch of that backend on 64 conformations of the embedded set. Prints a table
and writes ``benchmarks/results/install_alone.json``. Needs the package registry (or pip's cache).

    .venv/bin/python benchmarks/install_alone.py [--work build/install-alone] [--only mace]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
WAYS = {
    "ani": ["install.sh", "core", "ani"],
    "mace": ["install.sh", "core", "mace"],
    "nequip": ["install.sh", "core", "nequip"],
    "mace (plain pip)": ["pip", "-e", ".", "-e", "plugins/ekd-mace"],
    "hippynn": ["install.sh", "core", "hippynn"],
    "hippynn (plain pip)": ["pip", "-e", ".", "-e", "plugins/ekd-hippynn"],
}


def install(way: list[str], venv: Path) -> None:
    if way[0] == "install.sh":
        subprocess.run([str(ROOT / "install.sh"), *way[1:]], cwd=ROOT, env={"EKD_VENV": str(venv), "PATH": "/usr/bin:/bin"}, check=True, capture_output=True)
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH_PIN], check=True, capture_output=True)
    subprocess.run(pip + [TORCH_PIN, *way[1:]], cwd=ROOT, check=True, capture_output=True)


def check(backend: str, venv: Path, work: Path) -> dict:
    python = str(venv / "bin/python")
    data = work / "slice.h5"
    subprocess.run([python, "-c", f"import ekd, numpy as np; ekd.Dataset.embedded(with_forces=True).subset(np.arange(0, 1600, 25)).write('{data}')"], check=True)
    listed = json.loads(subprocess.run([str(venv / "bin/ekd"), "backends", "--json"], check=True, capture_output=True, text=True).stdout)
    e3nn = subprocess.run([python, "-c", "import e3nn; print(e3nn.__version__)"], capture_output=True, text=True).stdout.strip() or None
    started = time.perf_counter()
    out = work / f"train-{backend}"
    shutil.rmtree(out, ignore_errors=True)
    trained = subprocess.run([str(venv / "bin/ekd"), "train", "--backend", backend, "--data", str(data), "--epochs", "1", "--out", str(out)], capture_output=True, text=True)
    return {
        "backends": sorted(row["name"] for row in listed["backends"]),
        "failed_plugins": listed["failed_plugins"],
        "e3nn": e3nn,
        "trained_one_epoch": trained.returncode == 0 and (out / "model.pt").is_file(),
        "train_seconds": round(time.perf_counter() - started, 1),
        "error": trained.stderr.strip().splitlines()[-1] if trained.returncode else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build/install-alone")
    parser.add_argument("--only", choices=list(WAYS), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/install_alone.json")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.only or list(WAYS):
        venv = args.work / name.replace(" ", "-").replace("(", "").replace(")", "")
        shutil.rmtree(venv, ignore_errors=True)
        started = time.perf_counter()
        try:
            install(WAYS[name], venv)
            result = {"install_seconds": round(time.perf_counter() - started, 1), **check(name.split()[0], venv, args.work)}
        except subprocess.CalledProcessError as error:
            result = {"install_seconds": round(time.perf_counter() - started, 1), "error": (error.stderr or b"").decode()[-2000:]}
        results[name] = {"command": " ".join(WAYS[name]), **result}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(f"{'way':<18}{'install s':>10}  {'backends':<12}{'e3nn':<8}{'1 epoch':<9}")
    for name, r in results.items():
        print(f"{name:<18}{r['install_seconds']:>10}  {','.join(r.get('backends', [])):<12}{str(r.get('e3nn')):<8}{'yes' if r.get('trained_one_epoch') else 'NO':<9}{r.get('error') or ''}")


if __name__ == "__main__":
    main()
