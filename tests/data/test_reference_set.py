"""The embedded reference set: size, content, hidden forces, and PySCF reproducing it."""

import json

import numpy as np
import pytest

from ekd.data import DEFAULT_DATASET, load_default, measure_force_sign, read


@pytest.fixture(scope="module")
def reference():
    return load_default(with_forces=True)


def test_size_molecules_and_level_of_theory(reference):
    assert len(reference) >= 1500 and len(reference.molecules) >= 8
    assert reference.elements == [1, 6, 7, 8]
    assert reference.metadata["level_of_theory"] == "wB97X/6-31G(d)"
    generator = json.loads(reference.metadata["generator"])
    assert generator["xc"] == "wb97x" and generator["basis"] == "6-31g*"


def test_forces_are_held_out_unless_asked(reference):
    assert load_default().forces is None
    assert reference.forces is not None and np.isfinite(reference.forces).all()


def test_forces_agree_with_energies_by_finite_differences(reference):
    check = measure_force_sign(reference)
    assert check.n_pairs > 100 and 0.95 < check.slope < 1.05


def test_the_script_s_reference_calculator_reproduces_a_stored_conformation(reference):
    """scripts/make_reference_set.py labels through ekd's pyscf reference with REFERENCE_OPTIONS."""
    pytest.importorskip("pyscf")
    import importlib.util
    from pathlib import Path

    from ekd.reference import get_reference

    spec = importlib.util.spec_from_file_location("make_reference_set", Path(__file__).parents[2] / "scripts/make_reference_set.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    water = int(np.flatnonzero(reference.molecule == "H2O")[7])
    rows = reference.atoms_of(water)
    pyscf = get_reference("pyscf")
    result = pyscf.compute(reference.numbers[rows], reference.positions[rows], pyscf.Options(**script.REFERENCE_OPTIONS), forces=True)
    assert list(reference.numbers[rows]) == [8, 1, 1]
    assert result.energy == pytest.approx(reference.energy[water], abs=1e-6)
    np.testing.assert_allclose(result.forces, reference.forces[rows], atol=1e-5)


def test_the_file_ships_inside_the_package():
    assert DEFAULT_DATASET.is_file() and DEFAULT_DATASET.parent.name == "datasets"
    assert read(DEFAULT_DATASET).metadata["format"] == "ekd"
