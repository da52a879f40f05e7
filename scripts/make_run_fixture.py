"""Make the run-directory fixture of tests/test_resume_fixture.py: a tiny finished run (example
backend, synthetic molecules) made by the ekd on sys.path.

    PYTHONPATH=<checkout of the version> python scripts/make_run_fixture.py OUT

tests/fixtures/run-v0c78935 was made so at commit 0c78935 (before the stage pipeline was
rewritten), then trimmed to what resuming reads (config.yaml with data.path relative, data.h5,
labels.h5, report.json, each stage's stage.json, model.pt and history.csv).
"""
import shutil
import sys
from pathlib import Path

import ekd
from ekd.data import write
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
write(labelled_molecules(8), out / "data.h5")
TINY = {"width": 8, "n_rbf": 8}
config = RunConfig.load(None, {"data.path": str(out / "data.h5"), "teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": TINY},
    "student.backend": "pairmlp", "student.options": TINY, "student.seeds": 2, "student.baseline": True,
    "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"}, "epochs": 3, "jobs": 1})
run = ekd.distill(config, out=out, show_progress=False)
print(run.report.held_out)
