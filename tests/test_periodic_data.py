"""Periodic data through the data layer: readers and writers keep cells and pbc, the core's
neighbour graph sees images (an atom's own too), and broken cells are one-line errors."""

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from ekd.data import Dataset, write
from ekd.errors import DataError
from ekd.graph import check_geometries, neighbour_edges
from ekd.provenance import sha256_arrays
from ekd.testing import labelled_molecules, periodic_cells, test_molecules


def emt_images():
    """Bulk Cu (rattled, strained) and an Al slab with vacuum, with EMT energies and forces (eV, eV/Å)."""
    images = []
    for k, strain in enumerate((0.98, 1.0, 1.03)):
        atoms = bulk("Cu", "fcc", a=3.6 * strain, cubic=True)
        atoms.rattle(0.05, seed=k)
        images.append(atoms)
    slab = fcc111("Al", size=(2, 2, 3), vacuum=6.0)
    slab.pbc = (True, True, False)
    images.append(slab)
    for atoms in images:
        atoms.calc = EMT()
        atoms.get_potential_energy()
    return images


@pytest.mark.parametrize("suffix", [".xyz", ".h5"])
def test_cells_and_pbc_survive_reading_and_writing(tmp_path, suffix):
    images = emt_images()
    ase.io.write(tmp_path / "emt.xyz", images, format="extxyz")
    data = Dataset.read(tmp_path / "emt.xyz")
    np.testing.assert_allclose(data.cell, [a.cell.array for a in images])
    np.testing.assert_array_equal(data.pbc, [a.pbc for a in images])
    np.testing.assert_allclose(data.energy, [a.get_potential_energy() for a in images])
    write(data, tmp_path / f"again{suffix}")
    again = Dataset.read(tmp_path / f"again{suffix}")
    np.testing.assert_allclose(again.cell, data.cell)
    np.testing.assert_array_equal(again.pbc, data.pbc)
    back = again.to_atoms()[3]
    assert back.pbc.tolist() == [True, True, False] and np.allclose(back.cell.array, images[3].cell.array)


@pytest.mark.parametrize("suffix", [".xyz", ".h5"])
def test_stresses_are_read_kept_and_written_in_ases_convention(tmp_path, suffix):
    """The periodic frames' stresses (eV/Å³, ASE's sign and Voigt order) survive reading and
    writing; a molecule mixed in has none (NaN); the training view of energies drops them."""
    from ase.build import molecule

    images = emt_images()
    water = molecule("H2O")
    water.calc = EMT()
    water.get_potential_energy()
    images.insert(1, water)
    expected = [a.get_stress() for a in images if a.pbc.any()]
    ase.io.write(tmp_path / "emt.xyz", images, format="extxyz")
    data = Dataset.read(tmp_path / "emt.xyz")
    assert np.isnan(data.stress[1]).all()
    np.testing.assert_allclose(data.stress[data.periodic], expected, atol=1e-12)
    assert np.abs(data.stress[0]).max() > 1e-3  # the strained cell is stressed
    write(data, tmp_path / f"again{suffix}")
    again = Dataset.read(tmp_path / f"again{suffix}")
    np.testing.assert_allclose(again.stress, data.stress, atol=1e-12)
    np.testing.assert_allclose(again.to_atoms()[0].get_stress(), expected[0], atol=1e-12)
    assert again.without_forces().stress is None and again.subset([2, 0]).stress[1] == pytest.approx(data.stress[0])


def test_a_stress_key_and_unit_are_read_as_declared(tmp_path):
    """``stress_key`` names another stored stress (3×3 here, as MACE's data often stores it);
    it scales with ``energy_unit``; ``""`` reads none; a missing asked-for key is an error."""
    images = emt_images()[:2]
    for atoms in images:
        atoms.info["REF_stress"] = 1000 * atoms.get_stress(voigt=False)  # meV/Å³
    ase.io.write(tmp_path / "ref.xyz", images, format="extxyz")
    data = Dataset.read(tmp_path / "ref.xyz", stress_key="REF_stress", energy_unit="meV", energy_key="energy")
    np.testing.assert_allclose(data.stress, [a.get_stress() for a in images], atol=1e-10)
    assert Dataset.read(tmp_path / "ref.xyz", stress_key="").stress is None
    with pytest.raises(DataError, match="frame 0 has no 'virial'"):
        Dataset.read(tmp_path / "ref.xyz", stress_key="virial")


def test_molecules_and_cells_mix_and_split():
    mixed = Dataset.concatenate([test_molecules().subset([0, 1]), periodic_cells()])
    assert mixed.periodic.tolist() == [False, False, True, True]
    assert not mixed.cells[:2].any() and mixed.pbc[3].tolist() == [True, True, False]
    part = mixed.subset([3, 0])
    assert part.periodic.tolist() == [True, False] and np.allclose(part.cell[0], mixed.cell[3])
    assert test_molecules().cell is None  # molecules carry no cell: their fingerprints are unchanged


def test_the_fingerprint_sees_the_cell():
    cells = periodic_cells()
    strained = Dataset.from_arrays([cells.numbers[cells.atoms_of(i)] for i in range(2)], [cells.positions[cells.atoms_of(i)] for i in range(2)],
                                   list(cells.molecule), cell=cells.cell * 1.01, pbc=cells.pbc)
    assert sha256_arrays(strained) != sha256_arrays(cells)


@pytest.mark.parametrize(("cutoff", "own_images"), [(2.0, False), (5.0, True), (7.5, True)])
def test_the_graph_finds_every_image_as_ase_does(cutoff, own_images):
    """Skewed cells smaller than the cutoff (atoms see their own images) and a slab."""
    cells = periodic_cells()
    edges, shifts = neighbour_edges(cells, cutoff)
    vectors = cells.positions[edges[1]] - cells.positions[edges[0]] + np.einsum("ek,ekd->ed", shifts, cells.cell[cells.conformation_index[edges[0]]])
    for k, atoms in enumerate(cells.to_atoms()):
        ours = np.sort(np.linalg.norm(vectors[cells.conformation_index[edges[0]] == k], axis=1))
        theirs = np.sort(neighbor_list("d", atoms, cutoff))
        np.testing.assert_allclose(ours, theirs, atol=1e-10)
        assert len(theirs) > 0
    assert np.any(edges[0] == edges[1]) == own_images  # an atom and its own image, in cells (3.2 Å) below the cutoff


def test_a_cell_too_small_or_flat_is_a_one_line_error():
    tiny = Dataset.from_arrays([np.array([29])], [np.zeros((1, 3))], ["Cu"], cell=0.4 * np.eye(3)[None], pbc=[[True] * 3])
    with pytest.raises(DataError, match="atom 0 is 0.400 Å from its own periodic image"):
        check_geometries(tiny)
    with pytest.raises(DataError, match="conformation 0 is periodic .* its cell has no volume"):
        Dataset.from_arrays([np.array([29])], [np.zeros((1, 3))], ["Cu"], cell=np.diag([3.0, 3.0, 0.0])[None], pbc=[[True, True, False]])
    with pytest.raises(DataError, match=r"conformation 1 has a non-finite cell \[\[3.0, 0.0, 0.0\], \[0.0, nan"):
        cells = np.stack([3 * np.eye(3), np.diag([3.0, np.nan, 3.0])])
        Dataset.from_arrays([np.array([29])] * 2, [np.zeros((1, 3))] * 2, ["Cu"] * 2, cell=cells, pbc=[[True] * 3] * 2)


def test_the_calculator_uses_the_cell_or_refuses_it(tmp_path):
    """An ASE calculator on a periodic box gives the periodic energy (a backend that models
    cells) or a one-line error (one that does not), never an isolated cluster's energy."""
    from ekd.backend import Statistics
    from ekd.model import Model

    cells = periodic_cells()
    statistics = Statistics.of(labelled_molecules(2), [1, 6, 7, 8], 4.0)
    atoms = cells.to_atoms()[0]
    pairmlp = Model.build("pairmlp", [1, 6, 7, 8], statistics, {"cutoff": 4.0, "width": 8, "n_rbf": 4}, dtype=torch.float64)
    atoms.calc = pairmlp.calculator()
    expected = pairmlp.predict(cells.subset([0]))
    assert atoms.get_potential_energy() == pytest.approx(expected.energy[0], abs=1e-10)
    cluster = pairmlp.predict(Dataset.from_arrays([atoms.numbers], [atoms.positions], ["cluster"]))
    assert abs(cluster.energy[0] - expected.energy[0]) > 1e-3  # the images matter in this 3.2 Å cell
    from ekd_pairmlp import PairMLPBackend, PairMLPOptions

    class MoleculesOnly:  # the example backend without the periodic capability
        name, Options, tiny, elements = "molecules_only", PairMLPOptions, {}, None
        cutoff, build, energy = PairMLPBackend.cutoff, PairMLPBackend.build, PairMLPBackend.energy

    atoms.calc = Model.build(MoleculesOnly(), [1, 6, 7, 8], statistics, {"cutoff": 4.0}).calculator()
    with pytest.raises(DataError, match="is periodic, and backend 'molecules_only' does not model periodic cells"):
        atoms.get_potential_energy()


def test_the_calculators_stress_is_ases_own_numerical_stress():
    """Sign and Voigt order as ASE defines them: ASE's finite-difference stress of the same
    calculator agrees, for one model and for an ensemble (the members' mean)."""
    from ekd.backend import Statistics
    from ekd.ensemble import Ensemble
    from ekd.model import Model

    statistics = Statistics.of(labelled_molecules(2), [1, 6, 7, 8], 4.0)
    models = [Model.build("pairmlp", [1, 6, 7, 8], statistics, {"cutoff": 4.0, "width": 8, "n_rbf": 4}, seed=seed, dtype=torch.float64) for seed in (0, 1)]
    atoms = periodic_cells().to_atoms()[0]
    for calculator in (models[0].calculator(), Ensemble(models, ["a", "b"]).calculator()):
        atoms.calc = calculator
        ours = atoms.get_stress()
        np.testing.assert_allclose(ours, calculator.calculate_numerical_stress(atoms, d=1e-5), atol=1e-7)
        assert np.abs(ours).max() > 1e-4
    members = [m.predict(periodic_cells().subset([0]), stress=True).stress[0] for m in models]
    np.testing.assert_allclose(ours, np.mean(members, axis=0), atol=1e-12)


def test_a_run_on_periodic_data_labels_and_scores_with_the_cells(tmp_path):
    """teach -> label -> student on periodic Cu cells (EMT): the labels keep the cells, and their
    forces and stresses are the teachers' periodic ones, not an isolated cluster's; the students
    see the mean stress, the teachers and baselines no stress at all."""
    import ekd
    from ekd.runconfig import RunConfig

    images = []
    for k in range(24):
        atoms = bulk("Cu", "fcc", a=3.5 + 0.01 * k, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_stress()
        images.append(atoms)
    tiny = {"cutoff": 4.0, "width": 8, "n_rbf": 4}
    config = RunConfig.load(None, {"teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": tiny}, "student.backend": "pairmlp",
                                   "student.options": tiny, "student.seeds": 1, "epochs": 2, "jobs": 1,
                                   "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"}})
    run = ekd.distill(config, data=images, out=tmp_path / "run", show_progress=False)
    labels = run.labels
    np.testing.assert_allclose(labels.data.cell, [a.cell.array for a in images])
    periodic = run.teachers.predict(labels.data).forces
    np.testing.assert_allclose(labels.mean_forces, periodic, atol=1e-10)
    cluster = run.teachers.predict(Dataset(**{**labels.data.__dict__, "cell": None, "pbc": None})).forces
    assert np.abs(cluster - periodic).max() > 1e-3  # the images matter: a cluster would label otherwise
    stress = run.teachers.predict(labels.data, stress=True)
    np.testing.assert_allclose(labels.member_stress, stress.member_stress, atol=1e-12)
    assert np.abs(labels.member_stress[0] - labels.member_stress[1]).max() > 1e-6  # two teachers, two stresses
    np.testing.assert_allclose(labels.dataset().stress, stress.stress, atol=1e-12)
    from ekd.pipeline import student_jobs, teacher_jobs

    assert run.data.stress is not None  # EMT's stresses: held-out truth
    members = ekd.runconfig.parse_teacher_spec(config.teachers, sized=config.sized_options)
    seen = [job.train_frames for job in teacher_jobs(tmp_path, config, members, *run.split[:2])]
    seen += [job.train_frames for job in student_jobs(tmp_path, config, *run.split[:2], {}, baseline=True)]
    assert all(frames.stress is None and frames.forces is None for frames in seen)
    assert run.report.held_out.student_force_mae.n == 1


def test_a_cell_relaxes_through_ases_filter_with_an_ekd_calculator():
    """ASE's FrechetCellFilter (which needs the calculator's stress) + BFGS with an ekd model:
    the cell and positions move together and the energy goes down."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    from ekd.backend import Statistics
    from ekd.model import Model

    statistics = Statistics.of(labelled_molecules(2), [1, 6, 7, 8], 4.0)
    model = Model.build("pairmlp", [1, 6, 7, 8], statistics, {"cutoff": 4.0, "width": 8, "n_rbf": 4}, seed=3, dtype=torch.float64)
    atoms = periodic_cells(edge=4.0).to_atoms()[0]
    atoms.calc = model.calculator()
    start_energy, start_cell = atoms.get_potential_energy(), atoms.cell.array.copy()
    BFGS(FrechetCellFilter(atoms), logfile=None, maxstep=0.05).run(fmax=1e-3, steps=5)
    assert atoms.get_potential_energy() < start_energy
    assert np.abs(atoms.cell.array - start_cell).max() > 1e-4  # the stress moved the cell


def test_a_run_on_the_metals_set_reports_materials_units_and_properties(tmp_path, capsys):
    """On the copper part of ``embedded:metals`` the report scores the held-out cells in meV/atom,
    meV/Å and GPa (the reference stresses being held-out truth), and checks the crystal's
    properties for the ensemble, the student and the baseline against EMT's."""
    import ekd
    from ekd.runconfig import RunConfig

    metals = ekd.Dataset.embedded(with_forces=True, name="metals")
    copper = metals.subset(np.flatnonzero(np.char.startswith(metals.molecule.astype(str), "Cu/")))
    copper = copper.with_metadata(**{k: metals.metadata[k] for k in ("materials", "level_of_theory")})
    tiny = {"cutoff": 4.0, "width": 8, "n_rbf": 4}
    config = RunConfig.load(None, {"teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": tiny}, "student.backend": "pairmlp",
                                   "student.options": tiny, "student.seeds": 1, "student.baseline": True, "epochs": 3, "jobs": 1,
                                   "train": {"batch_size": 16, "dtype": "float64", "device": "cpu"}})
    report = ekd.distill(config, data=copper, out=tmp_path / "run", show_progress=False).report
    scores = report.scores("student seed-200")
    assert scores.stress_mae_GPa > 0 and scores.force_mae_meV == pytest.approx(scores.force_mae * 43.364, rel=1e-3)
    materials = report.materials
    assert materials["ground_truth"] == {"Cu": metals.metadata["materials"]["ground_truth"]["Cu"]}
    assert set(materials["models"]) == {"teacher ensemble", "student seed-200", "baseline seed-200"}
    assert all(set(m["Cu"]) in ({"failed"}, set(materials["units"])) for m in materials["models"].values())
    text = report.markdown()
    assert "| Cu lattice_constant (Å) | 3.590 |" in text and "stress_mae_GPa in GPa" in text
    checked = any("lattice_constant" in m["Cu"] for m in materials["models"].values())
    assert (tmp_path / "run/plots/materials.png").is_file() == checked
    assert ekd.Report.read(tmp_path / "run").materials == materials
    from ekd.cli import main

    ekd.data.write(copper, tmp_path / "copper.h5")
    main(["evaluate", str(tmp_path / "run/students/seed-200/model.pt"), "--data", str(tmp_path / "copper.h5"), "--json", str(tmp_path / "scores.json")])
    printed = capsys.readouterr().out
    assert "copper, periodic cells: energy_per_atom_mae_meV" in printed and "copper, Cu: " in printed
    assert json.loads((tmp_path / "scores.json").read_text())["copper"]["materials"]["Cu"] == pytest.approx(materials["models"]["student seed-200"]["Cu"])


def test_the_materials_summary_averages_seeds_and_judges_closeness_by_each_models_error():
    from ekd.report import materials_summary, materials_table

    # the baselines' mean (3.595) is nearer 3.60 than the students' (3.61), but each student is
    # nearer on average (0.02 against 0.025): the one model a user trains is what counts
    materials = {"level_of_theory": "EMT", "units": {"lattice_constant": "Å"}, "ground_truth": {"Cu": {"lattice_constant": 3.60}},
                 "models": {"teacher ensemble": {"Cu": {"lattice_constant": 3.57}}, "student seed-1": {"Cu": {"lattice_constant": 3.59}},
                            "student seed-2": {"Cu": {"lattice_constant": 3.63}}, "baseline seed-1": {"Cu": {"failed": "no minimum"}},
                            "baseline seed-2": {"Cu": {"lattice_constant": 3.57}}, "baseline seed-3": {"Cu": {"lattice_constant": 3.62}}}}
    row = materials_summary(materials)["Cu lattice_constant"]
    assert row["student"]["mean"] == pytest.approx(3.61) and row["student"]["n"] == 2 and row["baseline"]["n"] == 2
    assert row["student"]["error"] == pytest.approx(0.02) and row["baseline"]["error"] == pytest.approx(0.025)
    assert row["student_closer"] is True and row["teacher ensemble"]["error"] == pytest.approx(0.03)
    text = "\n".join(materials_table(materials))
    assert "| Cu lattice_constant (Å) | 3.600 | 3.570 | 3.610 ± 0.028 | 3.595 ± 0.035 | 0.03 | 0.02 | 0.025 | yes |" in text
    assert "baseline seed-1 on Cu: no minimum" in text


def test_the_materials_plot_shows_each_models_signed_error_and_skips_failed_ones(tmp_path):
    from ekd.evaluate.plots import materials_errors, materials_plot

    units = {"lattice_constant": "Å", "bulk_modulus": "GPa", "surface_energy_111": "J/m²"}
    truth = {"Cu": {"lattice_constant": 3.60, "bulk_modulus": 140.0}, "CuNi": {"lattice_constant": 3.55, "bulk_modulus": 150.0}}
    models = {"teacher ensemble": {"Cu": {"lattice_constant": 3.58, "bulk_modulus": 135.0}, "CuNi": {"lattice_constant": 3.56, "bulk_modulus": 160.0}},
              "student seed-1": {"Cu": {"lattice_constant": 3.59, "bulk_modulus": 138.0}, "CuNi": {"failed": "no minimum"}},
              "student seed-2": {"Cu": {"lattice_constant": 3.63, "bulk_modulus": 141.0}},
              "baseline seed-1": {"Cu": {"failed": "no minimum"}, "CuNi": {"lattice_constant": 3.50, "bulk_modulus": 149.0}}}
    materials = {"level_of_theory": "EMT", "units": units, "ground_truth": truth, "models": models}
    errors = materials_errors(materials)
    assert set(errors) == {"lattice_constant", "bulk_modulus"}  # no system has a surface energy
    assert [s for s, _ in errors["lattice_constant"]["student"]] == ["Cu", "Cu"]  # seed-1 failed on CuNi, seed-2 has no CuNi
    assert [e for _, e in errors["lattice_constant"]["student"]] == pytest.approx([-0.01, 0.03])
    assert errors["bulk_modulus"]["teacher ensemble"] == [("Cu", pytest.approx(-5.0)), ("CuNi", pytest.approx(10.0))]
    assert errors["bulk_modulus"]["baseline"] == [("CuNi", pytest.approx(-1.0))]
    assert materials_plot(materials, tmp_path / "plots/materials.png").stat().st_size > 5_000
    nothing = {**materials, "models": {"student seed-1": {"Cu": {"failed": "no minimum"}}}}
    assert materials_plot(nothing, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
