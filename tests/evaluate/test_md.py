"""MD stability: bonds from covalent radii, a good model stays intact at room temperature and
near its thermostat's temperature, dissociation and non-finite forces are caught, outputs."""

import json

import numpy as np
import pytest
from ase.io import read as ase_read

from ekd.cli import main
from ekd.data import DEFAULT_DATASET, load_default
from ekd.ensemble import load_pretrained
from ekd.evaluate.md import MDSettings, bonds, md_stability

pytest.importorskip("ekd_ani")


@pytest.fixture(scope="module")
def ani1x_member(ani1x):
    return load_pretrained("ani", ani1x, device="cpu")[0]


def molecules(*names):
    frames = load_default(with_forces=False)
    return frames.subset(np.flatnonzero(np.isin(frames.molecule, names)))


# atom order in the embedded set: H2O [O H H], CH4 [C H H H H], HCN [C N H], HCOOH [O C O H H]
@pytest.mark.parametrize(
    "name, expected",
    [
        ("H2O", {(0, 1), (0, 2)}),
        ("CH4", {(0, 1), (0, 2), (0, 3), (0, 4)}),
        ("HCN", {(0, 1), (0, 2)}),
        ("HCOOH", {(0, 1), (0, 3), (1, 2), (1, 4)}),  # no H···H, no O···O
    ],
)
def test_bonds_of_the_starting_geometry(name, expected):
    frames = molecules(name)
    atoms = frames.atoms_of(0)
    pairs, lengths = bonds(frames.numbers[atoms], frames.positions[atoms])
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert np.all((lengths > 0.9) & (lengths < 1.4))


def test_a_good_model_keeps_molecules_intact_near_the_thermostat_temperature(ani1x_member):
    results = md_stability(ani1x_member, molecules("CH3OH", "HCOOH"), MDSettings(steps=1000), show_progress=False)
    assert results["n_stable"] == results["n_molecules"] == 2 and results["fraction_stable"] == 1.0
    for run in results["molecules"].values():
        assert run["steps_run"] == 1000 and run["time_ps"] == pytest.approx(0.5)
        assert 0.02 < run["max_bond_deviation"] < 0.35  # bonds vibrate, none breaks
        assert 200 < run["mean_temperature_K"] < 450  # a unit slip in T, dt or friction lands far off


def test_dissociation_at_high_temperature_ends_the_run(ani1x_member, tmp_path):
    settings = MDSettings(steps=1000, temperature_K=20000)
    results = md_stability(ani1x_member, molecules("H2O"), settings, trajectory_dir=tmp_path, show_progress=False)
    run = results["molecules"]["H2O"]
    assert not run["stable"] and results["n_stable"] == 0
    assert run["max_bond_deviation"] > settings.max_bond_deviation and run["steps_run"] < settings.steps
    assert results["mean_time_ps"] == pytest.approx(run["steps_run"] * 0.5 / 1000)
    frames = ase_read(tmp_path / "H2O.traj", index=":")
    assert len(frames) == run["steps_run"] // settings.check_every  # one frame per check


class NanForces:
    """A predictor whose forces are not finite (a model that broke)."""

    species = [1, 6, 7, 8]

    def predict(self, frames, forces=True):
        from types import SimpleNamespace

        n = len(frames.numbers)
        return SimpleNamespace(energy=np.zeros(len(frames)), forces=np.full((n, 3), np.nan) if forces else None)


def test_non_finite_forces_fail_at_the_first_check():
    results = md_stability(NanForces(), molecules("NH3"), MDSettings(steps=100), show_progress=False)
    run = results["molecules"]["NH3"]
    assert not run["stable"] and run["steps_run"] == 10 and run["max_bond_deviation"] is None
    json.dumps(results, allow_nan=False)  # strict JSON


def test_cli_prints_a_table_and_writes_json(capsys, ani1x, tmp_path):
    out = tmp_path / "md.json"
    main(["md", f"ani-pretrained:{ani1x}", "--data", str(DEFAULT_DATASET), "--steps", "20", "--molecules", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "stable: 3/3 molecules over 0.01 ps at 300 K" in printed and "CH4" in printed and "HCN" not in printed
    saved = json.loads(out.read_text())
    assert saved["settings"]["steps"] == 20 and saved["units"]["time"] == "ps" and list(saved["molecules"]) == ["H2O", "NH3", "CH4"]


def test_elements_the_model_lacks_are_refused_before_any_step(ani1x_member, shared_data):
    from ekd.data import read
    from ekd.errors import DataError

    with pytest.raises(DataError, match="element\\(s\\) F S Cl not supported by the model"):
        md_stability(ani1x_member, read(shared_data / "ani2x/ani2x_dimers.h5"), show_progress=False)
