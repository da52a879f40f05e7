"""Shared fixtures: the real reference files in ../shared/data, read in place."""

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ekd.data import Dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real data files (../shared/data beside the repository)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the tests read the real reference files in place")
    return path


@pytest.fixture(scope="session")
def ani1x() -> Path:
    """The published ANI-1x 8-model ensemble (../shared/models/ani-1x_8x), read in place."""
    path = SHARED / "models" / "ani-1x_8x"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the tests read the published models in place")
    return path


def harmonic_frames(n_conf: int = 12, seed: int = 0, step: float = 0.02) -> Dataset:
    """Tiny H2O-like frames on a harmonic surface E = ½k|x − x0|², F = −k(x − x0) (eV, Å)."""
    rng = np.random.default_rng(seed)
    x0 = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    k = 3.0
    positions = [x0 + rng.normal(scale=0.05, size=x0.shape)]
    for _ in range(n_conf - 1):
        positions.append(positions[-1] + rng.normal(scale=step, size=x0.shape))
    energy = np.array([0.5 * k * np.sum((p - x0) ** 2) for p in positions]) - 2000.0
    forces = [-k * (p - x0) for p in positions]
    return Dataset.from_arrays(
        numbers=[np.array([8, 1, 1])] * n_conf,
        positions=positions,
        molecule=["H2O"] * n_conf,
        energy=energy,
        forces=forces,
        metadata={"source": "harmonic"},
    )


@pytest.fixture
def harmonic():
    """Factory of harmonic test frames (see :func:`harmonic_frames`)."""
    return harmonic_frames


def child_pids(pid: int) -> set[int]:
    """Direct children of a process (Linux /proc)."""
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children |= {int(p) for p in task.read_text().split()}
    return children


@pytest.fixture
def kill_after_epochs():
    """Run a command and SIGKILL it once ``history`` (a history.csv) has ``epochs`` rows; returns
    the number of rows it had when the kill landed and the processes it had started."""

    def run(command: list[str], history: Path, epochs: int) -> tuple[int, set[int]]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline and (not history.exists() or history.read_text().count("\n") <= epochs):
            time.sleep(0.05)
        children = child_pids(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return history.read_text().count("\n") - 1, children

    return run
