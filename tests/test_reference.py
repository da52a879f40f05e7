"""Reference calculators as plugins: PySCF and any ASE calculator, resumable and in parallel."""

import json

import numpy as np
import pytest

import ekd
from ekd.cli import main
from ekd.errors import ConfigError
from ekd.reference import compute_reference, get_reference, references

pytest.importorskip("pyscf")


@pytest.fixture(scope="module")
def water():
    data = ekd.Dataset.embedded(with_forces=True)
    return data.subset(np.flatnonzero(data.molecule == "H2O")[:2])


def test_the_pyscf_reference_reproduces_the_embedded_set(water):
    """The embedded set was made at wB97X/6-31G(d) by PySCF: the plugin gives the same numbers."""
    labelled = compute_reference(water, "pyscf", {"method": "wb97x", "basis": "6-31g*"}, forces=True, jobs=1, show_progress=False)
    np.testing.assert_allclose(labelled.energy, water.energy, rtol=0, atol=1e-6)  # eV
    np.testing.assert_allclose(labelled.forces, water.forces, rtol=0, atol=1e-4)  # eV/Å
    assert labelled.metadata["level_of_theory"] == "wB97X/6-31G*" and labelled.metadata["reference"]["cpu_seconds"] > 0


@pytest.mark.parametrize("name, options", [("pyscf", {"method": "hf", "basis": "sto-3g"}), ("pyscf", {"method": "ccsd(t)", "basis": "sto-3g"}),
                                           ("pyscf", {"method": "ccsd(t)", "basis": "sto-3g", "frozen_core": True}),  # as embedded:ccsdt
                                           ("ase", {"calculator": "ase.calculators.emt:EMT"})])
def test_forces_are_minus_the_gradient_of_the_same_plugin_s_energies(water, name, options):
    reference = get_reference(name)
    options = reference.Options(**options)
    numbers, positions = water.numbers[water.atoms_of(0)], water.positions[water.atoms_of(0)]
    forces = reference.compute(numbers, positions, options, forces=True).forces
    step, numeric = 1e-3, np.zeros_like(positions)
    for atom in range(len(numbers)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = positions.copy()
                moved[atom, axis] += sign * step
                energies.append(reference.compute(numbers, moved, options, forces=False).energy)
            numeric[atom, axis] = -(energies[0] - energies[1]) / (2 * step)
    np.testing.assert_allclose(forces, numeric, atol=2e-4 * max(1.0, np.abs(numeric).max()))  # sign and eV/Å
    assert np.abs(forces).max() > 0.01


def test_ccsd_records_the_t1_diagnostic(water):
    labelled = compute_reference(water.subset([0]), "pyscf", {"method": "ccsd(t)", "basis": "sto-3g"}, jobs=1, show_progress=False)
    (diagnostics,) = labelled.metadata["reference"]["diagnostics"]
    assert 0 < diagnostics["t1_diagnostic"] < 0.05 and labelled.metadata["level_of_theory"] == "CCSD(T)/STO-3G"


def test_failures_are_recorded_and_skipped_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    hf = ekd.Dataset.from_arrays([np.array([1, 9])], [np.array([[0, 0, 0], [0.92, 0, 0]])], ["HF"])  # EMT has no fluorine
    water = ekd.Dataset.embedded().subset(np.arange(0, 4))
    data = ekd.Dataset.concatenate([water, hf, water.subset([0])])
    labelled = compute_reference(data, "ase", {"calculator": "ase.calculators.emt:EMT"}, work=tmp_path, forces=True, jobs=1, chunk=2, show_progress=False)
    assert len(labelled) == 5 and labelled.metadata["reference"]["failures"][0]["index"] == 4
    assert "configuration 4 failed" in capsys.readouterr().err
    reference = get_reference("ase")
    monkeypatch.setattr(type(reference), "compute", lambda *a, **k: pytest.fail("a finished chunk was computed again"))
    again = compute_reference(data, "ase", {"calculator": "ase.calculators.emt:EMT"}, work=tmp_path, forces=True, jobs=1, chunk=2, show_progress=False)
    np.testing.assert_array_equal(again.energy, labelled.energy)
    np.testing.assert_array_equal(again.forces, labelled.forces)


def test_parallel_workers_give_the_serial_numbers(tmp_path):
    data = ekd.Dataset.embedded().subset(np.arange(0, 1600, 200))
    options = {"calculator": "ase.calculators.emt:EMT"}
    serial = compute_reference(data, "ase", options, forces=True, jobs=1, chunk=2, show_progress=False)
    parallel = compute_reference(data, "ase", options, forces=True, jobs=2, chunk=2, show_progress=False)
    np.testing.assert_array_equal(parallel.energy, serial.energy)
    np.testing.assert_array_equal(parallel.forces, serial.forces)


def test_periodic_cells_get_the_calculators_energy_forces_and_stress(tmp_path):
    """The ``ase`` reference is given each cell (EMT bulk Cu, strained; an Al slab) and returns
    what ASE's own EMT gives on the same Atoms; a molecule beside them has no stress; a
    molecules-only reference refuses the cells before running anything."""
    from ase.build import bulk, fcc111
    from ase.calculators.emt import EMT

    cells = [bulk("Cu", "fcc", a=3.5, cubic=True), bulk("Cu", "fcc", a=3.7) * (2, 1, 1), fcc111("Al", size=(2, 2, 3), vacuum=5.0)]
    cells[2].pbc = (True, True, False)
    data = ekd.Dataset.concatenate([ekd.Dataset.from_atoms(cells), ekd.Dataset.embedded().subset([0])])
    labelled = compute_reference(data, "ase", {"calculator": "ase.calculators.emt:EMT"}, work=tmp_path, forces=True, jobs=1, chunk=2, show_progress=False)
    for k, atoms in enumerate(cells):
        atoms.calc = EMT()
        assert labelled.energy[k] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(labelled.forces[labelled.atoms_of(k)], atoms.get_forces(), atol=1e-10)
        np.testing.assert_allclose(labelled.stress[k], atoms.get_stress(), atol=1e-12)
    assert np.abs(labelled.stress[0]).max() > 1e-3 and np.isnan(labelled.stress[3]).all()
    with pytest.raises(ConfigError, match="configuration 0 is periodic, and reference calculator 'pyscf' computes isolated molecules only"):
        compute_reference(data, "pyscf", {}, show_progress=False)
    atoms = cells[0].copy()
    atoms.calc = ekd.reference.reference_calculator("ase", {"calculator": "ase.calculators.emt:EMT"})
    np.testing.assert_allclose(atoms.get_stress(), labelled.stress[0], atol=1e-12)


def test_bad_options_fail_before_anything_runs():
    with pytest.raises(ConfigError, match=r"pyscf options.basiss: unknown option; allowed: method, basis"):
        compute_reference(ekd.Dataset.embedded().subset([0]), "pyscf", {"basiss": "sto-3g"})
    with pytest.raises(ConfigError, match="not an importable ASE calculator"):
        compute_reference(ekd.Dataset.embedded().subset([0]), "ase", {"calculator": "ase.calculators.nope:X"})
    with pytest.raises(ConfigError, match="unknown reference calculator 'orca'; installed: ase, pyscf"):
        get_reference("orca")
    assert {"pyscf", "ase"} <= set(references())


def test_the_reference_command_writes_labelled_data(tmp_path, capsys):
    source = tmp_path / "in.h5"
    ekd.Dataset.embedded().subset([0, 1]).write(source)
    main(["reference", str(source), str(tmp_path / "out.h5"), "--calculator", "ase", "--option", "calculator=ase.calculators.emt:EMT",
          "--option", "level_of_theory=EMT (ASE)", "--forces", "--jobs", "1"])
    assert "wrote 2 of 2 conformations" in capsys.readouterr().out
    out = ekd.Dataset.read(tmp_path / "out.h5")
    assert out.metadata["level_of_theory"] == "EMT (ASE)" and out.forces.shape == (6, 3)
    assert json.loads(json.dumps(out.metadata["reference"]))["calculator"] == "ase"


def test_levels_of_theory_are_written_as_chemists_write_them():
    from ekd.builtin_references import PySCFOptions, PySCFReference

    level = PySCFReference().level
    assert level(PySCFOptions(method="ccsd(t)", basis="cc-pvdz", frozen_core=True)) == "CCSD(T)/cc-pVDZ(fc)"
    assert level(PySCFOptions(method="wb97x", basis="6-31g*")) == "wB97X/6-31G*"
    assert level(PySCFOptions(method="mp2", basis="aug-cc-pvtz")) == "MP2/aug-cc-pVTZ"
