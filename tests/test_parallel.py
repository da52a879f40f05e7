"""Trainings side by side in worker processes: errors come back, killed runs leave no orphans."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ekd.data import write
from ekd.errors import DataError
from ekd.parallel import TrainJob, default_jobs, run_jobs
from ekd.stages import Stage
from ekd.testing import labelled_molecules
from ekd.train import TrainConfig


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text().split("State:")[1].splitlines()[0]
    except (FileNotFoundError, IndexError):
        return False


def test_a_workers_error_is_raised_in_the_parent(tmp_path):
    data = labelled_molecules(4)
    empty = data.subset([])
    config = TrainConfig(epochs=1, batch_size=8, dtype="float64", device="cpu")
    jobs = [TrainJob(Stage(tmp_path / f"m{k}", "x"), "pairmlp", data, empty, config, {"width": 4, "n_rbf": 4}, {}) for k in range(2)]
    with pytest.raises(DataError, match="the validation split is empty"):
        run_jobs(jobs, workers=2, show_progress=False)


@pytest.mark.parametrize(("cores", "pending", "expected"), [(2, 1, 2), (2, 2, 2), (2, 3, 3), (2, 4, 2), (2, 6, 2), (4, 5, 5), (4, 6, 6), (4, 9, 5), (8, 40, 8)])
def test_default_workers_leave_no_core_idle_in_a_last_wave(monkeypatch, cores, pending, expected):
    """Three students on two cores run at once (1.5 trainings' time) instead of in two waves (2)."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert default_jobs(pending) == expected
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert default_jobs(pending) == 1


@pytest.mark.slow
def test_killed_parallel_run_leaves_no_workers_and_resumes_to_the_same_report(tmp_path, kill_after_epochs):
    data_path = tmp_path / "data.h5"
    write(labelled_molecules(8), data_path)
    (tmp_path / "c.yaml").write_text(
        "teachers: {spec: 'pairmlp:2', options: {pairmlp: {width: 8, n_rbf: 8}}}\n"
        "student: {backend: pairmlp, options: {width: 8, n_rbf: 8}, seeds: 2, baseline: true}\n"
        "train: {epochs: 40, batch_size: 8, early_stopping: 100, dtype: float64, device: cpu}\n"
        "evaluate: {files: []}\njobs: 2\n"
    )
    command = [sys.executable, "-m", "ekd", "run", "--data", str(data_path), "--config", str(tmp_path / "c.yaml")]
    subprocess.run(command + ["--out", str(tmp_path / "straight")], check=True, capture_output=True)

    history = tmp_path / "killed/students/seed-200/history.csv"
    before, started = kill_after_epochs(command + ["--out", str(tmp_path / "killed")], history, 3)
    time.sleep(3)  # a worker notices at its next epoch end that its parent is gone
    after = history.read_text().count("\n") - 1
    assert 3 <= before < 40 and after <= before + 1, f"the worker trained on after the kill ({before} -> {after} epochs)"
    record = json.loads((history.parent / "stage.json").read_text())
    assert record["status"] == "running" and record["seconds"] > 0  # the killed attempt's epochs keep their cost
    assert len(started) >= 2  # the two training workers (and the resource tracker)
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(pid) for pid in started):
        time.sleep(0.2)
    assert not [pid for pid in started if alive(pid)], "a process of the killed run outlived it"

    subprocess.run(command + ["--out", str(tmp_path / "killed")], check=True, capture_output=True)
    report = lambda run: json.loads((tmp_path / run / "report.json").read_text())["models"]  # noqa: E731
    straight, resumed = report("straight"), report("killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        for metric, value in straight[name]["held-out test"].items():
            assert resumed[name]["held-out test"][metric] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, metric)
