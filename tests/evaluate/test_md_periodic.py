"""MD in a periodic box: NVT of a metal cell stays stable with a good potential (EMT, the metals
set's ground truth), and a collapsing or overheating cell is caught by the closest pair (images
included) or the temperature."""

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

import ekd
from ekd.evaluate.md import MDSettings, closest_pair_ratio, md_stability
from ekd.model import Prediction


class AsePredictor:
    """The predictor interface over an ASE calculator factory (EMT: the ground truth)."""

    species = [13, 28, 29]

    def __init__(self, make):
        self.make = make

    def predict(self, frames, forces=True, stress=False):
        atoms = frames.to_atoms()[0]
        atoms.calc = self.make()
        return Prediction(np.array([atoms.get_potential_energy()]), atoms.get_forces() if forces else None, atoms.get_stress()[None] if stress else None)


class Collapsing(EMT):
    """EMT plus a strong pull of every atom towards the first: the cell implodes."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        pull = self.atoms.get_distances(0, range(len(self.atoms)), mic=True, vector=True)
        self.results["forces"] = self.results["forces"] + 40.0 * pull


@pytest.fixture(scope="module")
def copper():
    metals = ekd.Dataset.embedded(name="metals")
    return metals.subset(np.flatnonzero(np.isin(metals.molecule, ["Cu/md-300K", "Cu/slab"])))


def test_a_good_potential_keeps_bulk_and_slab_stable_near_the_thermostat(copper, tmp_path):
    settings = MDSettings(steps=300, timestep_fs=2.0, temperature_K=600.0, check_every=20)
    results = md_stability(AsePredictor(EMT), copper, settings, trajectory_dir=tmp_path, show_progress=False)
    assert results["n_stable"] == 2
    for name, run in results["molecules"].items():
        assert run["min_distance_ratio"] > 0.8 and run["max_temperature_K"] < 3 * 600 and "max_bond_deviation" not in run
        assert 200 < run["mean_temperature_K"] < 1200
    assert (tmp_path / "Cu_slab.traj").is_file()
    json.dumps(results, allow_nan=False)


@pytest.mark.parametrize("check", ["closest pair", "temperature"])
def test_a_collapsing_cell_fails_on_either_check(copper, check):
    """Each check alone ends the run (the other one switched off)."""
    off = {"max_temperature_factor": 1e9} if check == "closest pair" else {"min_distance_factor": 1e-6}
    settings = MDSettings(steps=400, timestep_fs=2.0, **off)
    run = md_stability(AsePredictor(Collapsing), copper.subset([0]), settings, show_progress=False)["molecules"]["Cu/md-300K"]
    assert not run["stable"] and run["steps_run"] < 400
    assert run["min_distance_ratio"] < 0.5 if check == "closest pair" else run["max_temperature_K"] > 900


def test_the_closest_pair_sees_periodic_images():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6)  # one atom: its only neighbours are its own images
    assert closest_pair_ratio(atoms) == pytest.approx(3.6 / np.sqrt(2) / (2 * 1.32), rel=1e-3)
