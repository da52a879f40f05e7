from pathlib import Path

import h5py
import numpy as np
import pytest

import ekd
from ekd.data import read, stream, write
from ekd.data.hdf5 import FramesWriter
from ekd.errors import DataError


def test_ekd_h5_round_trip_is_exact(tmp_path, harmonic):
    frames = harmonic(7).with_metadata(level_of_theory="toy")
    write(frames, tmp_path / "f.h5")
    back = read(tmp_path / "f.h5")
    assert back.metadata["format"] == "ekd" and back.metadata["level_of_theory"] == "toy"
    for name in ("numbers", "positions", "ptr", "energy", "forces"):
        np.testing.assert_array_equal(getattr(back, name), getattr(frames, name))
    assert list(back.molecule) == list(frames.molecule)
    with h5py.File(tmp_path / "f.h5") as handle:
        assert handle.attrs["energy_unit"] == "eV" and handle.attrs["force_unit"] == "eV/Å"


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, harmonic):
    write(harmonic(3), tmp_path / "f.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]


def test_other_format_versions_are_refused(tmp_path, harmonic):
    write(harmonic(2), tmp_path / "f.h5")
    with h5py.File(tmp_path / "f.h5", "r+") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(DataError, match="f.h5: ekd format version 99, this ekd reads versions 1, 2"):
        read(tmp_path / "f.h5")


def test_molecule_ids_are_stored_once_and_version_1_files_still_read(tmp_path):
    old = Path(ekd.__file__).parent / "datasets/ekd_periodic_emt.h5"  # version 1: an id string per conformation
    with h5py.File(old) as handle:
        assert handle.attrs["format_version"] == 1 and handle["molecule"].dtype.kind == "O"
    frames = read(old)
    assert list(stream(old).molecule) == list(frames.molecule)
    first, second = frames.subset(np.arange(0, len(frames), 2)), frames.subset(np.arange(1, len(frames), 2))  # the same ids in both blocks
    with h5py.File(tmp_path / "new.h5", "w") as handle:
        handle.attrs["format"] = "ekd-frames"
        writer = FramesWriter(handle)
        writer.append(first)
        writer.append(second)
        writer.finish({})
    with h5py.File(tmp_path / "new.h5") as handle:
        assert handle["molecule"].dtype == np.int32 and sorted(handle["molecule_names"].asstr()) == sorted(frames.molecules)
    expected = list(first.molecule) + list(second.molecule)
    assert list(read(tmp_path / "new.h5").molecule) == expected == list(stream(tmp_path / "new.h5").molecule)


def test_unknown_output_extension(tmp_path, harmonic):
    with pytest.raises(Exception, match="cannot tell the output format"):
        write(harmonic(2), tmp_path / "f.csv")
