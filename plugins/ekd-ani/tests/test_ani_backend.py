"""ANI specifics: ANI-1x AEV layout by default, Hartree inside, eV outside."""

import numpy as np
import torch
from ase import units

from ekd.model import Model
from ekd.testing import test_molecules


def test_default_aev_is_ani1x_sized():
    model = Model.build("ani", [1, 6, 7, 8], device="cpu")
    # 4 species: 16 radial shifts x 4 + 4 x 8 angular terms x 10 species pairs = 384 (ANI-1x)
    assert model.module.potentials["nnp"].aev_computer.out_dim == 384
    first = model.module.potentials["nnp"].neural_networks.atomics["H"].layers[0]
    assert (first.in_features, first.out_features) == (384, 160)


def test_energies_are_torchani_hartree_times_ase_hartree():
    model = Model.build("ani", [1, 6, 7, 8], {1: -10.0, 6: -1000.0, 7: -1400.0, 8: -2000.0}, {"hidden": (8,)}, dtype=torch.float64, device="cpu")
    frames = test_molecules().subset([0])
    species = torch.tensor(frames.numbers)[None]
    coordinates = torch.tensor(frames.positions)[None]
    hartree = model.module((species, coordinates)).energies.item()
    np.testing.assert_allclose(model.predict(frames, forces=False).energy[0], hartree * units.Hartree, rtol=1e-12)


def test_periodic_energies_and_forces_are_torchanis_own():
    """On cells smaller than the cutoff (atoms see their own images) and a slab, ekd's ANI on the
    core's periodic edges gives what torchani computes itself from the cell and pbc."""
    from ekd.testing import periodic_cells

    model = Model.build("ani", [1, 6, 7, 8], {1: -10.0, 6: -1000.0, 7: -1400.0, 8: -2000.0}, {"hidden": (8,)}, dtype=torch.float64, device="cpu")
    cells = periodic_cells()
    ours = model.predict(cells)
    for k in range(len(cells)):
        rows = cells.atoms_of(k)
        coordinates = torch.tensor(cells.positions[rows])[None].requires_grad_()
        hartree = model.module((torch.tensor(cells.numbers[rows])[None], coordinates), cell=torch.tensor(cells.cell[k]),
                               pbc=torch.tensor(cells.pbc[k])).energies.sum()
        forces = -torch.autograd.grad(hartree, coordinates)[0][0].numpy() * units.Hartree
        np.testing.assert_allclose(ours.energy[k], hartree.item() * units.Hartree, rtol=1e-10)
        np.testing.assert_allclose(ours.forces[rows], forces, atol=1e-8)


def test_export_runs_in_torchanis_own_calculator(tmp_path):
    from ase.build import molecule

    model = Model.build("ani", [1, 6, 7, 8], options={"hidden": (8,)}, dtype=torch.float64, device="cpu")
    model.export(tmp_path / "ani.pt")
    atoms = molecule("CH3OH")
    atoms.calc = torch.load(tmp_path / "ani.pt", weights_only=False).ase()
    mine = model.calculator()
    reference = atoms.copy()
    reference.calc = mine
    np.testing.assert_allclose(atoms.get_potential_energy(), reference.get_potential_energy(), rtol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-8)


def test_every_variation_of_the_diversity_recipe_builds_and_differs():
    from ekd.plugins import get_backend

    frames = test_molecules().subset([4])
    backend = get_backend("ani")
    energies = []
    for variation in backend.variations:
        model = Model.build("ani", [1, 6, 7, 8], options={**backend.tiny, **variation}, dtype=torch.float64, device="cpu")
        energies.append(model.predict(frames, forces=False).energy[0])
    assert len(set(np.round(energies, 10))) == len(backend.variations)
