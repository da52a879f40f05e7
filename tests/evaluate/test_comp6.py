"""COMP6 metrics against hand-computed values and on the real S66x8 file."""


import numpy as np
import pytest

from ekd.data import Dataset, read
from ekd.evaluate import comp6_errors, comp6_metrics, evaluate, refit_offsets, relative_energy_sums
from ekd.evaluate.comp6 import ErrorSums
from ekd.model import Prediction
from ekd.units import KCAL_PER_MOL


class Shifted:
    """A fake predictor: the reference plus chosen errors (eV, eV/Å)."""

    def __init__(self, energy_error, force_error=0.0):
        self.energy_error, self.force_error = energy_error, force_error

    def predict(self, frames, forces=True, batch_size=256):
        energy = frames.energy + self.energy_error(frames)
        return Prediction(energy, None if not forces else frames.forces + self.force_error)


def test_relative_energy_sums_by_hand():
    # molecule a: residuals (1, 3, 6) -> pair differences 1-3, 1-6, 3-6 = -2, -5, -3; molecule b: one conformation
    predicted = np.array([1.0, 6.0, 3.0, 10.0])
    errors = relative_energy_sums(predicted, np.zeros(4), np.array(["a", "a", "a", "b"]))
    assert errors == ErrorSums(3, 10.0, 38.0)


def test_relative_energy_sums_equal_those_of_every_pair():
    rng = np.random.default_rng(5)
    molecule = rng.choice(["a", "b", "c"], size=300)
    predicted, reference = rng.normal(size=300), rng.normal(size=300) + 4.0
    pairs = []
    for name in "abc":
        r = (predicted - reference)[molecule == name]
        i, j = np.triu_indices(len(r), 1)
        pairs.append(r[i] - r[j])
    count, absolute, squared = relative_energy_sums(predicted, reference, molecule)
    assert count == sum(map(len, pairs))
    assert absolute == pytest.approx(np.abs(np.concatenate(pairs)).sum(), rel=1e-12)
    assert squared == pytest.approx((np.concatenate(pairs) ** 2).sum(), rel=1e-12)


def test_metrics_by_hand():
    frames = Dataset.from_arrays(
        numbers=[np.array([1, 1])] * 3,
        positions=[np.zeros((2, 3)) + i for i in range(3)],
        molecule=["a", "a", "b"],
        energy=np.zeros(3),
        forces=[np.zeros((2, 3))] * 3,
    )
    energy = np.array([1.0, -1.0, 2.0]) * KCAL_PER_MOL
    forces = np.zeros((6, 3))
    forces[0, 0] = 3 * KCAL_PER_MOL
    metrics = comp6_metrics(comp6_errors(frames, energy, forces))
    assert metrics["energy_mae"] == pytest.approx(4 / 3)
    assert metrics["energy_rmse"] == pytest.approx(np.sqrt(6 / 3))
    assert metrics["relative_energy_mae"] == pytest.approx(2.0)  # one pair (a): 1 - (-1)
    assert metrics["force_mae"] == pytest.approx(3 / 18)
    assert metrics["force_rmse"] == pytest.approx(np.sqrt(9 / 18))


def test_refit_removes_per_element_offsets():
    frames = Dataset.from_arrays(
        numbers=[np.array([1, 1]), np.array([8, 1]), np.array([8, 8]), np.array([8, 1, 1])],
        positions=[np.zeros((n, 3)) for n in (2, 2, 2, 3)],
        molecule=["a", "b", "c", "d"],
        energy=np.array([-1.0, -5.0, -9.0, -6.0]),
    )
    offsets = {1: 0.5, 8: -2.0}
    shifted = frames.energy - np.array([sum(offsets[int(z)] for z in frames.numbers[frames.atoms_of(i)]) for i in range(4)])
    fixed, fitted = refit_offsets(frames, shifted)
    np.testing.assert_allclose(fixed, frames.energy, atol=1e-12)
    assert fitted == pytest.approx(offsets)


def test_s66x8_pooling_counts_and_values(shared_data):
    frames = read(shared_data / "comp6/s66x8_wb97x6-31gd.h5")
    assert len(frames) == 528 and len(frames.molecules) == 66
    # a constant +1 kcal/mol error: energy MAE 1, relative energy error 0; forces off by 0.5 everywhere
    predictor = Shifted(lambda f: np.full(len(f), KCAL_PER_MOL), 0.5 * KCAL_PER_MOL)
    errors = comp6_errors(frames, predictor.predict(frames).energy, predictor.predict(frames).forces)
    assert errors["relative_energy"].count == 66 * 28 and errors["force"].count == 3 * frames.n_atoms
    result = evaluate(predictor, {"s66x8": frames, "again": frames})
    assert result["s66x8"]["energy_mae"] == pytest.approx(1.0)
    assert result["s66x8"]["relative_energy_mae"] == pytest.approx(0.0, abs=1e-9)
    assert result["all"]["force_rmse"] == pytest.approx(0.5)
    assert result["s66x8"]["n_molecules"] == 66


def test_parity_plots_are_written(tmp_path, harmonic):
    frames = harmonic(6)
    evaluate(Shifted(lambda f: 0.01 * np.arange(len(f)), 0.02), {"toy": frames}, plot_dir=tmp_path)
    png = tmp_path / "parity_toy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
