"""The backend-agnostic trainer, driven with the small example backend (pairmlp)."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from ekd.data import write
from ekd.errors import ConfigError, DataError, Preempted
from ekd.model import Model
from ekd.testing import labelled_molecules, test_molecules
from ekd.train import TrainConfig, fit_reference_energies, train

CONFIG = TrainConfig(epochs=6, batch_size=8, lr=3e-3, early_stopping=100, dtype="float64", device="cpu")


def labelled(seed=3, count=8):
    return labelled_molecules(count, seed).without_forces()


def weights(path):
    return Model.load(path, device="cpu").module.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_reference_energy_fit_is_exact_for_a_linear_model():
    frames = test_molecules(count_per_molecule=2)
    truth = {1: -13.0, 6: -1000.0, 7: -1400.0, 8: -2000.0}
    energy = np.array([sum(truth[int(z)] for z in frames.numbers[frames.atoms_of(i)]) for i in range(len(frames))])
    fitted = fit_reference_energies(dataclasses.replace(frames, energy=energy))
    assert fitted == pytest.approx(truth)


def test_reference_energies_of_a_single_composition_are_the_minimum_norm_fit():
    frames = test_molecules(count_per_molecule=3)
    one = frames.subset(np.flatnonzero(frames.molecule == frames.molecules[0]))  # one composition: the fit is underdetermined
    one = dataclasses.replace(one, energy=np.full(len(one), -100.0))
    species = frames.elements
    counts = one.composition(species)[0]
    fitted = np.array([fit_reference_energies(one, species)[z] for z in species])
    assert counts @ fitted == pytest.approx(-100.0, abs=1e-9)  # exact on the composition present
    assert fitted == pytest.approx(counts * -100.0 / (counts @ counts), abs=1e-9)  # nothing along what the data leave open


def test_energy_only_training_never_computes_forces(tmp_path, monkeypatch):
    data = labelled()

    def no_gradients(*args, **kwargs):
        raise AssertionError("forces were computed during energy-only training")

    monkeypatch.setattr(torch.autograd, "grad", no_gradients)
    train("pairmlp", data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2)), tmp_path, CONFIG, show_progress=False)


def test_force_training_needs_force_labels(tmp_path):
    data = labelled()
    with pytest.raises(DataError, match="no forces"):
        train("pairmlp", data, data, tmp_path, CONFIG.model_copy(update={"force_weight": 1.0}), show_progress=False)


def test_outputs_and_history(tmp_path):
    data = labelled()
    result = train("pairmlp", data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2)), tmp_path, CONFIG, show_progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "model.pt", "history.csv"}
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,lr,seconds" and len(lines) == 7
    assert result.epochs_run == 6 and 1 <= result.best_epoch <= 6
    assert result.model.info["train_config"]["seed"] == 0


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    data = labelled()
    parts = data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2))
    train("pairmlp", *parts, tmp_path / "straight", CONFIG, show_progress=False)

    def interrupt_at_3(epoch, row):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("pairmlp", *parts, tmp_path / "resumed", CONFIG, show_progress=False, on_epoch_end=interrupt_at_3)
    assert len((tmp_path / "resumed/history.csv").read_text().splitlines()) == 4
    result = train("pairmlp", *parts, tmp_path / "resumed", CONFIG, show_progress=False)
    assert result.epochs_run == 6
    assert_same_weights(weights(tmp_path / "straight/model.pt"), weights(tmp_path / "resumed/model.pt"))
    assert (tmp_path / "straight/history.csv").read_text().count("\n") == (tmp_path / "resumed/history.csv").read_text().count("\n")


def test_resume_refuses_a_directory_of_another_run(tmp_path):
    data = labelled()
    parts = data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2))
    train("pairmlp", *parts, tmp_path, CONFIG.model_copy(update={"epochs": 1}), show_progress=False)
    with pytest.raises(ConfigError, match="holds a training run with other"):
        train("pairmlp", *parts, tmp_path, CONFIG.model_copy(update={"lr": 1e-2}), show_progress=False)


@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_same_weights(tmp_path, kill_after_epochs):
    """SIGKILL a real `ekd train` process mid-run, run the same command again: same final weights."""
    data_path = tmp_path / "data.h5"
    write(labelled(count=16), data_path)
    (tmp_path / "c.yaml").write_text("train: {batch_size: 8, lr: 0.003, early_stopping: 100, dtype: float64, device: cpu}\n")
    command = [sys.executable, "-m", "ekd", "train", "--backend", "pairmlp", "--data", str(data_path), "--config", str(tmp_path / "c.yaml"), "--epochs", "25"]
    subprocess.run(command + ["--out", str(tmp_path / "straight")], check=True, capture_output=True)
    finished, _ = kill_after_epochs(command + ["--out", str(tmp_path / "killed")], tmp_path / "killed/history.csv", 3)
    assert 3 <= finished < 25, f"kill landed after {finished} epochs"
    subprocess.run(command + ["--out", str(tmp_path / "killed")], check=True, capture_output=True)
    assert_same_weights(weights(tmp_path / "straight/model.pt"), weights(tmp_path / "killed/model.pt"))


def test_resume_refuses_other_per_atom_force_weights(tmp_path):
    data = labelled_molecules(8)
    parts = data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2))
    config = CONFIG.model_copy(update={"epochs": 1, "force_weight": 0.1})
    train("pairmlp", *parts, tmp_path, config, show_progress=False)
    weighted = [p.with_forces(p.forces, force_weight=np.linspace(0.5, 1.5, p.n_atoms)) for p in parts]
    with pytest.raises(ConfigError, match="holds a training run with other"):
        train("pairmlp", *weighted, tmp_path, config, show_progress=False)


def test_two_coincident_atoms_are_a_one_line_error_before_training(tmp_path, capsys):
    from ekd.cli import main
    from ekd.data import Dataset, write
    from ekd.testing import labelled_molecules

    good = labelled_molecules(4)
    positions = good.positions.copy()
    positions[good.ptr[5] + 1] = positions[good.ptr[5]]  # conformation 5: atom 1 on top of atom 0
    write(Dataset(**{**good.__dict__, "positions": positions}), tmp_path / "bad.h5")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--teacher", "pairmlp:2", "--student", "pairmlp", "--data", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "bad.h5: conformation 5" in err and "atoms 0 and 1 0.000 Å apart" in err
    assert not (tmp_path / "run/teachers").exists()  # nothing trained


def test_a_diverging_training_names_the_model_the_epoch_and_the_cause(tmp_path):
    from ekd.errors import TrainingDiverged
    from ekd.plugins import backends, register_backend
    from ekd.testing import labelled_molecules
    from ekd_pairmlp import PairMLPBackend

    class Exploding(PairMLPBackend):
        name = "exploding"

        def energy(self, model, batch):
            return super().energy(model, batch) * float("nan")

    if "exploding" not in backends():
        register_backend(Exploding())
    data = labelled_molecules(4)
    with pytest.raises(TrainingDiverged, match=r"training of the exploding model in .*/boom diverged at epoch 1 \(loss nan\); likely cause: "):
        train("exploding", data, data, tmp_path / "boom", TrainConfig(epochs=3, device="cpu"), {"width": 4, "n_rbf": 4}, show_progress=False)


def emt_copper(count=16):
    """Rattled, strained fcc Cu cells (4 atoms) with EMT energies, forces and stresses, and
    one H/C/N/O molecule (no stress: its row is NaN)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from ekd.data import Dataset

    images = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.45 + 0.02 * k, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_stress()
        images.append(atoms)
    cells = Dataset.from_atoms(images)
    molecule = labelled_molecules(1).subset([0])
    return Dataset.concatenate([cells, molecule.with_stress(None)])


def test_the_stress_term_trains_the_stress_and_ignores_molecules(tmp_path):
    """With a stress weight the model's stresses come far closer to the labels than without
    (same data, seed and epochs); the molecule's NaN row does not make the loss NaN."""
    data = emt_copper()
    assert np.isnan(data.stress[-1]).all() and data.periodic[:-1].all()
    config = CONFIG.model_copy(update={"epochs": 80, "lr": 1e-2})
    options = {"cutoff": 4.0, "width": 8, "n_rbf": 6}
    error = {}
    for weight in (0.0, 100.0):
        result = train("pairmlp", data, data, tmp_path / f"w{weight}", config.model_copy(update={"stress_weight": weight}), options, show_progress=False)
        predicted = result.model.predict(data, forces=False, stress=True).stress
        error[weight] = float(np.abs(predicted - data.stress)[:-1].mean())
    assert error[100.0] < 0.5 * error[0.0], error


def test_stress_training_needs_stress_labels_on_every_cell(tmp_path):
    data = emt_copper(4)
    config = CONFIG.model_copy(update={"stress_weight": 1.0})
    with pytest.raises(DataError, match="stress_weight > 0 but the training data have no stress on every periodic conformation"):
        train("pairmlp", data.with_stress(None), data, tmp_path, config, show_progress=False)
    from ekd.runconfig import RunConfig

    with pytest.raises(ConfigError, match="teachers.train.stress_weight: teachers and baselines never see forces or stresses"):
        RunConfig.load(None, {"teachers.train": {"stress_weight": 1.0}})
    run = RunConfig.load(None, {"student.train.stress_weight": 2.0, "train": {"batch_size": 8}})  # what --stress-weight 2 sets
    assert [run.train_config(role).stress_weight for role in ("student", "baseline", "teachers")] == [2.0, 0.0, 0.0]


def test_a_warm_start_begins_where_the_earlier_model_ended_and_checks_it_fits(tmp_path):
    data = labelled()
    parts = data.subset(range(0, 40, 2)), data.subset(range(1, 40, 2))
    first = train("pairmlp", *parts, tmp_path / "first", CONFIG.model_copy(update={"epochs": 30}), show_progress=False)
    cold = train("pairmlp", *parts, tmp_path / "cold", CONFIG.model_copy(update={"epochs": 1}), show_progress=False)
    warm = train("pairmlp", *parts, tmp_path / "warm", CONFIG.model_copy(update={"epochs": 1, "init_from": str(tmp_path / "first/model.pt")}), show_progress=False)
    assert warm.best_val_loss < 0.5 * cold.best_val_loss and warm.best_val_loss == pytest.approx(first.best_val_loss, rel=0.5)
    with pytest.raises(ConfigError, match=r"init_from .*first/model.pt: options differ from the start model's: width 8 \(start: \d+\)"):
        train("pairmlp", *parts, tmp_path / "other", CONFIG.model_copy(update={"init_from": str(tmp_path / "first/model.pt")}), {"width": 8}, show_progress=False)


def history(path):
    return np.loadtxt(path / "history.csv", delimiter=",", skiprows=1)[:, :3]  # epoch, train and validation loss


def test_two_ranks_train_the_weights_of_one_and_only_rank_0_writes(tmp_path):
    from ekd.testing import on_ranks

    data = labelled()
    parts = data.subset(range(0, 33)), data.subset(range(33, 40))  # a validation set of 7: shared 4 + 3, nothing padded or dropped
    config = CONFIG.model_copy(update={"epochs": 4, "batch_size": 5})
    train("pairmlp", *parts, tmp_path / "one", config, show_progress=False)
    on_ranks(2, "ekd.train:train", "pairmlp", *parts, tmp_path / "two", config, show_progress=False)
    one, two = weights(tmp_path / "one/model.pt"), weights(tmp_path / "two/model.pt")
    assert Model.load(tmp_path / "two/model.pt").info["ranks"] == 2  # trained data-parallel, not twice alone
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-10)
    np.testing.assert_allclose(history(tmp_path / "two"), history(tmp_path / "one"), rtol=1e-10, atol=0)
    assert {p.name for p in (tmp_path / "two").iterdir()} == {"checkpoint.pt", "model.pt", "history.csv"}  # no temporary file left

    on_ranks(2, "ekd.train:train", "pairmlp", *parts, tmp_path / "resumed", config.model_copy(update={"epochs": 2}), show_progress=False)
    train("pairmlp", *parts, tmp_path / "resumed", config, show_progress=False)  # 2 ranks for 2 epochs, then 1 rank to the end
    for key in one:
        torch.testing.assert_close(weights(tmp_path / "resumed/model.pt")[key], one[key], rtol=0, atol=1e-10)


def test_a_preempted_training_saves_its_step_and_resumes_to_the_same_weights(tmp_path):
    import os
    import signal

    data = labelled()
    parts = data.subset(range(0, 32)), data.subset(range(32, 40))
    config = CONFIG.model_copy(update={"epochs": 3, "batch_size": 4})
    train("pairmlp", *parts, tmp_path / "whole", config, show_progress=False)
    with pytest.raises(Preempted, match=r"stopped by the scheduler at epoch 2, step 1 of 8: checkpoint saved"):
        train("pairmlp", *parts, tmp_path / "cut", config, show_progress=False,
              on_epoch_end=lambda epoch, row: os.kill(os.getpid(), signal.SIGTERM) if epoch == 1 else None)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone with the training
    train("pairmlp", *parts, tmp_path / "cut", config, show_progress=False)
    assert_same_weights(weights(tmp_path / "cut/model.pt"), weights(tmp_path / "whole/model.pt"))
    assert len(history(tmp_path / "cut")) == 3


def test_a_streamed_dataset_trains_the_weights_of_the_same_data_in_memory_with_or_without_the_batch_cache(tmp_path):
    from ekd.data import stream
    from ekd.testing import on_ranks

    data = labelled_molecules(8, 3)
    write(data, tmp_path / "data.h5")
    streamed = stream(tmp_path / "data.h5")
    config = CONFIG.model_copy(update={"epochs": 3, "batch_size": 5, "force_weight": 1.0})
    train("pairmlp", data.subset(range(0, 33)), data.subset(range(33, 40)), tmp_path / "memory", config, show_progress=False)
    parts = streamed.subset(range(0, 33)), streamed.subset(range(33, 40))
    train("pairmlp", *parts, tmp_path / "uncached", config.model_copy(update={"batch_cache_mb": 0}), show_progress=False)
    assert_same_weights(weights(tmp_path / "uncached/model.pt"), weights(tmp_path / "memory/model.pt"))
    on_ranks(2, "ekd.train:train", "pairmlp", *parts, tmp_path / "two", config, show_progress=False)  # views travel to the ranks
    for key, value in weights(tmp_path / "memory/model.pt").items():
        torch.testing.assert_close(weights(tmp_path / "two/model.pt")[key], value, rtol=0, atol=1e-10)
