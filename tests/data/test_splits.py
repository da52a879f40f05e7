import numpy as np
import pytest

from ekd.data import Dataset, molecule_split, random_split
from ekd.errors import ConfigError


def _frames(n_per_molecule=10, molecules=("a", "b", "c", "d", "e")):
    n = n_per_molecule * len(molecules)
    return Dataset.from_arrays(
        numbers=[np.array([1, 1])] * n,
        positions=[np.full((2, 3), i, dtype=float) for i in range(n)],
        molecule=[m for m in molecules for _ in range(n_per_molecule)],
        energy=np.arange(n, dtype=float),
    )


def test_random_split_is_a_seeded_partition():
    frames = _frames()
    parts = random_split(frames, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [40, 5, 5]
    assert sorted(np.concatenate([p.energy for p in parts])) == list(range(50))
    again = random_split(frames, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(p.energy, q.energy) for p, q in zip(parts, again))
    other = random_split(frames, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[1].energy, other[1].energy)


def test_molecule_split_never_shares_a_molecule():
    parts = molecule_split(_frames(), (0.6, 0.2, 0.2), seed=0)
    names = [set(p.molecule) for p in parts]
    assert [len(n) for n in names] == [3, 1, 1]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(len(p) for p in parts) == 50


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (-0.1, 1.1)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        random_split(_frames(), fractions)
