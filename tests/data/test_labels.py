import numpy as np
import pytest

from ekd.data import TeacherRecord, read, read_labels, read_provenance, write, write_labels
from ekd.data.labels import ensemble_statistics
from ekd.errors import DataError

TEACHERS = [TeacherRecord("ani", "ani:0", "ab" * 32, 0), TeacherRecord("mace", "mace:0", "cd" * 32, 1)]


def _teacher_forces(frames):
    first = np.ones((frames.n_atoms, 3))
    return np.stack([first, 3 * first])


def test_labels_round_trip_gives_teacher_mean_as_force_labels(tmp_path, harmonic):
    source = tmp_path / "src.h5"
    write(harmonic(4), source)
    frames = read(source)
    write_labels(tmp_path / "labels.h5", frames, _teacher_forces(frames), TEACHERS, config={"seed": 7})
    labels = read_labels(tmp_path / "labels.h5")
    np.testing.assert_allclose(labels.forces, 2.0)  # mean of 1 and 3
    # spread: rms distance of the two teacher vectors (1,1,1), (3,3,3) from (2,2,2) = sqrt(3)
    np.testing.assert_allclose(labels.atom_data["force_spread"], np.sqrt(3.0))
    np.testing.assert_allclose(labels.atom_data["teacher_forces"][:, 1], 3.0)
    np.testing.assert_array_equal(labels.energy, frames.energy)
    assert read(tmp_path / "labels.h5").forces is not None  # the generic reader gives the same


def test_labels_never_store_the_reference_forces(tmp_path, harmonic):
    import h5py

    frames = harmonic(3)
    write_labels(tmp_path / "labels.h5", frames, _teacher_forces(frames), TEACHERS)
    with h5py.File(tmp_path / "labels.h5") as handle:
        assert "forces" not in handle


def test_provenance_records_teachers_source_and_versions(tmp_path, harmonic):
    source = tmp_path / "src.h5"
    write(harmonic(3), source)
    frames = read(source)
    write_labels(tmp_path / "labels.h5", frames, _teacher_forces(frames), TEACHERS, config={"seed": 7})
    provenance = read_provenance(tmp_path / "labels.h5")
    assert [t["backend"] for t in provenance["teachers"]] == ["ani", "mace"]
    assert provenance["teachers"][0]["checkpoint_sha256"] == "ab" * 32
    assert provenance["source_sha256"] == frames.metadata["sha256"] and len(provenance["source_sha256"]) == 64
    assert provenance["config"] == {"seed": 7} and "ekd" in provenance["versions"]


def test_ensemble_statistics_by_hand():
    forces = np.array([[[0.0, 0.0, 1.0]], [[0.0, 0.0, -1.0]], [[0.0, 3.0, 0.0]]])
    mean, spread = ensemble_statistics(forces)
    np.testing.assert_allclose(mean, [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(spread, [np.sqrt((2 + 2 + 4) / 3)])


def test_wrong_teacher_shapes_and_non_labels_files(tmp_path, harmonic):
    frames = harmonic(3)
    with pytest.raises(DataError, match=r"teacher forces shape \(2, 4, 3\), expected \(2, 9, 3\)"):
        write_labels(tmp_path / "l.h5", frames, np.zeros((2, 4, 3)), TEACHERS)
    write(frames, tmp_path / "plain.h5")
    with pytest.raises(DataError, match="plain.h5: not an ekd labels file"):
        read_labels(tmp_path / "plain.h5")
