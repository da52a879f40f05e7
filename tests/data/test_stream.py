"""Data larger than memory: the one-pass converter (``ekd data convert``) and the lazy reader
(``ekd.data.stream``), checked array by array against reading the same files whole."""

import dataclasses
import importlib
import pickle

import numpy as np
import pytest

from ekd.data import Dataset, ReadOptions, convert, hdf5, read, stream
from ekd.errors import DataError

stream_module = importlib.import_module("ekd.data.stream")  # (ekd.data.stream is also a function's name)

SHARED = "../shared/data/"
ARRAYS = ("numbers", "positions", "ptr", "molecule", "energy", "forces", "cell", "pbc", "stress")


def assert_same(a: Dataset, b: Dataset) -> None:
    for key in ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), key


@pytest.mark.parametrize("name, kwargs", [
    ("ani1x/ani1x_sample.h5", {}),
    ("comp6/s66x8_wb97x6-31gd.h5", {}),  # stored gradients: the converted file holds forces
    ("ani2x/ani2x_dimers.h5", {}),
    ("md17/ethanol_md17_2000.xyz", {"energy_unit": "kcal/mol"}),  # a layout read whole, then written
])
def test_a_converted_file_reads_as_the_source_does(tmp_path, name, kwargs):
    source = read(SHARED + name, **kwargs)
    convert(SHARED + name, tmp_path / "out.h5", ReadOptions(**kwargs), show_progress=False)
    converted = read(tmp_path / "out.h5")
    assert_same(converted, source)
    origin = converted.metadata["converted_from"]
    assert origin["sha256"] == source.metadata["sha256"] and origin["format"] == source.metadata["format"]
    assert origin["energy_key"] == source.metadata["energy_key"] and origin["force_sign"] == source.metadata["force_sign"]


def test_conversion_holds_one_molecule_at_a_time(tmp_path, monkeypatch):
    blocks = []
    append = hdf5.FramesWriter.append
    monkeypatch.setattr(hdf5.FramesWriter, "append", lambda self, frames: (blocks.append(len(frames)), append(self, frames)))
    convert(SHARED + "ani1x/ani1x_sample.h5", tmp_path / "out.h5", show_progress=False)
    whole = read(SHARED + "ani1x/ani1x_sample.h5")
    assert len(blocks) == len(whole.molecules) == 50 and sum(blocks) == len(whole)


def test_a_failed_conversion_names_the_block_and_leaves_no_file(tmp_path):
    import h5py

    bad = tmp_path / "bad.h5"
    with h5py.File(SHARED + "ani1/ani_gdb_s01.h5") as source, h5py.File(bad, "w") as out:
        source.copy(source["/"], out, "copy")
        out["copy/gdb11_s01/gdb11_s01-2/energies"][1] = np.nan  # no not-computed convention in this layout
    with pytest.raises(DataError, match=r"bad.h5, group 'copy/gdb11_s01/gdb11_s01-2': key 'energies' has a non-finite energy at conformation 1"):
        convert(bad, tmp_path / "out.h5", show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """The embedded metals set (periodic, with stresses) and S66x8 (forces) as ekd files, streamed."""
    folder = tmp_path_factory.mktemp("stream")
    files = {"metals": Dataset.embedded(True, "metals"), "s66x8": read(SHARED + "comp6/s66x8_wb97x6-31gd.h5")}
    for name, frames in files.items():
        frames.write(folder / f"{name}.h5")
    return {name: (read(folder / f"{name}.h5"), stream(folder / f"{name}.h5")) for name in files}


@pytest.mark.parametrize("name", ["metals", "s66x8"])
def test_views_splits_and_batches_load_what_the_in_memory_reader_holds(on_disk, name):
    whole, streamed = on_disk[name]
    assert len(streamed) == len(whole) and streamed.n_atoms == whole.n_atoms and streamed.elements == whole.elements
    for a, b in zip(whole.split((0.7, 0.2, 0.1), "molecule", seed=4), streamed.split((0.7, 0.2, 0.1), "molecule", seed=4)):
        assert_same(b.load(), a)
        assert b.elements == a.elements and np.array_equal(b.composition(a.elements), a.composition(a.elements))
    for a, b in zip(whole.batches(37, shuffle=True, seed=2), streamed.batches(37, shuffle=True, seed=2)):
        assert_same(b, a)
    index = [9, 3, 3, len(whole) - 1, 0]  # any order, repeats
    assert_same(streamed.subset(index).subset([4, 1, 2]).load(), whole.subset(index).subset([4, 1, 2]))
    assert_same(pickle.loads(pickle.dumps(streamed.subset(index))).load(), whole.subset(index))  # to spawned ranks
    assert streamed.subset(index).sha256() != streamed.subset(index[::-1]).sha256()


def test_a_view_lacking_an_element_reports_its_own_elements(on_disk):
    whole, streamed = on_disk["metals"]
    aluminium = np.flatnonzero([set(whole.numbers[whole.atoms_of(i)]) == {13} for i in range(len(whole))])
    assert streamed.subset(aluminium).elements == [13] and streamed.elements == whole.elements == [13, 28, 29]


def test_the_element_counts_widen_when_a_later_block_brings_a_new_element(on_disk, monkeypatch):
    whole, streamed = on_disk["s66x8"]
    monkeypatch.setattr(stream_module, "_BLOCK", 7)  # S66x8 opens with water dimers: carbon and nitrogen come in later blocks
    assert set(whole.subset(range(7)).elements) < set(whole.elements)
    again = stream(streamed._file.path)
    assert again.elements == whole.elements and again._file.counts.dtype == np.uint8
    assert np.array_equal(again.composition(whole.elements), whole.composition(whole.elements))
    assert np.array_equal(again.composition(whole.elements, slice(30, 90)), whole.composition(whole.elements)[30:90])


def test_streaming_a_file_of_another_layout_says_to_convert_it():
    with pytest.raises(DataError, match=r"ani_gdb_s01.h5: not an ekd HDF5 file; convert it first with 'ekd data convert"):
        stream(SHARED + "ani1/ani_gdb_s01.h5")
    with pytest.raises(DataError, match=r"ethanol_md17_2000.xyz: not an HDF5 file; convert it first with 'ekd data convert"):
        stream(SHARED + "md17/ethanol_md17_2000.xyz")


@pytest.mark.parametrize("name", ["metals", "s66x8"])
def test_a_streamed_dataset_is_scored_block_by_block_as_the_same_data_in_memory(on_disk, name):
    import torch

    from ekd.backend import Statistics
    from ekd.evaluate import evaluate, evaluate_streamed
    from ekd.model import Model

    whole, streamed = on_disk[name]
    model = Model.build("pairmlp", whole.elements, Statistics.of(whole, whole.elements, 4.0), {"cutoff": 4.0, "width": 8, "n_rbf": 4}, dtype=torch.float64)
    expected = evaluate(model, {name: whole})[name]
    assert "force_mae" in expected and ("stress_mae_GPa" in expected) == (name == "metals")
    assert evaluate_streamed(model, streamed, block=37) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("energies", ["reference", "teachers"])
def test_a_streamed_labels_file_is_the_training_view_without_reading_the_teachers_forces(tmp_path, on_disk, monkeypatch, energies):
    from ekd.data import Labels, TeacherRecord
    from ekd.data.labels import make_provenance

    whole, _ = on_disk["metals"]  # periodic: the teachers' stresses too
    rng = np.random.default_rng(0)
    teachers = [TeacherRecord("pairmlp", f"pairmlp:{k}", None, k) for k in range(3)]
    labels = Labels(whole.without_forces(), rng.normal(size=(3, whole.n_atoms, 3)), teachers, whole.energy + rng.normal(size=(3, len(whole))),
                    [], make_provenance(whole), rng.normal(size=(3, len(whole), 6)))
    labels.write(tmp_path / "labels.h5")
    expected = labels.dataset(energies)
    read_key = stream_module._File.read
    monkeypatch.setattr(stream_module._File, "read", lambda self, key, rows: read_key(self, key, rows) if self.keys.get(key, key) != "teacher_forces" else pytest.fail("teacher forces read"))
    streamed = stream(tmp_path / "labels.h5", energies)
    index = [5, 0, len(whole) - 1, 2]
    got, want = streamed.subset(index).load(), expected.subset(index)
    assert_same(got, want)
    assert np.array_equal(got.atom_data["force_spread"], want.atom_data["force_spread"]) and "teacher_forces" not in got.atom_data
    energy_only = streamed.subset(index).without_forces().load()  # what a baseline sees: as in memory
    assert energy_only.forces is None and energy_only.stress is None and energy_only.atom_data == want.without_forces().atom_data == {}
    assert np.array_equal(streamed.energy, expected.energy)
    provenance = streamed.metadata["provenance"]
    assert provenance["source_sha256"] == labels.provenance["source_sha256"] and provenance["teachers"][1]["spec"] == "pairmlp:1"
    assert streamed.sha256() != stream(tmp_path / "labels.h5", "teachers" if energies == "reference" else "reference").sha256()


def test_energy_only_training_on_a_streamed_labels_file_does_not_depend_on_the_teachers(tmp_path, on_disk):
    from ekd.data import Labels, TeacherRecord
    from ekd.data.labels import make_provenance

    whole, _ = on_disk["metals"]
    teachers = [TeacherRecord("pairmlp", f"pairmlp:{k}", None, k) for k in range(2)]

    def labels_file(name, seed, energy_shift=0.0):
        rng = np.random.default_rng(seed)
        data = dataclasses.replace(whole.without_forces(), energy=whole.energy + energy_shift)
        Labels(data, rng.normal(size=(2, whole.n_atoms, 3)), teachers, whole.energy + rng.normal(size=(2, len(whole))),
               [], make_provenance(data), rng.normal(size=(2, len(whole), 6))).write(tmp_path / name)
        return tmp_path / name

    index = [3, 1, 4]
    one, other, shifted = labels_file("a.h5", 0), labels_file("b.h5", 1), labels_file("c.h5", 0, energy_shift=1e-3)
    view = lambda path, energies="reference": stream(path, energies).subset(index)  # noqa: E731
    assert view(one).sha256() != view(other).sha256()  # the students' view: the teachers' forces
    assert view(one).without_forces().sha256() == view(other).without_forces().sha256()  # other teachers, same energies
    assert view(one).without_forces().sha256() != view(shifted).without_forces().sha256()  # other reference energies
    assert view(one, "teachers").without_forces().sha256() != view(other, "teachers").without_forces().sha256()
    assert view(one).without_forces().sha256() != stream(one).subset(index[::-1]).without_forces().sha256()


def test_teacher_energies_need_a_labels_file(on_disk):
    with pytest.raises(DataError, match=r"metals.h5: energies='teachers' needs a labels file"):
        stream(on_disk["metals"][1]._file.path, "teachers")


def tiny_ensemble(frames: Dataset):
    import torch

    from ekd.backend import Statistics
    from ekd.ensemble import Ensemble
    from ekd.model import Model

    statistics = Statistics.of(frames, frames.elements, 4.0)
    return Ensemble([Model.build("pairmlp", frames.elements, statistics, {"cutoff": 4.0, "width": 8, "n_rbf": 4}, seed=k, dtype=torch.float64)
                     for k in range(3)], ["a", "b", "c"])


def assert_same_labels(expected_path, got_path) -> None:
    """Every array of two labels files equal (to 1e-12; molecule ids compared as names)."""
    import h5py

    with h5py.File(expected_path) as expected, h5py.File(got_path) as got:
        keys = set(expected) - {"molecule", "molecule_names"}  # (codes numbered in the order met: compared as ids below)
        assert keys == set(got) - {"molecule", "molecule_names"} and {"teacher_forces", "teacher_energy"} <= keys
        for key in keys:
            a, b = expected[key][()], got[key][()]
            assert a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True), key
    assert np.array_equal(read(got_path).molecule, read(expected_path).molecule)


@pytest.mark.parametrize("name", ["metals", "s66x8"])
def test_labelling_a_streamed_dataset_block_by_block_writes_the_labels_of_the_whole(tmp_path, on_disk, name):
    import h5py

    from ekd.pipeline import label

    whole, streamed = on_disk[name]
    ensemble = tiny_ensemble(whole)
    label(whole, ensemble, show_progress=False).write(tmp_path / "whole.h5")
    label(streamed, ensemble, tmp_path / "blocks.h5", block=37, show_progress=False)
    assert_same_labels(tmp_path / "whole.h5", tmp_path / "blocks.h5")
    with h5py.File(tmp_path / "blocks.h5") as got:
        assert ("teacher_stress" in got) == (name == "metals")


def test_an_interrupted_labelling_redoes_only_missing_blocks_and_two_ranks_write_the_same_file(tmp_path, on_disk, monkeypatch):
    from ekd.pipeline import label as label_data
    from ekd.testing import on_ranks

    pipeline = importlib.import_module("ekd.pipeline.labelling")
    whole, streamed = on_disk["s66x8"]  # 528 conformations: 6 blocks of 100
    ensemble = tiny_ensemble(whole)
    label_data(streamed, ensemble, tmp_path / "one.h5", block=100, show_progress=False)
    predicted, real, stop_at = [], pipeline._member_predictions, [3]

    def interrupted(frames, *args):  # a killed labelling: the stop_at-th block fails
        predicted.append(len(frames))
        if len(predicted) == stop_at[0]:
            raise RuntimeError("killed")
        return real(frames, *args)

    monkeypatch.setattr(pipeline, "_member_predictions", interrupted)
    label = lambda teachers, out: label_data(streamed, teachers, tmp_path / out, cache=tmp_path / "blocks", block=100, show_progress=False)  # noqa: E731
    with pytest.raises(RuntimeError, match="killed"):
        label(ensemble, "resumed.h5")
    assert not (tmp_path / "resumed.h5").exists() and sorted(p.name for p in (tmp_path / "blocks").iterdir()) == ["block-0.npz", "block-1.npz"]
    predicted[:], stop_at[0] = [], 0
    label(ensemble, "resumed.h5")
    assert predicted == [100, 100, 100, 28]  # blocks 2 to 5 only
    assert list((tmp_path / "blocks").iterdir()) == []  # removed once the file is written
    assert_same_labels(tmp_path / "one.h5", tmp_path / "resumed.h5")
    predicted[:], stop_at[0] = [], 3
    with pytest.raises(RuntimeError, match="killed"):
        label(ensemble, "again.h5")
    predicted[:], stop_at[0] = [], 0
    label(tiny_ensemble(whole.subset(range(50))), "other.h5")  # other teachers' weights: blocks 0 and 1 are not reused
    assert predicted == [100] * 5 + [28]
    on_ranks(2, "ekd.pipeline:label", streamed, ensemble, tmp_path / "two.h5", cache=tmp_path / "two-blocks", block=100, show_progress=False)
    assert_same_labels(tmp_path / "one.h5", tmp_path / "two.h5")
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
