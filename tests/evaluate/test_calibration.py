"""The calibration of the teachers' force spread against true force errors."""

import numpy as np
import pytest

from ekd.evaluate.calibration import calibration_plot, force_calibration, spearman
from ekd.testing import labelled_molecules
from ekd.units import KCAL_PER_MOL


def test_spearman_is_the_correlation_of_ranks():
    assert spearman([1.0, 2.0, 3.0], [30.0, 10.0, 20.0]) == pytest.approx(-0.5)
    assert spearman([0.1, 5.0, 7.0, 9.0], [1.0, 2.0, 40.0, 41.0]) == pytest.approx(1.0)  # monotone, not linear


def test_a_spread_that_orders_the_errors_scores_one_and_a_shuffled_one_about_zero(tmp_path):
    frames = labelled_molecules(4)
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.01, 1.0, frames.n_atoms)
    direction = rng.normal(size=(frames.n_atoms, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    result = force_calibration(frames, spread, {
        "faithful": frames.forces + 2 * spread[:, None] * direction,  # error = 2 × spread, atom by atom
        "blind": frames.forces + 2 * rng.permutation(spread)[:, None] * direction,
    })
    faithful = result["faithful"]
    assert faithful["per_atom"]["spearman"] == pytest.approx(1.0) and faithful["per_conformation"]["spearman"] == pytest.approx(1.0)
    bins = faithful["per_atom"]["bins"]
    assert sum(b["n"] for b in bins) == frames.n_atoms and len(bins) == 8
    assert [b["error"] for b in bins] == pytest.approx([2 * b["spread"] for b in bins])
    assert bins[-1]["spread"] == pytest.approx(np.sort(spread)[-len(np.array_split(spread, 8)[-1]):].mean() / KCAL_PER_MOL)
    assert sum(b["n"] for b in faithful["per_conformation"]["bins"]) == len(frames)
    assert abs(result["blind"]["per_atom"]["spearman"]) < 0.2
    assert calibration_plot(result, tmp_path / "calibration.png", "test").stat().st_size > 10_000
