"""The embedded periodic set (``embedded:metals``): what it holds, EMT reproducing its labels and
its materials ground truth, and the materials checks' units."""

import numpy as np
import pytest
from ase import units
from ase.calculators.emt import EMT

import ekd
from ekd.evaluate.materials import crystal, lattice_and_bulk_modulus, material_properties, materials_metrics


@pytest.fixture(scope="module")
def metals():
    return ekd.Dataset.embedded(with_forces=True, name="metals")


def test_size_systems_and_held_out_derivatives(metals):
    assert len(metals) == 784 and metals.periodic.all() and set(metals.sizes) <= set(range(8, 17))
    kinds = {name.split("/")[1].split("-")[0] for name in metals.molecules}
    assert kinds == {"md", "strain", "vacancy", "slab"}
    slabs = np.char.endswith(metals.molecule.astype(str), "/slab")
    assert (metals.pbc[slabs] == [True, True, False]).all() and metals.pbc[~slabs].all()
    assert metals.metadata["level_of_theory"] == "EMT"
    plain = ekd.Dataset.embedded(name="metals")
    assert plain.forces is None and plain.stress is None and plain.energy is not None
    assert ekd.data.read("embedded:metals").metadata["sha256"] == metals.metadata["sha256"]
    with pytest.raises(ekd.ConfigError, match="embedded:nope: no such embedded dataset; expected one of embedded:molecules, embedded:metals"):
        ekd.data.read("embedded:nope")


def test_emt_reproduces_the_stored_energies_forces_and_stresses(metals):
    for i in np.random.default_rng(0).choice(len(metals), 12, replace=False):
        atoms = metals.subset([i]).to_atoms()[0]
        stored = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
        atoms.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(stored[0], abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), stored[1], atol=1e-9)
        np.testing.assert_allclose(atoms.get_stress(), stored[2], atol=1e-11)


def test_the_stored_ground_truth_is_what_the_evaluator_computes_with_emt(metals):
    materials = metals.metadata["materials"]
    copper = next(s for s in materials["systems"] if s["name"] == "Cu")
    truth = materials["ground_truth"]["Cu"]
    assert material_properties(EMT(), copper) == pytest.approx(truth, rel=1e-6)
    assert 3.5 < truth["lattice_constant"] < 3.7 and truth["vacancy_formation_energy"] > 0.5 and truth["surface_energy_111"] > 0.5
    assert set(materials["ground_truth"]["CuNi"]) == {"lattice_constant", "bulk_modulus"}


def test_the_bulk_modulus_is_minus_v_dp_dv_from_emts_own_stress():
    """Units and fit checked against an independent route: the pressure from EMT's stress."""
    system = {"name": "Cu", "symbols": "Cu", "a": 3.59}
    a0, modulus = lattice_and_bulk_modulus(EMT(), system)
    pressure, volume = [], []
    for scale in (0.998, 1.002):
        atoms = crystal(system, a0 * scale)
        atoms.calc = EMT()
        pressure.append(-atoms.get_stress()[:3].mean())
        volume.append(atoms.get_volume())
    from_stress = -np.mean(volume) * (pressure[1] - pressure[0]) / (volume[1] - volume[0]) / units.GPa
    assert modulus == pytest.approx(from_stress, rel=0.02)
    atoms = crystal(system, a0)
    atoms.calc = EMT()
    assert np.abs(atoms.get_stress()[:3]).max() / units.GPa < 0.1  # the fitted a0 is stress-free


def test_a_crystal_without_a_minimum_is_reported_not_fitted():
    class Repulsive(EMT):  # energy falls all the way to the expanded end
        def get_potential_energy(self, atoms=None, force_consistent=False):
            return -atoms.get_volume()

    result = material_properties(Repulsive(), {"name": "Cu", "symbols": "Cu", "a": 3.59})
    assert result == {"failed": "no energy minimum within ±4% of a = 3.590 Å (lowest at the expanded end)"}


def test_materials_metrics_are_in_mev_per_atom_mev_per_a_and_gpa(metals):
    part = metals.subset(np.arange(0, 784, 98))
    energy = part.energy + 0.002 * part.sizes  # 2 meV/atom off
    forces = part.forces + 0.010  # 10 meV/Å off in each component
    stress = part.stress - 3 * units.GPa
    metrics = materials_metrics(part, energy, forces, stress)
    assert metrics == pytest.approx({"energy_per_atom_mae_meV": 2.0, "force_mae_meV": 10.0, "stress_mae_GPa": 3.0})


def test_data_info_names_the_periodic_cells_and_stresses(capsys):
    from ekd.cli import main

    main(["data", "info", "embedded:metals"])
    out = capsys.readouterr().out
    assert "periodic                784 of 784 (pbc T T F: 72, T T T: 712)" in out and "stress                  yes" in out
    main(["data", "info"])
    assert "periodic                none (molecules)" in capsys.readouterr().out
