"""The coupled-cluster set (embedded:ccsdt): CC energies on the embedded set's own geometries,
CC forces only for its held-out conformations, in a file of their own."""

import numpy as np
import pytest

import ekd
from ekd.data.embedded import EMBEDDED
from ekd.runconfig import RunConfig


@pytest.fixture(scope="module")
def sets():
    training = ekd.Dataset.read("embedded:ccsdt")
    held_out = ekd.Dataset.read(EMBEDDED["ccsdt"].parent / training.metadata["held_out"])
    return training, held_out, ekd.Dataset.embedded(with_forces=True)


def test_the_training_file_has_cc_energies_and_no_forces_and_the_held_out_file_cc_forces(sets):
    training, held_out, _ = sets
    assert training.forces is None and training.energy is not None and held_out.forces is not None
    assert training.metadata["level_of_theory"] == held_out.metadata["level_of_theory"] == "CCSD(T)/cc-pVDZ(fc)"
    assert len(training) + len(held_out) + len(training.metadata["reference"]["failures"]) + len(held_out.metadata["reference"]["failures"]) == 1600
    assert not set(training.conformation_keys()) & set(held_out.conformation_keys())


def test_every_conformation_pairs_with_its_dft_row_and_the_held_out_ones_are_a_default_run_s_test_split(sets):
    training, held_out, dft = sets
    for frames in (training, held_out):
        rows = np.array(frames.metadata["embedded_rows"])
        assert frames.conformation_keys() == dft.subset(rows).conformation_keys()
    section = RunConfig().data
    test = dft.split(section.fractions, by=section.split, seed=section.seed).test
    assert set(held_out.conformation_keys()) <= set(test.conformation_keys())


def test_cc_forces_differ_from_dft_forces_by_what_the_method_changes(sets):
    _, held_out, dft = sets
    rows = np.array(held_out.metadata["embedded_rows"])
    difference = np.abs(held_out.forces - dft.subset(rows).forces).mean() / 0.0433641  # kcal/mol/Å
    assert 0.3 < difference < 10  # the same geometries (not 0), another level of theory (not a sign or unit slip)


def test_a_run_on_it_scores_on_the_held_out_cc_forces(tmp_path):
    run = ekd.Run(tmp_path / "run", RunConfig.load(None, {"data.path": "embedded:ccsdt"}))
    train, validation, test = run.split
    assert run.config.data.test_path.endswith("ekd_ref_ccsdt_ccpvdz_held_out.h5") and test.forces is not None
    assert len(train) + len(validation) == len(run.data)
