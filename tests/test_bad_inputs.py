"""Bad inputs and faults as a user meets them: each gives a correct result or a one-line error
naming what is wrong (issue 31; the list with what ekd says is in docs/bad-inputs.md)."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import ekd
from ekd.cli import main
from ekd.data import Dataset, write
from ekd.errors import ConfigError, DataError
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules

TINY = {"width": 8, "n_rbf": 8}
ROOT = Path(__file__).resolve().parents[1]


def tiny(data_path=None, **overrides) -> RunConfig:
    return RunConfig.load(None, {
        **({"data.path": str(data_path)} if data_path else {}), "teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": TINY},
        "student.backend": "pairmlp", "student.options": TINY, "student.seeds": 2, "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"},
        "epochs": 2, "jobs": 1, **overrides,
    })


def one_line_error(argv, capsys, progress: bool = False) -> str:
    """The one line of a user's mistake (``progress``: after the run's progress lines)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and (progress or len(err.splitlines()) == 1) and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("ekd: error: ")
    return err.splitlines()[-1]


# 1. one calculator shared by every frame ------------------------------------------------------
def dimers(*distances: float) -> list[Atoms]:
    return [Atoms("Cu2", positions=[[0, 0, 0], [0, 0, d]]) for d in distances]


def test_frames_sharing_one_calculator_are_refused_not_given_the_last_frames_results():
    frames, calculator = dimers(2.2, 2.5, 2.8), EMT()
    for atoms in frames:  # the common ASE loop: one calculator, each frame computed in turn
        atoms.calc = calculator
        atoms.get_potential_energy()
    with pytest.raises(DataError, match=r"from_atoms: image 0 \(Cu2\): its calculator holds the results of other atoms"):
        Dataset.from_atoms(frames)
    expected = []
    for atoms in frames:  # each frame's own results
        atoms.calc = EMT()
        expected.append(atoms.get_potential_energy())
    data = Dataset.from_atoms(frames)
    assert np.allclose(data.energy, expected) and len(set(np.round(expected, 6))) == 3


def test_results_of_the_wrong_shape_name_their_frame():
    frames = dimers(2.2) + [Atoms("Cu3", positions=[[0, 0, 0], [0, 0, 2.5], [0, 2.5, 0]])]
    for atoms, n in zip(frames, (2, 2)):  # the second frame's forces are another frame's
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((n, 3)))
    with pytest.raises(DataError, match=r"from_atoms: image 1 \(Cu3\): forces of shape \(2, 3\), expected \(3, 3\)"):
        Dataset.from_atoms(frames)


# 2. a run directory whose data were given in memory --------------------------------------------
def test_a_run_of_data_given_in_memory_is_not_resumed_on_the_embedded_set(tmp_path):
    ekd.Run(tmp_path / "run", tiny(), labelled_molecules(4), show_progress=False).teach()
    with pytest.raises(ConfigError, match=r"run/data.h5 holds this run's data.*Run.open"):
        ekd.Run(tmp_path / "run", tiny(), show_progress=False).run()
    assert ekd.Run.open(tmp_path / "run", show_progress=False).data.metadata["source"].endswith("run/data.h5")


# 6. options that silently do not apply ---------------------------------------------------------
def test_a_shared_epoch_bound_the_students_do_not_take_is_said_and_one_seed_claims_no_spread(tmp_path, capsys, monkeypatch):
    config = tiny(**{"train": {"epochs": 3, "batch_size": 8, "dtype": "float64", "device": "cpu"}, "epochs": None})
    assert [config.train_config(role).epochs for role in ("teachers", "student", "baseline")] == [3, 50, 3]
    monkeypatch.setattr(ekd.Run, "teach", lambda self: pytest.fail("stop here"))
    with pytest.raises(pytest.fail.Exception, match="stop here"):  # the run's start says it, before training
        ekd.Run(tmp_path / "run", config, labelled_molecules(4), show_progress=False).run()
    assert "ekd: train.epochs 3 bounds the teachers and baselines; the students keep their own 50" in capsys.readouterr().err
    assert not tiny().notices() and not RunConfig.load(None, {"train": {"epochs": 3}, "epochs": 3}).notices()
    headline = ekd.Headline.of(ekd.SeedSpread.of([1.0]), ekd.SeedSpread.of([2.0]), ensemble=1.0)
    assert headline.difference_exceeds_spread is None and headline.student_over_baseline == 0.5
    report = ekd.Report({}, {"held-out test": headline}, {}, {}, {}, {})
    assert "a single seed: no spread to compare" in report.markdown()


# 8. coordinates that crash the neighbour list, NaN and inf -------------------------------------
@pytest.mark.parametrize("value", [1e5, 1e247, np.nan, np.inf])
def test_absurd_or_non_finite_coordinates_are_refused_naming_the_conformation(tmp_path, capsys, value):
    images = labelled_molecules(2).to_atoms()
    images[1].positions[1, 0] = value
    images[1].calc = None  # (its results were of the old positions)
    problem = "is not finite" if not np.isfinite(value) else "Å across"
    with pytest.raises(DataError, match=rf"from_atoms: conformation 1 \(.*\): atom 1 at .*{problem}"):
        Dataset.from_atoms(images)
    from ase.io import write as ase_write

    for atoms in images:
        atoms.calc = None
    ase_write(tmp_path / "bad.xyz", images)  # as a data or evaluation file: refused when read, before anything runs
    err = one_line_error(["data", "info", str(tmp_path / "bad.xyz")], capsys)
    assert "bad.xyz: conformation 1" in err and problem in err
    err = one_line_error(["run", "--config", str(ROOT / "configs/pairmlp-smoke.yaml"), "--eval", str(tmp_path / "bad.xyz"), "--out", str(tmp_path / "r")], capsys)
    assert "bad.xyz: conformation 1" in err and not (tmp_path / "r/teachers").exists()  # before any training


# 11. configuration mistakes --------------------------------------------------------------------
def test_config_mistakes_are_config_errors_naming_the_key(tmp_path, capsys):
    with pytest.raises(ConfigError, match="config.studnet: unknown option; allowed: data, teachers, student"):
        RunConfig(studnet={"backend": "ani"})
    (tmp_path / "pairmlp.yaml").write_text("teachers: {spec: pairmlp, options: {pairmlp: {width: 8}}}\n")
    err = one_line_error(["teach", "--config", str(tmp_path / "pairmlp.yaml"), "--teacher", "nosuchbackend:2", "--out", str(tmp_path / "r")], capsys)
    assert err.startswith("ekd: error: unknown backend 'nosuchbackend'")
    assert "count must be at least 1" in one_line_error(["teach", "--teacher", "pairmlp:0", "--out", str(tmp_path / "r")], capsys)
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction: 0.6 \+ 0.5 leaves no training data"):
        RunConfig.load(None, {"data.val_fraction": 0.6, "data.test_fraction": 0.5})
    (tmp_path / "report.json").write_text("not json")
    with pytest.raises(DataError, match="report.json: not a report"):
        ekd.Report.read(tmp_path / "report.json")


# 13. one estimate per run ---------------------------------------------------------------------
def test_the_estimate_is_made_once_per_run(tmp_path, monkeypatch):
    import ekd.run

    calls = []
    monkeypatch.setattr(ekd.run, "run_estimate", lambda *args: calls.append(args) or {"teach": 60.0, "students": 120.0})
    run = ekd.Run(tmp_path / "run", tiny(), labelled_molecules(4), show_progress=False)
    assert run.estimate() == {"teach": 60.0, "students": 120.0}
    assert "about 3 min" in run.describe_estimate() and len(calls) == 1


# 15. the committee spread per conformation -----------------------------------------------------
def test_the_force_spread_of_each_conformation():
    import torch

    from ekd.backend import Statistics

    data = labelled_molecules(2)
    statistics = Statistics.of(data, data.elements, 4.0)
    ensemble = ekd.Ensemble([ekd.Model.build("pairmlp", data.elements, statistics, TINY, seed=s, dtype=torch.float64) for s in (0, 1)])
    prediction = ensemble.predict(data)
    spreads = prediction.force_spread_per_conformation()
    assert [len(s) for s in spreads] == list(data.sizes) and len(spreads) == len(data)
    assert np.array_equal(np.concatenate(spreads), prediction.force_spread)
    first = ensemble.predict(data.subset([1]))  # the spread of one conformation alone
    np.testing.assert_allclose(spreads[1], first.force_spread, rtol=1e-12)


# 4. two runs in one directory, and labels of a replaced checkpoint --------------------------------
def test_a_second_process_in_a_run_directory_fails_at_once_and_runs_after_it(tmp_path, capsys):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom ekd.locks import directory_lock\n"
                               f"with directory_lock({str(tmp_path / 'run')!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["run", "--config", str(ROOT / "configs/pairmlp-smoke.yaml"), "--data", str(tmp_path / "data.h5"), "--out", str(tmp_path / "run")]
        write(labelled_molecules(4), tmp_path / "data.h5")
        err = one_line_error(argv, capsys)
        assert f"another ekd process (pid {holder.pid}) is working in this run directory" in err
        assert not (tmp_path / "run/teachers").exists()
    finally:
        holder.kill()
        holder.wait()
    ekd.Run(tmp_path / "run", tiny(tmp_path / "data.h5"), show_progress=False).teach()  # the lock went with its process


def test_labels_of_a_teacher_checkpoint_replaced_since_are_made_again(tmp_path):
    write(labelled_molecules(4), tmp_path / "data.h5")
    run = ekd.Run(tmp_path / "run", tiny(tmp_path / "data.h5"), show_progress=False)
    run.teach()
    first = run.label()
    teachers = tmp_path / "run/teachers"
    (teachers / "00-pairmlp/model.pt").write_bytes((teachers / "01-pairmlp/model.pt").read_bytes())  # another process retrained it
    labels = ekd.Run.open(tmp_path / "run", show_progress=False).label()
    assert np.array_equal(labels.member_forces[0], labels.member_forces[1])  # both members' forces from the same weights now
    assert not np.array_equal(first.member_forces[0], labels.member_forces[0])


# 10. other data behind an existing run directory ----------------------------------------------
def test_a_run_on_changed_data_redoes_what_they_invalidate(tmp_path):
    from ekd.provenance import sha256_file

    argv = ["run", "--config", str(ROOT / "configs/pairmlp-smoke.yaml"), "--data", str(tmp_path / "data.h5"), "--out", str(tmp_path / "run"), "--jobs", "1"]
    for seed in (3, 5):  # the same path, other conformations the second time ('ekd run' once said to run 'ekd label', which said 'ekd teach')
        write(labelled_molecules(4, seed=seed), tmp_path / "data.h5")
        main(argv if seed == 3 else ["run", "--out", str(tmp_path / "run")])  # (a user mistake would exit 2)
    labels = ekd.Labels.read(tmp_path / "run/labels.h5")
    assert labels.source_sha256 == sha256_file(tmp_path / "data.h5")


# 3. the students' split is the teachers' ------------------------------------------------------
def test_students_train_where_their_teachers_trained_not_on_the_users_test_set(tmp_path, monkeypatch):
    import ekd.pipeline.students as students

    data = labelled_molecules(6)
    train, validation, test = data.split((0.6, 0.2, 0.2), seed=7)  # not config.data's split
    config = tiny(**{"student.seeds": 1})
    teachers = ekd.train_ensemble(train, validation, tmp_path / "teachers", config, show_progress=False)
    seen, real = [], students.run_jobs
    monkeypatch.setattr(students, "run_jobs", lambda jobs, *a: seen.extend(jobs) or real(jobs, *a))
    ekd.train_students(ekd.label(data, teachers, show_progress=False), tmp_path, config, baseline=True, show_progress=False)
    keys = lambda part: set(part.conformation_keys())  # noqa: E731
    for job in seen:  # students and baselines
        assert keys(job.train_frames) == keys(train) and keys(job.val_frames) == keys(validation)
        assert not keys(job.train_frames) & keys(test)
    assert config.data.fractions != (0.6, 0.2, 0.2)


# 5. energies in another unit ------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["kcal/mol", "kJ/mol", "Ha"])
def test_energies_in_another_unit_are_named_and_stop_the_read(tmp_path, capsys, unit):
    import dataclasses

    from ekd.units import energy_factor

    data = Dataset.embedded().subset(range(0, 1600, 20))
    write(dataclasses.replace(data, energy=data.energy / energy_factor(unit)), tmp_path / "wrong.xyz")  # the numbers of that unit, read as eV
    err = one_line_error(["data", "info", str(tmp_path / "wrong.xyz")], capsys)
    assert f"the energies look like {unit}, not eV" in err and f"--energy-unit {unit}" in err
    main(["data", "info", str(tmp_path / "wrong.xyz"), "--energy-unit", unit])  # read as what they are: accepted
    half = data.energy.copy()
    half[::2] /= energy_factor(unit)
    with pytest.raises(DataError, match="look like several units at once") as error:
        ekd.distill(tiny(), data=dataclasses.replace(data, energy=half), out=tmp_path / "run", show_progress=False)
    assert "40 like eV" in str(error.value) and f"40 like {unit}" in str(error.value) and not (tmp_path / "run/teachers").exists()


def test_a_force_energy_slope_far_from_one_is_not_called_consistent():
    from ekd.data.force_sign import SignCheck

    assert [SignCheck(s, 50).verdict for s in (1.02, -0.98, 22.6, 0.043, 0.3, 1.0)] == ["consistent", "flipped", "scale", "scale", "inconclusive", "consistent"]
    assert SignCheck(1.0, 3).verdict == "inconclusive"


# 7. scores that are not what they seem --------------------------------------------------------
def test_scores_of_trained_on_conformations_and_uncovered_elements_are_noted(tmp_path, capsys):
    data = labelled_molecules(4)
    write(Dataset.concatenate([data, data]), tmp_path / "repeated.h5")  # every conformation twice: the test split copies training ones
    sulfur = Dataset.from_arrays([np.array([16, 1, 1])], [np.array([[0, 0, 0], [1.34, 0, 0], [0, 1.34, 0]])], ["H2S"], energy=np.array([-10828.0]))
    write(sulfur, tmp_path / "h2s.xyz")
    config = tiny(tmp_path / "repeated.h5", **{"evaluate.files": [str(tmp_path / "repeated.h5"), str(tmp_path / "h2s.xyz")]})
    report = ekd.distill(config, out=tmp_path / "run", show_progress=False).report
    notes = " | ".join(report.notes)
    assert "held-out test conformations are copies of training or validation ones" in notes
    assert "repeated.h5: " in notes and "conformations are in the training or validation split" in notes
    assert "h2s: not scored for teacher 00-pairmlp, teacher 01-pairmlp, teacher ensemble, student seed-200, student seed-201: element(s) S not covered" in notes
    assert "h2s" not in report.headline and all("**Note**: " + n in (tmp_path / "run/report.md").read_text() for n in report.notes)
    assert ekd.Report.read(tmp_path / "run/report.json").notes == report.notes
    assert "copies of training or validation ones" in capsys.readouterr().err  # said at the start too


# 9. files cut short, and a full disk ----------------------------------------------------------
def test_files_cut_short_are_named_or_made_again_and_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    import os

    from ekd.data.labels import LabelsWriter

    write(labelled_molecules(4), tmp_path / "data.h5")
    (tmp_path / "cut.h5").write_bytes((tmp_path / "data.h5").read_bytes()[:20000])
    assert "cut.h5: not a readable file" in one_line_error(["data", "info", str(tmp_path / "cut.h5")], capsys)

    run_dir = tmp_path / "run"
    argv = ["run", "--config", str(ROOT / "configs/pairmlp-smoke.yaml"), "--data", str(tmp_path / "data.h5"), "--out", str(run_dir), "--jobs", "1"]

    def full(self, block):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "labels.h5"))

    monkeypatch.setattr(LabelsWriter, "append", full)
    err = one_line_error(argv, capsys, progress=True)
    assert err.startswith(f"ekd: error: {run_dir / 'labels.h5'}: No space left on device") and "run the same command again" in err
    assert not (run_dir / "labels.h5").exists() and not list(run_dir.glob("**/*.tmp"))  # nothing half-written
    monkeypatch.undo()
    main(argv)  # resumes: the teachers are kept
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/*/model.pt")}

    (run_dir / "labels.h5").write_bytes((run_dir / "labels.h5").read_bytes()[:5000])  # cut short after the run
    (run_dir / "students/seed-200/model.pt").write_bytes(b"cut")
    main(argv)
    after = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/*/model.pt")}
    assert ekd.Labels.read(run_dir / "labels.h5").member_forces.shape[0] == 2  # labelled again
    assert [p for p in before if after[p] != before[p]] == [run_dir / "students/seed-200/model.pt"]  # that training alone redone
    ekd.load(run_dir / "students/seed-200/model.pt")  # retrained, whole

    (run_dir / "students/seed-201/checkpoint.pt").write_bytes(b"cut")
    record = json.loads((run_dir / "students/seed-201/stage.json").read_text())
    (run_dir / "students/seed-201/stage.json").write_text(json.dumps({**record, "status": "running"}))  # killed mid-training
    err = one_line_error(argv, capsys, progress=True)
    assert "students/seed-201/checkpoint.pt: not a readable checkpoint" in err and "delete it to start this training over" in err
