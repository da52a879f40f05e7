import h5py
import numpy as np
import pytest

from ekd.data import Labels, TeacherRecord, read, read_labels, write
from ekd.data.labels import LABELS_FORMAT_VERSION, ensemble_statistics, make_provenance
from ekd.errors import DataError

TEACHERS = [TeacherRecord("ani", "ani:0", "ab" * 32, 0), TeacherRecord("mace", "mace:0", "cd" * 32, 1)]


def _labels(frames, config=None):
    first = np.ones((frames.n_atoms, 3))
    return Labels(frames.without_forces(), np.stack([first, 3 * first]), TEACHERS, np.stack([frames.energy, frames.energy + 2.0]),
                  [{"name": "02-ani", "reason": "stuck"}], make_provenance(frames, config))


def test_labels_round_trip_gives_teacher_mean_as_force_labels(tmp_path, harmonic):
    source = tmp_path / "src.h5"
    write(harmonic(4), source)
    frames = read(source)
    _labels(frames, {"seed": 7}).write(tmp_path / "labels.h5")
    labels = Labels.read(tmp_path / "labels.h5")
    np.testing.assert_allclose(labels.mean_forces, 2.0)  # mean of 1 and 3
    # spread: rms distance of the two teacher vectors (1,1,1), (3,3,3) from (2,2,2) = sqrt(3)
    np.testing.assert_allclose(labels.force_spread, np.sqrt(3.0))
    np.testing.assert_allclose(labels.member_forces[1], 3.0)
    np.testing.assert_allclose(labels.mean_energy, frames.energy + 1.0)
    view = read_labels(tmp_path / "labels.h5")
    np.testing.assert_allclose(view.forces, 2.0)
    np.testing.assert_allclose(view.atom_data["force_spread"], np.sqrt(3.0))
    np.testing.assert_allclose(view.atom_data["teacher_forces"][:, 1], 3.0)
    np.testing.assert_array_equal(view.energy, frames.energy)
    np.testing.assert_allclose(Labels.read(tmp_path / "labels.h5").dataset("teachers").energy, frames.energy + 1.0)
    np.testing.assert_allclose(read(tmp_path / "labels.h5").forces, 2.0)  # the generic reader gives the same
    assert labels.left_out == [{"name": "02-ani", "reason": "stuck"}]


def test_labels_never_store_the_reference_forces_and_carry_a_version(tmp_path, harmonic):
    frames = harmonic(3)
    _labels(frames).write(tmp_path / "labels.h5")
    with h5py.File(tmp_path / "labels.h5") as handle:
        assert "forces" not in handle
        assert handle.attrs["labels_format_version"] == LABELS_FORMAT_VERSION
    with h5py.File(tmp_path / "labels.h5", "a") as handle:
        handle.attrs["labels_format_version"] = LABELS_FORMAT_VERSION + 1
    with pytest.raises(DataError, match=f"labels format version {LABELS_FORMAT_VERSION + 1}, this ekd reads version {LABELS_FORMAT_VERSION}"):
        Labels.read(tmp_path / "labels.h5")


def test_provenance_records_teachers_source_and_versions(tmp_path, harmonic):
    source = tmp_path / "src.h5"
    write(harmonic(3), source)
    frames = read(source)
    _labels(frames, {"seed": 7}).write(tmp_path / "labels.h5")
    labels = Labels.read(tmp_path / "labels.h5")
    assert [t.backend for t in labels.teachers] == ["ani", "mace"]
    assert labels.teachers[0].checkpoint_sha256 == "ab" * 32
    assert labels.source_sha256 == frames.metadata["sha256"] and len(labels.source_sha256) == 64
    assert labels.provenance["config"] == {"seed": 7} and "ekd" in labels.provenance["versions"]


def test_labels_are_checked_against_the_data(tmp_path, harmonic):
    source = tmp_path / "src.h5"
    write(harmonic(4), source)
    frames = read(source)
    labels = _labels(frames)
    labels.check_matches(frames)
    with pytest.raises(DataError, match="labels were made from data with sha256"):
        labels.check_matches(frames.with_metadata(sha256="0" * 64))
    moved = read(source).with_metadata(sha256=frames.metadata["sha256"])
    moved.positions[:] += 0.1
    with pytest.raises(DataError, match="labelled conformations differ"):
        labels.check_matches(moved)


def test_ensemble_statistics_by_hand():
    forces = np.array([[[0.0, 0.0, 1.0]], [[0.0, 0.0, -1.0]], [[0.0, 3.0, 0.0]]])
    mean, spread = ensemble_statistics(forces)
    np.testing.assert_allclose(mean, [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(spread, [np.sqrt((2 + 2 + 4) / 3)])


def test_wrong_teacher_shapes_and_non_labels_files(tmp_path, harmonic):
    frames = harmonic(3)
    with pytest.raises(DataError, match=r"teacher forces shape \(2, 4, 3\), expected \(2, 9, 3\)"):
        Labels(frames, np.zeros((2, 4, 3)), TEACHERS)
    write(frames, tmp_path / "plain.h5")
    with pytest.raises(DataError, match="plain.h5: not an ekd labels file"):
        Labels.read(tmp_path / "plain.h5")
