import ase.io
import numpy as np
import pytest
from ase import Atoms, units

from ekd.data import measure_force_sign, read, write
from ekd.errors import DataError


def test_md17_in_kcal_per_mol(shared_data):
    path = shared_data / "md17/ethanol_md17_2000.xyz"
    frames = read(path, energy_unit="kcal/mol")
    assert len(frames) == 2000 and frames.elements == [1, 6, 8] and set(frames.sizes) == {9}
    raw = ase.io.read(path, index=0)
    kcal = units.kcal / units.mol
    np.testing.assert_allclose(frames.energy[0], raw.get_potential_energy() * kcal)
    np.testing.assert_allclose(frames.forces[:9], raw.get_forces() * kcal)
    check = measure_force_sign(frames)
    assert check.n_pairs >= 10 and 0.9 < check.slope < 1.1


def test_extxyz_round_trip(tmp_path, harmonic):
    frames = harmonic(6)
    write(frames, tmp_path / "h.xyz")
    back = read(tmp_path / "h.xyz")
    # ASE's extxyz writer keeps 8 decimals
    np.testing.assert_allclose(back.positions, frames.positions, atol=1e-8)
    np.testing.assert_allclose(back.energy, frames.energy, atol=1e-8)
    np.testing.assert_allclose(back.forces, frames.forces, atol=1e-8)
    assert list(back.molecule) == list(frames.molecule)


def test_key_mapping_and_missing_keys(tmp_path):
    images = []
    for i in range(3):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74 + 0.01 * i]])
        atoms.info["E_dft"] = -31.0 - i
        atoms.arrays["F_dft"] = np.full((2, 3), 0.1 * i)
        atoms.info["mol"] = "hydrogen"
        images.append(atoms)
    path = tmp_path / "custom.xyz"
    ase.io.write(path, images, format="extxyz")
    frames = read(path, energy_key="E_dft", force_key="F_dft", molecule_key="mol", energy_unit="Ha")
    np.testing.assert_allclose(frames.energy, (-31.0 - np.arange(3)) * units.Hartree)
    assert frames.forces[-1, 0] == pytest.approx(0.2 * units.Hartree)
    assert list(frames.molecule) == ["hydrogen"] * 3
    with pytest.raises(DataError, match=r"custom.xyz: frame 0 has no 'E'"):
        read(path, energy_key="E")
    plain = read(path)  # no 'energy' anywhere and none asked for: energies absent, not an error
    assert plain.energy is None and list(plain.molecule) == ["H2"] * 3


def test_garbage_file_is_a_one_line_data_error(tmp_path):
    path = tmp_path / "junk.xyz"
    path.write_text("this is not\na structure file\n")
    with pytest.raises(DataError, match="junk.xyz: ase.io cannot read it"):
        read(path)
