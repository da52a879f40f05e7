import numpy as np
import pytest

from ekd.data import Dataset, formula
from ekd.errors import DataError


def test_formula_is_hill_ordered():
    assert formula(np.array([8, 1, 6, 1, 1, 1])) == "CH4O"
    assert formula(np.array([8, 1, 1])) == "H2O"
    assert formula(np.array([7, 1, 1, 1])) == "H3N"


def test_subset_keeps_atoms_with_their_conformation(harmonic):
    frames = harmonic(5)
    sub = frames.subset([3, 1])
    assert len(sub) == 2 and sub.n_atoms == 6
    np.testing.assert_array_equal(sub.positions[:3], frames.positions[9:12])
    np.testing.assert_array_equal(sub.forces[3:], frames.forces[3:6])
    np.testing.assert_array_equal(sub.energy, frames.energy[[3, 1]])


def test_concatenate_offsets_atom_pointers(harmonic):
    a, b = harmonic(3, seed=1), harmonic(4, seed=2)
    both = Dataset.concatenate([a, b])
    assert len(both) == 7 and both.ptr[-1] == both.n_atoms == 21
    np.testing.assert_array_equal(both.positions[both.atoms_of(3)], b.positions[b.atoms_of(0)])
    assert Dataset.concatenate([a, b.without_forces()]).forces is None


def test_batches_cover_every_conformation_once_and_shuffle_is_seeded(harmonic):
    frames = harmonic(10)
    seen = np.concatenate([b.energy for b in frames.batches(3, shuffle=True, seed=4)])
    assert sorted(seen) == sorted(frames.energy)
    again = np.concatenate([b.energy for b in frames.batches(3, shuffle=True, seed=4)])
    np.testing.assert_array_equal(seen, again)
    assert [len(b) for b in frames.batches(4)] == [4, 4, 2]


def test_mixed_sizes_from_arrays():
    frames = Dataset.from_arrays(
        numbers=[np.array([1, 1]), np.array([6, 1, 1, 1, 1])],
        positions=[np.zeros((2, 3)), np.ones((5, 3))],
        molecule=["H2", "CH4"],
        energy=np.array([-1.0, -2.0]),
    )
    assert list(frames.sizes) == [2, 5] and frames.elements == [1, 6]
    assert list(frames.conformation_index) == [0, 0, 1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(positions=np.zeros((3, 2))), "positions shape"),
        (dict(energy=np.array([np.nan])), "non-finite energy"),
        (dict(forces=np.zeros((2, 3))), "forces shape"),
        (dict(molecule=np.array(["a", "b"])), "molecule ids"),
    ],
)
def test_invalid_arrays_are_refused_with_the_source_named(change, message):
    good = dict(
        numbers=np.array([8, 1, 1]),
        positions=np.zeros((3, 3)),
        ptr=np.array([0, 3]),
        molecule=np.array(["H2O"]),
        energy=np.array([-1.0]),
        metadata={"source": "water.h5", "energy_key": "E"},
    )
    with pytest.raises(DataError, match=f"water.h5.*{message}"):
        Dataset(**{**good, **change})


def test_check_elements_names_the_file_and_missing_element(harmonic):
    frames = harmonic(2)
    frames.check_elements([1, 6, 7, 8], "ani")
    with pytest.raises(DataError, match="harmonic: element.* O not supported by toy"):
        frames.check_elements([1, 6], "toy")
