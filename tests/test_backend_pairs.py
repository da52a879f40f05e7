"""Every first-party backend teaches every other, on a slice of the embedded molecules and on a
slice of the embedded metals (periodic cells, the student trained on the teachers' stresses too)."""

import itertools

import numpy as np
import pytest

import ekd
from ekd.data import load_default, write
from ekd.evaluate.comp6 import comp6_errors, comp6_metrics
from ekd.plugins import backends, get_backend
from ekd.runconfig import RunConfig

FIRST_PARTY = [name for name in ("ani", "mace", "nequip", "hippynn") if name in backends()]


def write_slice(frames, per_group, path):
    picked = np.concatenate([np.flatnonzero(frames.molecule == name)[:per_group] for name in frames.molecules])
    write(frames.subset(picked), path)
    return path


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return write_slice(load_default(with_forces=True), 6, tmp_path_factory.mktemp("pairs") / "slice.h5")


@pytest.fixture(scope="module")
def metals_path(tmp_path_factory):
    metals = load_default(with_forces=True, name="metals")
    metals = metals.with_metadata(materials=None)  # the crystals' checks have their own test
    return write_slice(metals, 1, tmp_path_factory.mktemp("pairs") / "metals.h5")


def tiny_config(data_path, teachers, student, **more):
    trained = {part.split(":")[0] for part in teachers.split(",")}
    return RunConfig.load(
        None,
        {
            "data.path": str(data_path),
            "teachers.spec": teachers,
            "teachers.options": {name: get_backend(name).tiny for name in trained},
            "teachers.variations": {},
            "student.backend": student,
            "student.options": get_backend(student).tiny,
            "student.seeds": 1,
            "train": {"batch_size": 16, "device": "cpu"},
            "epochs": 2,
            **more,
        },
    )


def check_labels_are_the_teachers_mean(run):
    members = [model.predict(run.data).forces for model in run.teachers.models]
    np.testing.assert_allclose(run.labels.mean_forces, np.mean(members, axis=0), rtol=0, atol=1e-6)
    assert [t.backend for t in run.labels.teachers] == [m.backend.name for m in run.teachers.models]


@pytest.mark.slow
@pytest.mark.parametrize("teacher, student", list(itertools.product(FIRST_PARTY, repeat=2)))
def test_teacher_student_pair_runs_end_to_end(tmp_path, data_path, teacher, student):
    run = ekd.distill(tiny_config(data_path, f"{teacher}:1", student), out=tmp_path, show_progress=False)
    check_labels_are_the_teachers_mean(run)
    (model,) = run.students
    assert model.backend.name == student and model.info["role"] == "student" and model.info["train_config"]["force_weight"] > 0
    test = run.split.test
    prediction = model.predict(test)
    independent = comp6_metrics(comp6_errors(test, prediction.energy, prediction.forces))
    scores = run.report.scores("student seed-200")
    assert scores.force_mae == pytest.approx(independent["force_mae"], rel=1e-9)  # scored against the held-out reference forces
    assert scores.energy_mae == pytest.approx(independent["energy_mae"], rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("teacher, student", list(zip(FIRST_PARTY, FIRST_PARTY[1:] + FIRST_PARTY[:1])))
def test_teacher_student_pair_runs_on_periodic_cells(tmp_path, metals_path, teacher, student):
    """Teachers label forces and stresses of periodic cells (slabs among them); the student
    trains on both and is scored in meV/atom, meV/Å and GPa against EMT. Each backend teaches
    once and learns once (ani → mace → nequip → hippynn → ani): the stages meet only through the labels."""
    run = ekd.distill(tiny_config(metals_path, f"{teacher}:1", student, **{"student.train": {"stress_weight": 1.0}}), out=tmp_path, show_progress=False)
    check_labels_are_the_teachers_mean(run)
    (teacher_model,) = run.teachers.models
    np.testing.assert_allclose(run.labels.mean_stress, teacher_model.predict(run.data, forces=False, stress=True).stress, atol=1e-7)
    (model,) = run.students
    assert model.info["train_config"]["stress_weight"] == 1.0
    scores = run.report.scores("student seed-200")
    stress = model.predict(run.split.test, forces=False, stress=True).stress
    assert scores.stress_mae_GPa == pytest.approx(np.abs(stress - run.split.test.stress).mean() / 0.006241509074460763, rel=1e-6)
    assert scores.force_mae_meV is not None and scores.energy_per_atom_mae_meV is not None


@pytest.mark.slow
def test_mixed_ensemble_labels_forces(tmp_path, data_path):
    if FIRST_PARTY != ["ani", "mace", "nequip", "hippynn"]:
        pytest.skip("needs all four first-party backends")
    run = ekd.Run(tmp_path, tiny_config(data_path, "ani:2,mace:1,nequip:1,hippynn:1", "ani"), show_progress=False)
    run.teach()
    labels = run.label()
    assert [t.backend for t in labels.teachers] == ["ani", "ani", "mace", "nequip", "hippynn"]
    assert labels.member_forces.shape == (5, labels.data.n_atoms, 3)
    check_labels_are_the_teachers_mean(run)
    assert np.all(labels.force_spread > 0)
