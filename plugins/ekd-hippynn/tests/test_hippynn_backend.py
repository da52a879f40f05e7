"""HIP-NN backend: ekd's conformance suite, hippynn's own model and ASE calculator, options."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule

from ekd.backend import Statistics
from ekd.data import Dataset
from ekd.errors import ConfigError
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.testing import BackendConformance, periodic_cells, test_molecules

SPECIES = [1, 6, 7, 8]
REFERENCE = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2042.0}  # eV


class TestHipnn(BackendConformance):
    backend_name = "hippynn"


class TestHipnnTensorSensitivities(BackendConformance):
    """HIP-NN-TS (l = 2): the pair vectors enter the model too."""

    backend_name = "hippynn"
    options = {**get_backend("hippynn").tiny, "tensor_order": 2}


def build(**options) -> Model:
    options = {**get_backend("hippynn").tiny, **options}
    return Model.build("hippynn", SPECIES, Statistics(REFERENCE, avg_num_neighbors=4.0), options, seed=0, dtype=torch.float64, device="cpu")


def hippynn_calculator(model: Model, tmp_path):
    """hippynn's own ASE calculator on the model ``ekd export`` wrote (loaded as hippynn's docs do)."""
    from hippynn.interfaces.ase_interface import HippynnCalculator

    model.export(tmp_path / "model.hippynn.pt")
    graph = torch.load(tmp_path / "model.hippynn.pt", weights_only=False)
    return HippynnCalculator(graph.node_from_name("HEnergy"), en_unit=units.eV).to(torch.float64)


@pytest.mark.parametrize("tensor_order", [0, 1])
@pytest.mark.parametrize("structure", ["methanol", "bulk cell", "slab"])
def test_export_runs_in_hippynn_calculator(tmp_path, tensor_order, structure):
    """hippynn's calculator (its own pair finding, periodic images included, in cells smaller
    than the cutoff) gives ekd's energies and forces. hippynn has no mixed periodicity: it sees
    the slab as a fully periodic cell with 40 Å along the open axis."""
    if structure == "methanol":
        atoms = molecule("CH3OH")
        atoms.positions += np.random.default_rng(0).normal(scale=0.1, size=atoms.positions.shape)
    else:
        atoms = periodic_cells().to_atoms()[structure == "slab"]
    model = build(tensor_order=tensor_order, n_interaction_layers=2)
    theirs, ours = atoms.copy(), atoms.copy()
    if structure == "slab":
        theirs.cell[2], theirs.pbc = [0.0, 0.0, 40.0], True
    theirs.calc, ours.calc = hippynn_calculator(model, tmp_path), model.calculator()
    np.testing.assert_allclose(theirs.get_potential_energy(), ours.get_potential_energy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(theirs.get_forces(), ours.get_forces(), rtol=0, atol=1e-8)
    assert np.abs(ours.get_forces()).max() > 1e-3


def test_export_refuses_another_file_name(tmp_path):
    with pytest.raises(ConfigError, match=r"must end with '\.hippynn\.pt'"):
        build().export(tmp_path / "model.pt")


def test_the_first_energy_term_is_the_reference_energies_and_stays_fixed():
    """E0 (hippynn's non-interacting term) is ekd's per-element fit, not trained; an isolated
    atom (no pairs) has E0 plus the network's constant terms."""
    model = build()
    reference = model.module.energy.layers[0].weight
    np.testing.assert_array_equal(reference.detach().numpy()[0], [REFERENCE[z] for z in SPECIES])
    assert not reference.requires_grad and all(p.requires_grad for n, p in model.module.named_parameters() if n != "energy.layers.0.weight")
    atom = Dataset.from_arrays([np.array([8])], [np.zeros((1, 3))], ["O"])
    assert abs(model.predict(atom, forces=False).energy[0] - REFERENCE[8]) < 0.1  # the higher terms start decayed (1e-2, 1e-4)


def test_training_leaves_the_first_energy_term_at_the_fit(tmp_path):
    """ekd's trainer moves every weight but E0, which stays ekd's per-element fit of the training energies."""
    from ekd.testing import labelled_molecules
    from ekd.train import TrainConfig, train

    data = labelled_molecules(4).without_forces()
    config = TrainConfig(epochs=3, batch_size=8, dtype="float64", device="cpu", ema_decay=0.0)
    result = train("hippynn", data.subset(range(0, 20, 2)), data.subset(range(1, 20, 2)), tmp_path, config, get_backend("hippynn").tiny, show_progress=False)
    trained = Model.load(tmp_path / "model.pt", device="cpu")
    fit = [trained.statistics.reference_energies[z] for z in trained.species]
    np.testing.assert_array_equal(trained.module.energy.layers[0].weight.detach().numpy()[0], fit)
    untrained = build()
    assert result.best_val_loss > 0 and not np.allclose(trained.module.energy.layers[1].weight.detach().numpy(), untrained.module.energy.layers[1].weight.detach().numpy())


def test_options_name_the_bad_distance_order():
    with pytest.raises(ConfigError, match="dist_soft_min < dist_soft_max <= dist_hard_max"):
        build(dist_soft_max=7.0, dist_hard_max=6.5)
    with pytest.raises(ConfigError, match="n_features"):
        build(n_features=0)


def test_the_cutoff_is_the_hard_maximum_and_variations_differ_in_it():
    backend = get_backend("hippynn")
    cutoffs = {backend.cutoff(backend.Options(**variation)) for variation in backend.variations}
    assert cutoffs == {5.5, 6.0, 6.5, 7.0}


def test_close_pairs_raise_no_warning_per_batch(recwarn):
    """hippynn warns for pairs inside its innermost sensitivity with a message that differs per
    batch; ekd turns it off while it runs the model and leaves hippynn's setting as it was."""
    import hippynn

    model = build(dist_soft_min=1.5)
    model.predict(test_molecules())  # C-H bonds at ~1.1 Å, inside 1.5 Å
    assert not [w for w in recwarn if "sensitivity range" in str(w.message)]
    assert hippynn.settings.WARN_LOW_DISTANCES is True
