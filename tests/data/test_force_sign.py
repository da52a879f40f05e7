import numpy as np

from ekd.data import measure_force_sign


def test_harmonic_surface_gives_slope_one(harmonic):
    check = measure_force_sign(harmonic(30, step=0.01))
    assert check.verdict == "consistent" and abs(check.slope - 1) < 0.02 and check.n_pairs >= 10


def test_gradients_stored_as_forces_are_detected(harmonic):
    frames = harmonic(30, step=0.01)
    check = measure_force_sign(frames.with_forces(-frames.forces))
    assert check.verdict == "flipped" and abs(check.slope + 1) < 0.02


def test_far_apart_or_unlabelled_conformations_are_inconclusive(harmonic):
    assert measure_force_sign(harmonic(30, step=2.0), max_displacement=0.1).verdict == "inconclusive"
    assert measure_force_sign(harmonic(5).without_forces()).n_pairs == 0
    assert np.isnan(measure_force_sign(harmonic(5).without_forces()).slope)
