"""The ANI-era HDF5 readers on the real release files: counts, units, keys and force signs."""

import h5py
import numpy as np
import pytest
from ase import units

from ekd.data import measure_force_sign, read
from ekd.errors import ConfigError, DataError


def test_ani1_s01_counts_and_hartree_to_ev(shared_data):
    path = shared_data / "ani1/ani_gdb_s01.h5"
    frames = read(path)
    assert frames.metadata["format"] == "pyanitools"
    assert len(frames) == 10_800 and len(frames.molecules) == 3
    counts = {m: int(np.sum(frames.molecule == m)) for m in frames.molecules}
    assert sorted(counts.values()) == [1800, 3600, 5400]
    assert frames.elements == [1, 6, 7, 8] and frames.forces is None
    with h5py.File(path) as handle:
        raw = handle["gdb11_s01/gdb11_s01-0/energies"][:3]
        xyz = handle["gdb11_s01/gdb11_s01-0/coordinates"][0]
    first = frames.molecule == "gdb11_s01/gdb11_s01-0"
    np.testing.assert_allclose(frames.energy[first][:3], raw * units.Hartree)
    np.testing.assert_allclose(frames.positions[:5], xyz, rtol=1e-6)


def test_s66x8_negates_stored_gradients(shared_data):
    path = shared_data / "comp6/s66x8_wb97x6-31gd.h5"
    frames = read(path)
    assert len(frames) == 528 and len(frames.molecules) == 66
    assert frames.elements == [1, 6, 7, 8]
    assert (frames.sizes.min(), frames.sizes.max()) == (6, 34)
    with h5py.File(path) as handle:
        stored = handle["s66x8/mol00/forces"][0]
    np.testing.assert_allclose(frames.forces[:6], -stored * units.Hartree, rtol=1e-6)
    assert frames.metadata["force_sign"] == -1


def test_s66x8_force_sign_by_finite_differences(shared_data):
    path = shared_data / "comp6/s66x8_wb97x6-31gd.h5"
    check = measure_force_sign(read(path))
    assert check.n_pairs > 300 and 0.95 < check.slope < 1.05 and check.verdict == "consistent"
    flipped = measure_force_sign(read(path, force_sign=+1))
    assert flipped.verdict == "flipped" and flipped.slope == pytest.approx(-check.slope)


@pytest.mark.parametrize(
    "name, energy_key, count, has_forces",
    [
        ("ani1x_sample.h5", None, 96, True),
        ("ani1x_sample.h5", "wb97x_tz.energy", 73, True),
        ("ani1x_sample.h5", "ccsd(t)_cbs.energy", 3, False),
        ("ani1x_n5.h5", None, 8, True),
        ("ani1x_n5.h5", "ccsd(t)_cbs.energy", 6, False),
    ],
)
def test_ani1x_keys_drop_not_computed_entries(shared_data, name, energy_key, count, has_forces):
    frames = read(shared_data / "ani1x" / name, energy_key=energy_key)
    assert len(frames) == count and (frames.forces is not None) == has_forces
    assert np.isfinite(frames.energy).all()
    assert frames.metadata["energy_key"] == (energy_key or "wb97x_dz.energy")


def test_ani1x_level_of_theory_and_units(shared_data):
    path = shared_data / "ani1x/ani1x_sample.h5"
    frames = read(path, energy_key="ccsd(t)_cbs.energy")
    assert frames.metadata["level_of_theory"] == "CCSD(T)*/CBS"
    group = str(frames.molecule[0])
    with h5py.File(path) as handle:
        raw = handle[group]["ccsd(t)_cbs.energy"][()]
    np.testing.assert_allclose(frames.energy[0], raw[np.isfinite(raw)][0] * units.Hartree)


def test_ani1x_forces_are_true_forces_by_finite_differences(shared_data):
    # the few nearby pairs in the sample agree with +F (the release stores forces, not gradients)
    check = measure_force_sign(read(shared_data / "ani1x/ani1x_sample.h5"))
    assert check.n_pairs >= 3 and 0.8 < check.slope < 1.2


def test_ani2x_dimers(shared_data):
    frames = read(shared_data / "ani2x/ani2x_dimers.h5")
    assert frames.metadata["format"] == "ani2x"
    assert len(frames) == 5706 and len(frames.molecules) == 10
    assert frames.elements == [1, 6, 7, 8, 9, 16, 17]
    check = measure_force_sign(frames)
    assert check.n_pairs > 500 and 0.95 < check.slope < 1.05


def test_misspelt_energy_key_names_file_and_key(shared_data):
    path = shared_data / "ani1x/ani1x_sample.h5"
    with pytest.raises(DataError, match=r"ani1x_sample.h5: no energy key 'wb97x_dz.energi'.*available: .*wb97x_dz.energy"):
        read(path, energy_key="wb97x_dz.energi")
    with pytest.raises(DataError, match=r"ani_gdb_s01.h5: group .* has no key 'energy'"):
        read(shared_data / "ani1/ani_gdb_s01.h5", energy_key="energy")
    with pytest.raises(DataError, match=r"no force key 'wb97x_dz.force'"):
        read(path, force_key="wb97x_dz.force")


def test_options_that_do_not_apply_and_unknown_formats(shared_data):
    with pytest.raises(ConfigError, match="--molecule-key does not apply"):
        read(shared_data / "ani1/ani_gdb_s01.h5", molecule_key="x")
    with pytest.raises(ConfigError, match="unknown format 'netcdf'"):
        read(shared_data / "ani1/ani_gdb_s01.h5", format="netcdf")
    with pytest.raises(ConfigError, match="unknown energy unit 'hartrees'"):
        read(shared_data / "ani1/ani_gdb_s01.h5", energy_unit="hartrees")


def test_missing_file_and_wrong_shapes(tmp_path):
    with pytest.raises(DataError, match="nothere.h5: no such file"):
        read(tmp_path / "nothere.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as handle:
        group = handle.create_group("mols/m0")
        group["species"] = np.array([b"O", b"H", b"H"])
        group["coordinates"] = np.zeros((4, 3, 3))
        group["energies"] = np.zeros(5)
    with pytest.raises(DataError, match=r"bad.h5: 'mols/m0' energies have shape \(5,\), expected \(4,\)"):
        read(bad)


def test_nan_energy_in_a_layout_without_a_not_computed_convention(tmp_path):
    bad = tmp_path / "nan.h5"
    with h5py.File(bad, "w") as handle:
        group = handle.create_group("m0")
        group["species"] = np.array([b"H", b"H"])
        group["coordinates"] = np.zeros((2, 2, 3))
        group["energies"] = np.array([-1.0, np.nan])
    with pytest.raises(DataError, match=r"nan.h5, group 'm0': key 'energies' has a non-finite energy at conformation 1"):
        read(bad)
