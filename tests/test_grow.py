"""ekd grow: rounds of sampling, selection by the teachers' spread and reference energies (EMT
as the reference, the example backend as teachers and student)."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

import ekd
import ekd.reference as reference_module
from ekd.errors import ConfigError
import ekd.active as active
from ekd.active import GrowSettings, grow, sample, select
from ekd.reference import compute_reference
from ekd.runconfig import RunConfig
from ekd.testing import test_molecules

EMT_REFERENCE = {"calculator": "ase.calculators.emt:EMT"}
TINY = {"width": 8, "n_rbf": 8}


def emt_energy(numbers, positions):
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = EMT()
    return atoms.get_potential_energy()


def test_select_takes_the_highest_spread_but_no_near_copies():
    frames = test_molecules(3, seed=1)  # 5 molecules, 3 conformations each, displaced by about 0.05 Å
    copy = frames.subset([0]).with_metadata()
    shifted = ekd.Dataset.concatenate([frames, copy])  # row 15 is a copy of row 0 moved by nothing
    scores = np.arange(len(shifted), dtype=float)
    scores[0], scores[15] = 100.0, 99.0  # the two most uncertain are the same geometry
    chosen = select(shifted, scores, 3, min_distance=0.01, rng=np.random.default_rng(0))
    assert list(chosen) == [0, 13, 14]  # the copy is skipped, then the next highest
    assert list(select(shifted, scores, 3, min_distance=0.0, rng=np.random.default_rng(0))) == [0, 14, 15]
    random = select(shifted, None, 4, min_distance=0.01, rng=np.random.default_rng(0))
    assert len(set(random)) == 4 and list(random) == sorted(random)


def test_sampling_leaves_out_broken_bonds_and_atoms_ekd_would_refuse(tmp_path, monkeypatch):
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    squeezed = water * [[1, 1, 1], [0.5, 1, 1], [1, 1, 1]]  # O-H 0.48 Å: a bond change of 0.48 Å, within the MD check, but closer than 0.5 Å
    stretched = water * [[1, 1, 1], [1.6, 1, 1], [1, 1, 1]]  # O-H 1.54 Å: a broken bond
    moved = water + [[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, -0.05, 0.0]]
    monkeypatch.setattr(active, "run_md", lambda *args, **kwargs: None)
    monkeypatch.setattr(active, "_frames", lambda path: [moved, squeezed, stretched, np.full((3, 3), np.nan), water])
    data = ekd.Dataset.from_arrays([np.array([8, 1, 1])], [water], ["H2O"])
    candidates = sample(None, data, GrowSettings(starts_per_molecule=1), tmp_path, seed=0)
    assert len(candidates) == 2 and np.array_equal(candidates.positions, np.concatenate([moved, water]))


@pytest.fixture
def emt_data(tmp_path):
    """EMT energies of small molecules (the pool) and EMT forces of others (the held-out file)."""
    pool = compute_reference(test_molecules(8, seed=2), "ase", EMT_REFERENCE, jobs=1, show_progress=False)
    held_out = compute_reference(test_molecules(2, seed=5), "ase", EMT_REFERENCE, forces=True, jobs=1, show_progress=False)
    pool.write(tmp_path / "pool.h5")
    held_out.write(tmp_path / "held_out.h5")
    return tmp_path


def config(folder, held_out=True, **overrides):
    return RunConfig.load(None, {
        "data.path": str(folder / "pool.h5"), "data.test_path": str(folder / "held_out.h5") if held_out else None,
        "teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": TINY}, "student.backend": "pairmlp", "student.options": TINY,
        "student.seeds": 1, "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"}, "epochs": 3, "jobs": 1, **overrides})


def test_two_rounds_add_reference_energies_where_selected_and_resume_without_recomputing(emt_data, monkeypatch):
    settings = GrowSettings(rounds=2, per_round=4, initial=20, md_steps=10, sample_every=2, starts_per_molecule=1)
    summary = grow(emt_data / "grow", config(emt_data), settings, show_progress=False)
    rounds = summary["rounds"]
    assert [r["conformations"] for r in rounds] == [20, 24, 28] and [r["new"] for r in rounds] == [4, 4, 0]
    assert summary["reference"] == {"calculator": "ase", "options": {**EMT_REFERENCE, "kwargs": {}, "level_of_theory": None}}  # what made the pool
    assert rounds[0]["reference_cpu_seconds"] > 0 and rounds[2]["reference_cpu_seconds"] == 0
    grown = ekd.Dataset.read(emt_data / "grow/round-2/data.h5")
    for row in range(20, 28):  # the bought energies are the reference's on the sampled geometries
        atoms = grown.atoms_of(row)
        assert grown.energy[row] == pytest.approx(emt_energy(grown.numbers[atoms], grown.positions[atoms]), abs=1e-8)
    candidates = ekd.Dataset.read(emt_data / "grow/round-0/candidates.h5")
    assert set(grown.subset(range(20, 24)).conformation_keys()) <= set(candidates.conformation_keys())
    started = ekd.load(emt_data / "grow/round-1/students/seed-200/model.pt").info["train_config"]["init_from"]
    assert started == str(emt_data / "grow/round-0/students/seed-200/model.pt")
    assert json.loads((emt_data / "grow/grow.json").read_text()) == summary

    monkeypatch.setattr(reference_module, "_run_chunk", lambda task: pytest.fail("a finished reference calculation was redone"))
    assert grow(emt_data / "grow", config(emt_data), settings, show_progress=False)["rounds"] == rounds


def test_grow_needs_a_held_out_set_and_a_known_reference(emt_data):
    with pytest.raises(ConfigError, match="ekd grow needs a held-out set with reference forces"):
        grow(emt_data / "a", config(emt_data, held_out=False), GrowSettings(rounds=1), show_progress=False)
    with pytest.raises(ConfigError, match="unknown reference calculator 'orca'"):
        grow(emt_data / "b", config(emt_data), GrowSettings(rounds=1, reference="orca"), show_progress=False)
