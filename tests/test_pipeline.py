"""The EKD stages end to end on a tiny synthetic set with the example backend (fast)."""

import json

import numpy as np
import pytest

import ekd.parallel as parallel
import ekd.pipeline as pipeline
from ekd.data import Frames, write
from ekd.errors import ConfigError, DataError
from ekd.runconfig import RunConfig, parse_teacher_spec
from ekd.testing import labelled_molecules


@pytest.fixture
def data_path(tmp_path):
    path = tmp_path / "data.h5"
    write(labelled_molecules(8), path)
    return path


def config_for(data_path, weighting="none"):
    return RunConfig.load(
        None,
        {
            "data.path": str(data_path),
            "teachers.spec": "pairmlp:2",
            "teachers.options": {"pairmlp": {"width": 8, "n_rbf": 8}},
            "student.backend": "pairmlp",
            "student.options": {"width": 8, "n_rbf": 8},
            "student.seeds": 2,
            "student.baseline": True,
            "student.train": {"force_weight": 0.1},
            "student.weighting": weighting,
            "train": {"epochs": 3, "batch_size": 8, "dtype": "float64", "device": "cpu"},
            "evaluate.files": [],
            "jobs": 1,
        },
    )


def mtimes(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.glob("**/model.pt")}


def metrics(run_dir):
    return json.loads((run_dir / "report.json").read_text())["models"]


def test_run_writes_the_documented_report(tmp_path, data_path):
    report = pipeline.run(tmp_path / "run", config_for(data_path), show_progress=False)
    names = set(report["models"])
    assert names == {"teacher 00-pairmlp", "teacher 01-pairmlp", "teacher ensemble", "student seed-200", "student seed-201", "baseline seed-200", "baseline seed-201"}
    for model in report["models"].values():
        assert set(model["held-out test"]) >= {"energy_mae", "energy_rmse", "relative_energy_mae", "relative_energy_rmse", "force_mae", "force_rmse"}
    headline = report["headline"]["held-out test"]
    assert headline["student_force_mae"]["n"] == 2 and "student_over_baseline" in headline
    assert (tmp_path / "run/report.md").read_text().startswith("# EKD run report")
    assert (tmp_path / "run/plots/teacher_ensemble/parity_held-out_test.png").is_file()


def test_md_stability_in_the_report_when_asked(tmp_path, data_path):
    config = config_for(data_path).model_copy(update={"evaluate": RunConfig.load(None, {"evaluate.files": [], "evaluate.md": {"steps": 20, "max_molecules": 2}}).evaluate})
    report = pipeline.run(tmp_path / "run", config, show_progress=False)
    md = report["md_stability"]
    assert set(md["models"]) == {"teacher ensemble", "student seed-200", "student seed-201", "baseline seed-200", "baseline seed-201"}
    assert md["settings"]["steps"] == 20 and all(r["n_molecules"] == 2 for r in md["models"].values())
    assert "## MD stability" in (tmp_path / "run/report.md").read_text()
    assert "md_stability" not in pipeline.run(tmp_path / "run", config_for(data_path), show_progress=False)  # off by default


def test_rerun_skips_finished_stages_and_config_changes_redo_only_dependents(tmp_path, data_path):
    run_dir = tmp_path / "run"
    pipeline.run(run_dir, config_for(data_path), show_progress=False)
    first, first_metrics = mtimes(run_dir), metrics(run_dir)
    pipeline.run(run_dir, config_for(data_path), show_progress=False)
    assert mtimes(run_dir) == first and metrics(run_dir) == first_metrics
    pipeline.run(run_dir, config_for(data_path, weighting="inverse_spread"), show_progress=False)
    again = mtimes(run_dir)
    assert all(again[k] == first[k] for k in first if k.startswith(("teachers", "baselines")))
    assert all(again[k] != first[k] for k in first if k.startswith("students"))


def test_interrupted_run_finishes_with_the_same_report(tmp_path, data_path, monkeypatch):
    pipeline.run(tmp_path / "straight", config_for(data_path), show_progress=False)
    real_train = parallel.train
    calls = []

    def interrupt_first_student(backend, *args, info=None, **kwargs):
        calls.append(info["role"])
        if info["role"] == "student" and calls.count("student") == 1:
            kwargs["on_epoch_end"] = lambda epoch, row: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 2 else None
        return real_train(backend, *args, info=info, **kwargs)

    monkeypatch.setattr(parallel, "train", interrupt_first_student)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(tmp_path / "resumed", config_for(data_path), show_progress=False)
    teachers_before = {k: v for k, v in mtimes(tmp_path / "resumed").items() if k.startswith("teachers")}
    monkeypatch.setattr(parallel, "train", real_train)
    pipeline.run(tmp_path / "resumed", config_for(data_path), show_progress=False)
    assert {k: v for k, v in mtimes(tmp_path / "resumed").items() if k.startswith("teachers")} == teachers_before
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")


def test_parallel_trainings_match_serial_ones(tmp_path, data_path):
    serial = config_for(data_path)
    parallel_config = serial.model_copy(update={"jobs": 2})
    pipeline.teach(tmp_path / "serial", serial, show_progress=False)
    directories = pipeline.teach(tmp_path / "parallel", parallel_config, show_progress=False)
    frames, _ = pipeline.run_data(serial)
    for directory in directories:
        alone = pipeline.Model.load(tmp_path / "serial/teachers" / directory.name / "model.pt").predict(frames)
        side_by_side = pipeline.Model.load(directory / "model.pt").predict(frames)
        np.testing.assert_allclose(side_by_side.energy, alone.energy, rtol=0, atol=1e-8)
        np.testing.assert_allclose(side_by_side.forces, alone.forces, rtol=0, atol=1e-8)
    before = mtimes(tmp_path / "parallel")
    pipeline.teach(tmp_path / "parallel", parallel_config, show_progress=False)
    assert mtimes(tmp_path / "parallel") == before  # finished members are not started again


def test_single_member_and_missing_teachers(tmp_path, data_path):
    config = config_for(data_path)
    directories = pipeline.teach(tmp_path / "run", config, member=1, show_progress=False)
    assert [d.name for d in directories] == ["01-pairmlp"]
    with pytest.raises(ConfigError, match="teacher 00-pairmlp is not trained yet"):
        pipeline.label(tmp_path / "run", config, show_progress=False)
    with pytest.raises(ConfigError, match="--member 5: the ensemble has members 0..1"):
        pipeline.teach(tmp_path / "run", config, member=5)


def test_labels_for_other_data_are_refused(tmp_path, data_path):
    run_dir = tmp_path / "run"
    config = config_for(data_path)
    pipeline.teach(run_dir, config, show_progress=False)
    labels = pipeline.read_labels(pipeline.label(run_dir, config, show_progress=False))
    frames, _ = pipeline.run_data(config)
    pipeline.check_labels_match(labels, frames)
    changed = frames.with_metadata(sha256="0" * 64)
    with pytest.raises(DataError, match="labels were made from data with sha256"):
        pipeline.check_labels_match(labels, changed)
    moved = Frames(**{**frames.__dict__, "positions": frames.positions + 0.1})
    with pytest.raises(DataError, match="labelled conformations differ"):
        pipeline.check_labels_match(labels, moved)
    fewer = frames.subset(np.flatnonzero(frames.molecule != "HCN"))
    with pytest.raises(DataError, match="labels cover elements|labelled conformations differ"):
        pipeline.check_labels_match(labels, fewer)


def test_failed_teachers_are_found_per_backend_by_validation_loss(tmp_path):
    from ekd.runconfig import TeacherMember
    from ekd.stages import Stage

    def member(index, backend, best):
        directory = tmp_path / f"{index:02d}-{backend}"
        directory.mkdir()
        (directory / "history.csv").write_text("epoch,val_loss\n1,1.0\n2,%g\n" % best)
        return TeacherMember(index, backend, {}, index), Stage(directory, "")

    teachers = [member(0, "ani", 1e-5), member(1, "ani", 1.6e-5), member(2, "ani", 1.4e-4), member(3, "ani", 1.1e-5),
                member(4, "mace", 1e-3), member(5, "mace", 5e-3)]  # two mace members: no median to judge by
    failed = pipeline.failed_teachers(teachers, 3.0)
    assert list(failed) == ["02-ani"] and "10x the median of the ani teachers" in failed["02-ani"]
    assert pipeline.failed_teachers(teachers, None) == {}


def test_teacher_spec_parsing():
    variations = {"ani": [{"hidden": [8]}, {"hidden": [16]}], "pairmlp": [{"width": 4}]}
    members = parse_teacher_spec(RunConfig.load(None, {"teachers.spec": "ani:3,pairmlp:1", "teachers.variations": variations}).teachers)
    assert [(m.backend, m.seed, m.options) for m in members] == [
        ("ani", 100, {"hidden": [8]}),
        ("ani", 101, {"hidden": [16]}),
        ("ani", 102, {"hidden": [8]}),
        ("pairmlp", 103, {"width": 4}),
    ]
    seeds_only = parse_teacher_spec(RunConfig.load(None, {"teachers.spec": "ani:2", "teachers.variations": {}}).teachers)
    assert [m.options for m in seeds_only] == [{}, {}]
    recipe = parse_teacher_spec(RunConfig.load(None, {"teachers.spec": "ani:2"}).teachers)
    assert recipe[0].options != recipe[1].options  # the backend's own diversity recipe
    for bad in ("ani:x", "ani:0", ":3"):
        with pytest.raises(ConfigError, match="expected backend"):
            parse_teacher_spec(RunConfig.load(None, {"teachers.spec": bad}).teachers)
    with pytest.raises(ConfigError, match="config.student.seedz"):
        RunConfig.load(None, {"student.seedz": 3})
