"""MACE backend: ekd's conformance suite, O(3) equivariance, export to MACECalculator, training."""

import csv
import dataclasses
import math

import numpy as np
import pytest
import torch

from ekd.backend import Statistics
from ase.build import molecule

from ekd.model import Model
from ekd.plugins import get_backend
from ekd.testing import BackendConformance, labelled_molecules, periodic_cells, test_molecules
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
