"""NequIP specifics: conformance, O(3) equivariance, no global-state leak, energy-only training,
export to nequip's package format."""

import dataclasses
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule

from ekd.data import Dataset
from ekd.errors import ConfigError
from ekd.model import Model
from ekd.testing import BackendConformance, labelled_molecules, lammps_box, lammps_virial, periodic_cells, test_molecules
from ekd.backend import Statistics
from ekd.testing.conformance import REFERENCE, SPECIES

STATISTICS = Statistics(REFERENCE, avg_num_neighbors=4.0)
from ekd.train import TrainConfig, train
from ekd_nequip import NequipBackend
from ekd_nequip.backend import _nequip_global_state

TINY = NequipBackend.tiny


class TestNequip(BackendConformance):
    backend_name = "nequip"


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.build("nequip", SPECIES, STATISTICS, TINY, seed=0, dtype=torch.float64, device="cpu")


def _rotation(seed: int) -> np.ndarray:
    """A random proper rotation (det +1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


@pytest.mark.parametrize("matrix", [_rotation(5), -np.eye(3), -_rotation(6)], ids=["rotation", "inversion", "rotoinversion"])
def test_o3_equivariance(model, matrix):
    frames = test_molecules()
    before = model.predict(frames)
    after = model.predict(dataclasses.replace(frames, positions=frames.positions @ matrix.T))
    np.testing.assert_allclose(after.energy, before.energy, atol=1e-6, rtol=0)
    np.testing.assert_allclose(after.forces, before.forces @ matrix.T, atol=1e-6, rtol=0)


def test_energy_model_computes_no_forces(model):
    batch = model.batch(test_molecules())
    out = model.module({"pos": batch.positions, **batch.inputs})
    assert "forces" not in out and out["total_energy"].shape == (batch.n_conformations, 1)


def test_building_leaks_no_global_state(monkeypatch):
    from nequip.utils import global_state

    monkeypatch.setattr(global_state, "_GLOBAL_STATE_INITIALIZED", False)  # as in a fresh process
    frames = test_molecules()
    ani = {"radial_shifts": 4, "angular_shifts": 2, "angle_sections": 2, "hidden": (8,)}
    ani_before = Model.build("ani", SPECIES, REFERENCE, ani, seed=0).predict(frames)
    dtype, environment = torch.get_default_dtype(), dict(os.environ)
    torch.manual_seed(0)
    draw = torch.randn(5)
    np.random.seed(0)
    random.seed(0)
    numpy_draw, python_draw = np.random.rand(5), random.random()

    np.random.seed(0)
    random.seed(0)
    NequipBackend().build(NequipBackend.Options(**TINY), SPECIES, STATISTICS)  # nequip's guard alone
    torch.manual_seed(0)
    Model.build("nequip", SPECIES, STATISTICS, TINY, seed=0)

    assert torch.equal(torch.randn(5), draw)  # the torch stream goes on as if nothing was built
    np.testing.assert_array_equal(np.random.rand(5), numpy_draw)
    assert random.random() == python_draw
    assert torch.get_default_dtype() == dtype and dict(os.environ) == environment
    assert not global_state.global_state_initialized()
    ani_after = Model.build("ani", SPECIES, REFERENCE, ani, seed=0).predict(frames)
    np.testing.assert_array_equal(ani_after.energy, ani_before.energy)
    np.testing.assert_array_equal(ani_after.forces, ani_before.forces)


def test_energy_only_training_runs(tmp_path):
    data = labelled_molecules(count_per_molecule=4).without_forces()
    train_part, val_part = data.subset(np.arange(0, len(data), 2)), data.subset(np.arange(1, len(data), 2))
    config = TrainConfig(epochs=3, batch_size=8, dtype="float64", device="cpu")
    result = train("nequip", train_part, val_part, tmp_path, config, TINY, show_progress=False)
    assert result.epochs_run == 3 and np.isfinite(result.best_val_loss)
    assert result.model.backend.name == "nequip"


@pytest.mark.parametrize("structure", ["methanol", "bulk cell", "slab"])
def test_export_runs_in_nequips_own_calculator(model, tmp_path, structure):
    """nequip's own calculator (its own neighbour list and cell shifts, in cells smaller than
    r_max and a slab) gives ekd's energies and forces."""
    from nequip.integrations.ase import NequIPCalculator
    from nequip.model import ModelFromPackage

    path = tmp_path / "model.nequip.zip"
    model.export(path)
    atoms = molecule("CH3OH") if structure == "methanol" else periodic_cells().to_atoms()[structure == "slab"]
    reference = atoms.copy()
    reference.calc = model.calculator()
    with _nequip_global_state():  # nequip's tools set up global state; keep it from other tests
        assert list(ModelFromPackage(str(path))["sole_model"].type_names) == ["H", "C", "N", "O"]
        atoms.calc = NequIPCalculator._from_saved_model(path, chemical_species_to_atom_type_map=True)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    np.testing.assert_allclose(energy, reference.get_potential_energy(), rtol=1e-12)
    np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-10)


@pytest.fixture(scope="module")
def compiled(model, tmp_path_factory):
    """The exported package compiled by nequip-compile (AOTInductor, about a minute each) for
    each target, ``ase`` and ``pair_nequip``, the two compilations side by side."""
    if shutil.which("c++") is None:
        pytest.skip("AOTInductor needs a C++ compiler")
    folder = tmp_path_factory.mktemp("compiled")
    model.export(folder / "model.nequip.zip")
    command = [sys.executable, "-m", "nequip.scripts.compile", "model.nequip.zip", "--mode", "aotinductor", "--device", "cpu"]
    targets = ("ase", "pair_nequip")
    running = [subprocess.Popen([*command[:4], f"{t}.nequip.pt2", *command[4:], "--target", t], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for t in targets]
    for target, process in zip(targets, running):
        output, _ = process.communicate()
        assert process.returncode == 0, f"nequip-compile --target {target} failed:\n{output.decode()[-2000:]}"
    return {t: folder / f"{t}.nequip.pt2" for t in targets}


@pytest.mark.slow
def test_export_compiles_for_nequips_ase_calculator(model, compiled):
    """nequip's documented route: nequip-compile (AOTInductor) and the calculator."""
    from nequip.integrations.ase import NequIPCalculator

    atoms, reference = molecule("CH3OH"), molecule("CH3OH")
    reference.calc = model.calculator()
    with _nequip_global_state():
        atoms.calc = NequIPCalculator.from_compiled_model(compiled["ase"], chemical_species_to_atom_type_map=True)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    np.testing.assert_allclose(energy, reference.get_potential_energy(), rtol=1e-12)
    np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-10)


@pytest.mark.slow
def test_export_compiles_for_lammps_pair_style_nequip(model, compiled):
    """nequip's LAMMPS route: ``nequip-compile --mode aotinductor --target pair_nequip`` (its only
    LAMMPS pair-style target; nequip refuses ``--mode torchscript`` with torch >= 2.10; about a
    minute on a CPU) writes the ``.nequip.pt2`` that ``pair_style nequip`` (pair_nequip_allegro,
    built with NEQUIP_AOT_COMPILE) loads. Loaded as nequip loads compiled models and called with
    what pair_nequip's ``preprocess`` builds (no LAMMPS binary here: local atoms only, LAMMPS's
    lower-triangular cell, edges [i, local atom of j] within r_max with j's integer cell shift),
    in a skewed cell smaller than r_max and a slab (``p p f``), it gives ekd's energy (the sum of
    the atomic energies, as pair_nequip sums them), forces and a virial = −stress · volume (the
    LAMMPS and nequip sign; ekd's stress, like ASE's, is (1/V) ∂E/∂ε)."""
    from ase.neighborlist import neighbor_list

    with _nequip_global_state():  # loading sets nequip's global state; keep it from other tests
        from nequip.model.inference_models import load_compiled_model

        pair_nequip_model, metadata = load_compiled_model(str(compiled["pair_nequip"]), "cpu")
    # what pair_nequip reads from the file: its input and output fields in order, r_max, types
    assert metadata["nequip_aoti_inputs"].split() == ["pos", "edge_index", "atom_types", "cell", "edge_cell_shift"]
    assert metadata["nequip_aoti_outputs"].split() == ["atomic_energy", "forces", "virial"]
    assert metadata["r_max"] == 5.0 and metadata["type_names"] == ["H", "C", "N", "O"] and metadata["num_types"] == "4"
    for atoms in periodic_cells().to_atoms():  # bulk (p p p) and slab (p p f)
        atoms = lammps_box(atoms)
        reference = model.predict(Dataset.from_atoms([atoms]), stress=True)
        virial = lammps_virial(reference.stress[0], atoms.get_volume())
        centre, neighbour, shift = neighbor_list("ijS", atoms, metadata["r_max"])
        data = {
            "pos": torch.tensor(atoms.positions),
            "edge_index": torch.tensor(np.stack([centre, neighbour])),
            "atom_types": torch.tensor([metadata["type_names"].index(symbol) for symbol in atoms.get_chemical_symbols()]),
            "cell": torch.tensor(np.asarray(atoms.cell))[None],
            "edge_cell_shift": torch.tensor(shift, dtype=torch.float64),
        }
        out = pair_nequip_model(data)
        np.testing.assert_allclose(out["atomic_energy"].sum().item(), reference.energy[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["forces"].numpy(), reference.forces, rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["virial"][0].numpy(), virial, rtol=0, atol=1e-8)


def test_export_needs_nequip_package_extension(model, tmp_path):
    with pytest.raises(ConfigError, match=".nequip.zip"):
        model.export(tmp_path / "model.zip")


def test_the_private_nequip_names_ekd_relies_on_are_still_there():
    """ekd_nequip.backend.package_internals is the one place that uses nequip's private names;
    this fails loudly (naming what changed) when a nequip upgrade moves them."""
    from nequip.utils import global_state

    from ekd_nequip.backend import package_internals

    internals = package_internals()
    assert isinstance(internals.eager_model_key, str) and isinstance(internals.sole_model_key, str)
    assert "nequip" in internals.internal_modules and "numpy" in internals.external_modules
    before = global_state.global_state_initialized()
    internals.set_global_state_initialized(not before)
    assert global_state.global_state_initialized() is (not before)  # the flag nequip itself reads
    internals.set_global_state_initialized(before)
