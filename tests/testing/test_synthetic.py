import dataclasses

from ekd.data import measure_force_sign
from ekd.testing import labelled_molecules, pair_potential


def test_pair_potential_forces_are_minus_gradient():
    frames = labelled_molecules(2)
    _, forces = pair_potential(frames)
    step, rows = 1e-6, frames.atoms_of(4)

    def energy_with(atom, axis, delta):
        moved = frames.positions.copy()
        moved[atom, axis] += delta
        return pair_potential(dataclasses.replace(frames, positions=moved))[0][4]

    for atom in range(rows.start, rows.stop):
        for axis in range(3):
            numeric = -(energy_with(atom, axis, step) - energy_with(atom, axis, -step)) / (2 * step)
            assert abs(numeric - forces[atom, axis]) < 1e-6


def test_labelled_molecules_pass_the_sign_check():
    assert measure_force_sign(labelled_molecules(20, scale=0.02)).verdict == "consistent"
