"""MACE backend: ekd's conformance suite, O(3) equivariance, export to MACECalculator, training."""

import csv
import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from ekd.backend import Statistics
from ase.build import molecule

from ekd.data import Dataset
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.testing import BackendConformance, labelled_molecules, lammps_box, lammps_virial, periodic_cells, test_molecules
from ekd.train import TrainConfig, train
from ekd_mace import MaceBackend

SPECIES = [1, 6, 7, 8]
REFERENCE = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2042.0}  # eV


class TestMace(BackendConformance):
    backend_name = "mace"


@pytest.fixture
def model():
    return Model.build("mace", SPECIES, Statistics(REFERENCE, avg_num_neighbors=4.0), MaceBackend.tiny, seed=0, dtype=torch.float64, device="cpu")


@pytest.fixture
def data():
    """Energy-labelled molecules without forces, split in halves (training, validation)."""
    frames = labelled_molecules(count_per_molecule=4).without_forces()
    return frames.subset(np.arange(0, len(frames), 2)), frames.subset(np.arange(1, len(frames), 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equivariant_under_rotation_and_inversion(model, seed):
    frames = test_molecules()
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    rotation = q * np.sign(np.linalg.det(q))
    before = model.predict(frames)
    for transform in (rotation, -np.eye(3), -rotation):  # rotation, inversion, improper rotation
        after = model.predict(dataclasses.replace(frames, positions=frames.positions @ transform.T))
        np.testing.assert_allclose(after.energy, before.energy, atol=1e-6)
        np.testing.assert_allclose(after.forces, before.forces @ transform.T, atol=1e-6)


def test_energy_leaves_cached_positions_alone(model):
    # MACE sets requires_grad on the positions it gets; ekd's cached batch must not change
    batch = model.batch(test_molecules())
    get_backend("mace").energy(model.module, batch)
    assert not batch.positions.requires_grad


@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
@pytest.mark.parametrize("structure", ["methanol", "bulk cell", "slab"])
def test_export_runs_in_mace_calculator(model, tmp_path, monkeypatch, structure):
    """MACE's own calculator (its own neighbour list, periodic images included, in cells smaller
    than r_max and a slab) gives ekd's energies and forces."""
    # mace.calculators sets this variable on import (to unpickle models); keep it to this test
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from mace.calculators import MACECalculator

    if structure == "methanol":
        atoms = molecule("CH3OH")
        atoms.positions += np.random.default_rng(0).normal(scale=0.1, size=atoms.positions.shape)
    else:
        atoms = periodic_cells().to_atoms()[structure == "slab"]
    get_backend("mace").export(model.module, tmp_path / "model.pt")
    theirs, ours = atoms.copy(), atoms.copy()
    theirs.calc = MACECalculator(model_paths=str(tmp_path / "model.pt"), device="cpu", default_dtype="float64")
    ours.calc = model.calculator()
    np.testing.assert_allclose(theirs.get_potential_energy(), ours.get_potential_energy(), atol=1e-6)
    np.testing.assert_allclose(theirs.get_forces(), ours.get_forces(), atol=1e-6)


def _lammps_ghosts(atoms, cutghost):
    """LAMMPS's local and ghost atoms on one process: the box's atoms first, then their images
    within ``cutghost`` (Å) of the box along each periodic axis (for a triclinic box LAMMPS
    extends each fractional coordinate by ``cutghost`` over the spacing of the lattice planes).
    Returns the positions (Å), the local atom each one is an image of, and its integer image."""
    cell = np.asarray(atoms.cell)
    fractional = atoms.get_scaled_positions(wrap=False)
    reach = cutghost * np.linalg.norm(np.linalg.inv(cell), axis=0) * atoms.pbc
    images = np.stack(np.meshgrid(*[np.arange(-np.ceil(r), np.ceil(r) + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    images = images[np.argsort(np.abs(images).sum(1), kind="stable")]  # (0, 0, 0) first: the local atoms
    owner, image = [], []
    for n in images:
        inside = np.flatnonzero(np.all((fractional + n >= -reach) & (fractional + n < 1 + reach), axis=1))
        owner.append(inside)
        image.append(np.repeat(n[None], len(inside), 0))
    owner, image = np.concatenate(owner), np.concatenate(image)
    return atoms.positions[owner] + image @ cell, owner, image


def _pair_mace_inputs(lammps_model, atoms, domain_decomposition):
    """The arguments ``pair_style mace`` (ACEsuit/lammps, src/ML-MACE/pair_mace.cpp, compute)
    passes to the ``*-lammps.pt`` model for ``atoms`` (a LAMMPS box), and for each node the local
    atom it stands for. r_max, the number of layers and the elements are read from the model file,
    as pair_mace does; the ghost cutoff is layers × r_max (pair_mace's init_one; skin 0).

    - default (domain decomposition): local and ghost atoms are all nodes; a full neighbour list
      of every node within r_max, edge_index [i, j], zero shifts and unit shifts; the mask
      (``local_or_ghost``) is true for local atoms; LAMMPS adds each ghost's force to its local
      atom (reverse communication with newton on).
    - ``no_domain_decomposition``: local atoms only; edges of local atoms [i, local atom of j],
      unit_shifts = the image of j and shifts = unit_shifts · cell (rows of ``cell``).
    """
    r_max, layers = float(lammps_model.r_max), int(lammps_model.num_interactions)
    positions, owner, image = _lammps_ghosts(atoms, layers * r_max)
    distances = torch.cdist(torch.tensor(positions), torch.tensor(positions), compute_mode="donot_use_mm_for_euclid_dist")
    centre, neighbour = torch.nonzero((distances < r_max) & ~torch.eye(len(positions), dtype=torch.bool), as_tuple=True)
    cell = torch.tensor(np.asarray(atoms.cell))  # lower triangular, as pair_mace fills it from domain->h
    if domain_decomposition:
        n_nodes, edge_index = len(positions), torch.stack([centre, neighbour])
        unit_shifts = torch.zeros(len(centre), 3, dtype=torch.float64)
    else:
        n_nodes, local = len(atoms), centre < len(atoms)
        edge_index = torch.stack([centre[local], torch.from_numpy(owner)[neighbour[local]]])
        unit_shifts = torch.from_numpy(image).to(torch.float64)[neighbour[local]]
        positions = atoms.positions
    elements = torch.from_numpy(np.searchsorted(lammps_model.atomic_numbers.numpy(), atoms.numbers[owner[:n_nodes]]))
    assert torch.equal(lammps_model.atomic_numbers[elements], torch.from_numpy(atoms.numbers[owner[:n_nodes]]))
    data = {
        "batch": torch.zeros(n_nodes, dtype=torch.long),
        "cell": cell,
        "edge_index": edge_index,
        "energy": torch.empty(1, dtype=torch.float64),
        "forces": torch.empty(n_nodes, 3, dtype=torch.float64),
        "node_attrs": torch.nn.functional.one_hot(elements, len(lammps_model.atomic_numbers)).to(torch.float64),
        "positions": torch.tensor(positions),
        "ptr": torch.tensor([0, n_nodes]),
        "shifts": unit_shifts @ cell,
        "unit_shifts": unit_shifts,
        "weight": torch.ones(1, dtype=torch.float64),
    }
    return data, torch.arange(n_nodes) < len(atoms), owner[:n_nodes]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")  # TorchScript is what pair_mace loads
def test_export_converts_for_lammps_pair_style_mace(model, tmp_path):
    """MACE's LAMMPS route: ``mace_create_lammps_model`` (mace.cli.create_lammps_model, libtorch
    format, float64) turns the exported model file into the TorchScript ``*-lammps.pt``
    (LAMMPS_MACE) that ``pair_style mace`` loads. Called as pair_mace.cpp calls it (no LAMMPS
    binary here: ``_pair_mace_inputs``), with and without ``no_domain_decomposition``, in a
    skewed cell smaller than r_max and a slab (``p p f``), it gives ekd's energy and forces, and a
    virial = −∂E/∂ε = −stress · volume (LAMMPS's virial; ekd's stress, like ASE's, is
    (1/V) ∂E/∂ε)."""
    model.export(tmp_path / "model.model")
    command = [sys.executable, "-m", "mace.cli.create_lammps_model", "model.model", "--dtype", "float64", "--format", "libtorch"]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    lammps_model = torch.jit.load(tmp_path / "model.model-lammps.pt")
    # what pair_mace reads from the file: dtype, r_max, number of layers, elements
    assert dict(lammps_model.named_parameters())["model.node_embedding.linear.weight"].dtype == torch.float64
    assert float(lammps_model.r_max) == 5.0 and int(lammps_model.num_interactions) == 2
    assert lammps_model.atomic_numbers.tolist() == SPECIES
    for atoms in periodic_cells().to_atoms():  # bulk (p p p) and slab (p p f)
        atoms = lammps_box(atoms)
        reference = model.predict(Dataset.from_atoms([atoms]), stress=True)
        virial = lammps_virial(reference.stress[0], atoms.get_volume())
        for domain_decomposition in (True, False):
            data, local_or_ghost, owner = _pair_mace_inputs(lammps_model, atoms, domain_decomposition)
            out = lammps_model(data, local_or_ghost, True)  # compute_virials: LAMMPS's vflag_global
            forces = np.zeros((len(atoms), 3))
            np.add.at(forces, owner, out["forces"].numpy())  # ghosts' forces onto their local atoms
            np.testing.assert_allclose(out["total_energy_local"].item(), reference.energy[0], rtol=0, atol=1e-8)
            np.testing.assert_allclose(forces, reference.forces, rtol=0, atol=1e-8)
            np.testing.assert_allclose(out["virials"][0].numpy(), virial, rtol=0, atol=1e-8)


def test_energy_only_training_runs(data, tmp_path):
    train_frames, val_frames = data
    config = TrainConfig(epochs=3, batch_size=8, dtype="float64", device="cpu")
    result = train("mace", train_frames, val_frames, tmp_path, config, MaceBackend.tiny, show_progress=False)
    with open(tmp_path / "history.csv") as handle:
        history = [float(row["val_loss"]) for row in csv.DictReader(handle)]
    assert len(history) == 3 and np.isfinite(history).all() and result.best_val_loss <= history[0]
    assert np.isfinite(result.model.predict(val_frames).energy).all()


def test_training_with_l3_correlation3_layers(data, tmp_path):
    """l_max 3 with 32 channels: deep copies of its compiled tensor products hold extra buffers,
    which broke the EMA when it was a deep copy of the module."""
    train_frames, val_frames = data
    options = {**MaceBackend.tiny, "max_ell": 3, "correlation": 3, "hidden_irreps": "32x0e + 32x1o"}
    config = TrainConfig(epochs=2, batch_size=8, dtype="float64", device="cpu")
    result = train("mace", train_frames, val_frames, tmp_path, config, options, show_progress=False)
    assert result.epochs_run == 2 and np.isfinite(result.best_val_loss)


def test_graphs_are_converted_once_per_batch(data, tmp_path, monkeypatch):
    train_frames, val_frames = data
    converted = []
    convert = MaceBackend.convert

    def counting_convert(self, model, batch):
        converted.append(batch.n_conformations)
        return convert(self, model, batch)

    monkeypatch.setattr(MaceBackend, "convert", counting_convert)
    config = TrainConfig(epochs=3, batch_size=8, dtype="float64", device="cpu")
    train("mace", train_frames, val_frames, tmp_path, config, MaceBackend.tiny, show_progress=False)
    assert len(converted) == math.ceil(len(train_frames) / 8) + 1  # validation: one batch of ≤ 256
    assert sum(converted) == len(train_frames) + len(val_frames)
