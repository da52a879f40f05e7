"""Every first-party backend teaches every other, on a slice of the embedded reference set."""

import itertools

import numpy as np
import pytest

import ekd.pipeline as pipeline
from ekd.data import load_default, read_labels, write
from ekd.plugins import backends, get_backend
from ekd.runconfig import RunConfig

FIRST_PARTY = [name for name in ("ani", "mace", "nequip") if name in backends()]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    frames = load_default(with_forces=True)
    picked = np.concatenate([np.flatnonzero(frames.molecule == name)[:6] for name in frames.molecules])
    path = tmp_path_factory.mktemp("pairs") / "slice.h5"
    write(frames.subset(picked), path)
    return path


def tiny_config(data_path, teachers, student):
    names = {part.split(":")[0] for part in teachers.split(",")} | {student}
    return RunConfig.load(
        None,
        {
            "data.path": str(data_path),
            "teachers.spec": teachers,
            "teachers.options": {name: get_backend(name).tiny for name in names},
            "teachers.variations": {},
            "student.backend": student,
            "student.options": get_backend(student).tiny,
            "student.seeds": 1,
            "train": {"epochs": 2, "batch_size": 16, "device": "cpu"},
            "evaluate.files": [],
        },
    )


@pytest.mark.slow
@pytest.mark.parametrize("teacher, student", list(itertools.product(FIRST_PARTY, repeat=2)))
def test_teacher_student_pair_runs_end_to_end(tmp_path, data_path, teacher, student):
    report = pipeline.run(tmp_path, tiny_config(data_path, f"{teacher}:1", student), show_progress=False)
    scores = report["models"]["student seed-200"]["held-out test"]
    assert np.isfinite(scores["force_mae"]) and np.isfinite(scores["energy_mae"])


@pytest.mark.slow
def test_mixed_ensemble_labels_forces(tmp_path, data_path):
    if FIRST_PARTY != ["ani", "mace", "nequip"]:
        pytest.skip("needs all three first-party backends")
    config = tiny_config(data_path, "ani:2,mace:1,nequip:1", "ani")
    pipeline.teach(tmp_path, config, show_progress=False)
    labels = read_labels(pipeline.label(tmp_path, config, show_progress=False))
    teachers = labels.metadata["provenance"]["teachers"]
    assert [t["backend"] for t in teachers] == ["ani", "ani", "mace", "nequip"]
    assert labels.atom_data["teacher_forces"].shape == (labels.n_atoms, 4, 3)
    np.testing.assert_allclose(labels.forces, labels.atom_data["teacher_forces"].mean(axis=1))
    assert np.all(labels.atom_data["force_spread"] > 0)
