"""The EKD stages on their own (train_ensemble, label, train_students), the outlier rule and the
teacher spec, on a tiny synthetic set with the example backend (fast)."""

import numpy as np
import pytest

import ekd
import ekd.units as ekd_units
from ekd.errors import ConfigError
from ekd.pipeline import failed_teachers
from ekd.provenance import sha256_arrays, sha256_file
from ekd.runconfig import RunConfig, TeacherMember, parse_teacher_spec
from ekd.stages import Stage
from ekd.testing import labelled_molecules

TINY = {"width": 8, "n_rbf": 8}


def tiny_config(**overrides):
    return RunConfig.load(None, {
        "teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": TINY}, "teachers.variations": {},
        "student.backend": "pairmlp", "student.options": TINY, "student.seeds": 1,
        "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"}, "epochs": 3, "jobs": 1, **overrides,
    })


def test_stages_compose_on_in_memory_data(tmp_path):
    data = ekd.Dataset.from_atoms(labelled_molecules(6).to_atoms())
    train, validation, test = data.split((0.7, 0.2, 0.1), seed=1)
    config = tiny_config()
    ensemble = ekd.train_ensemble(train.without_forces(), validation.without_forces(), tmp_path / "teachers", config, show_progress=False)
    assert ensemble.names == ["00-pairmlp", "01-pairmlp"] and len(ensemble) == 2

    labels = ekd.label(data, ensemble, show_progress=False)
    members = [model.predict(data).forces for model in ensemble.models]
    np.testing.assert_allclose(labels.mean_forces, np.mean(members, axis=0), rtol=0, atol=1e-12)  # the mean, not one member
    assert not np.allclose(labels.mean_forces, members[0], atol=1e-6)
    np.testing.assert_allclose(labels.member_forces, members, atol=1e-12)
    assert [t.checkpoint_sha256 for t in labels.teachers] == [sha256_file(m.path) for m in ensemble.models]
    assert labels.source_sha256 == sha256_arrays(data)  # data built in memory: named by its arrays

    students = ekd.train_students(labels, tmp_path / "out", config, show_progress=False)
    both = ekd.train_students(labels, tmp_path / "out", config, baseline=True, show_progress=False)  # students, then baselines
    assert [m.path.parent.parent.name for m in both] == ["students", "baselines"] and both[0].path == students[0].path
    baselines = both[1:]
    assert [m.path.parent.name for m in students] == ["seed-200"] and baselines[0].path.parent.name == "seed-200"
    assert students[0].info["role"] == "student" and baselines[0].info["role"] == "baseline"
    assert students[0].info["train_config"]["force_weight"] == 0.1 and baselines[0].info["train_config"]["force_weight"] == 0.0


def test_a_missing_published_ensemble_fails_before_training_naming_its_path(tmp_path):
    data = labelled_molecules(2)
    with pytest.raises(ekd.EkdError, match="/nowhere"):
        ekd.train_ensemble(data, data, tmp_path, tiny_config(**{"teachers.spec": "ani-pretrained:/nowhere", "teachers.options": {}}))
    assert not list(tmp_path.iterdir())


def test_failed_teachers_are_found_per_backend_by_validation_loss(tmp_path):
    def member(index, backend, best):
        directory = tmp_path / f"{index:02d}-{backend}"
        directory.mkdir()
        (directory / "history.csv").write_text("epoch,val_loss\n1,1.0\n2,%g\n" % best)
        return TeacherMember(index, backend, {}, index), Stage(directory, "")

    teachers = [member(0, "ani", 1e-5), member(1, "ani", 1.6e-5), member(2, "ani", 1.4e-4), member(3, "ani", 1.1e-5),
                member(4, "mace", 1e-3), member(5, "mace", 5e-3)]  # two mace members: no median to judge by
    failed = failed_teachers(teachers, 3.0)
    assert list(failed) == ["02-ani"] and "10x the median of the ani teachers" in failed["02-ani"]
    assert failed_teachers(teachers, None) == {}


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
    for bad, message in (("ani:x", "expected backend"), (":3", "expected backend"), ("ani:0", "ani's count must be at least 1")):
        with pytest.raises(ConfigError, match=message):
            RunConfig.load(None, {"teachers.spec": bad})


def test_train_model_returns_a_typed_summary_scored_on_the_held_out_split(tmp_path):
    import json

    path = tmp_path / "data.h5"
    ekd.Dataset.from_atoms(labelled_molecules(8).to_atoms()).write(path)
    summary = ekd.train_model("pairmlp", tmp_path / "one", path, config={"options": TINY, "train": {"dtype": "float64", "device": "cpu"}}, epochs=2, show_progress=False)
    test = ekd.Dataset.read(path).split((0.8, 0.1, 0.1), seed=0).test
    prediction = summary.model.predict(test)
    assert summary.test.n_conformations == len(test) and summary.trained_on == "energies only"
    assert summary.test.force_mae == pytest.approx(np.abs(prediction.forces - test.forces).mean() / ekd_units.KCAL_PER_MOL, rel=1e-9)
    assert json.loads((tmp_path / "one/summary.json").read_text()) == json.loads(json.dumps(summary.to_dict()))


def test_a_baseline_does_not_depend_on_the_teachers_but_a_student_does(tmp_path):
    """The energy-only control sees the same energies whoever labelled the forces: its stage is
    the same for two teacher ensembles (so a second teacher does not retrain it); a student's is not."""
    from ekd.data import Labels, TeacherRecord
    from ekd.pipeline import student_jobs

    frames = labelled_molecules(4)
    teachers = [TeacherRecord("pairmlp", "pairmlp:0", "ab" * 32, 0), TeacherRecord("pairmlp", "pairmlp:1", "cd" * 32, 1)]

    def stage_digests(member_forces, baseline):
        view = Labels(frames.without_forces(), member_forces, teachers).dataset()
        assert "force_spread" in view.atom_data
        return [job.stage.inputs_sha256 for job in student_jobs(tmp_path, tiny_config(), view, view, {}, baseline=baseline)]

    first = np.stack([frames.forces, 3 * frames.forces])
    other = np.stack([0 * frames.forces, 4 * frames.forces])  # the same mean, another spread: other teachers
    assert stage_digests(first, baseline=True) == stage_digests(other, baseline=True)
    assert stage_digests(first, baseline=False) != stage_digests(other, baseline=False)
