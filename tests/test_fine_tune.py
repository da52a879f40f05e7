"""Fine-tuned teachers (``teachers.init_from``, ``TrainConfig.init_from`` and ``freeze``): a
published ANI-1x member taught CCSD(T) energies, the reference refit, freezing, resuming, and
start models that cannot be, through the trainer, the pipeline and the CLI."""

import numpy as np
import pytest
import torch

import ekd
from ekd.cli import main
from ekd.data import read, write
from ekd.ensemble import load_pretrained
from ekd.errors import ConfigError, DataError
from ekd.model import Model
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules
from ekd.train import TrainConfig, train
from ekd.train.start import started_from

pytest.importorskip("ekd_ani")

FINE_TUNE = TrainConfig(epochs=4, batch_size=16, lr=1e-4, early_stopping=100, ema_decay=0.0, dtype="float64", device="cpu")


@pytest.fixture(scope="module")
def ccsdt():
    """(train, validation): 48 and 16 CCSD(T) energies of embedded:ccsdt (no forces)."""
    data = read("embedded:ccsdt").without_forces()
    keep = np.random.default_rng(0).permutation(len(data))[:64]
    return data.subset(np.sort(keep[:48])), data.subset(np.sort(keep[48:]))


@pytest.fixture(scope="module")
def member(ani1x, tmp_path_factory):
    """ANI-1x member 0 saved as an ekd model (wB97X energies, 326,660 parameters)."""
    path = tmp_path_factory.mktemp("start") / "model.pt"
    load_pretrained("ani", ani1x, device="cpu")[0].save(path)
    return path


def validation_loss(model: Model, frames) -> float:
    """The trainer's energy loss, mean((ΔE/n_atoms)²), of ``model`` on ``frames``."""
    return float(np.mean(((model.predict(frames, forces=False).energy - frames.energy) / frames.sizes) ** 2))


def test_fine_tuning_a_published_member_changes_its_weights_and_lowers_the_validation_loss(ccsdt, member, tmp_path):
    result = train("ani", *ccsdt, tmp_path, FINE_TUNE.model_copy(update={"init_from": str(member)}), show_progress=False)
    start = Model.load(member, device="cpu")
    refit = started_from(start, ccsdt[0], seed=0, dtype=torch.float64, device="cpu")
    assert result.best_val_loss < 0.9 * validation_loss(refit, ccsdt[1])  # learnt from the new energies, beyond the refit
    assert validation_loss(refit, ccsdt[1]) < 1e-3 * validation_loss(start, ccsdt[1])  # the refit alone removes the level's offsets
    tuned, started = result.model.module.state_dict(), start.module.state_dict()
    changed = [k for k in started if k.endswith("weight") and not torch.equal(tuned[k].cpu(), started[k])]
    assert len(changed) == len([k for k in started if k.endswith("weight")])  # every layer moved
    assert result.model.options == start.options and result.model.species == start.species  # the start's architecture
    recorded = result.model.info["init_from"]
    assert recorded["path"] == str(member) and len(recorded["sha256"]) == 64 and "pretrained" not in result.model.info


def test_the_refit_offsets_are_the_least_squares_fit_and_move_only_energies(ccsdt, member):
    start = Model.load(member, device="cpu")
    train_part = ccsdt[0]
    refit = started_from(start, train_part, seed=0, dtype=torch.float64, device="cpu")
    counts = train_part.composition(start.species)
    residual = train_part.energy - start.predict(train_part, forces=False).energy
    direct = np.linalg.lstsq(counts, residual, rcond=None)[0]
    shift = np.array([refit.info["init_from"]["reference_shift_eV"][z] for z in start.species])
    np.testing.assert_allclose(shift, direct, rtol=1e-9, atol=1e-9)
    assert abs(shift[3]) > 1.0  # (wB97X and CCSD(T) per-element energies differ by eV: not a vacuous check)
    before, after = start.predict(ccsdt[1]), refit.predict(ccsdt[1])
    np.testing.assert_allclose(after.energy - before.energy, ccsdt[1].composition(start.species) @ shift, rtol=0, atol=1e-8)
    np.testing.assert_allclose(after.forces, before.forces, rtol=0, atol=1e-10)


def test_frozen_tensors_stay_bit_identical_and_the_others_train(ccsdt, member, tmp_path):
    config = FINE_TUNE.model_copy(update={"init_from": str(member), "epochs": 2, "freeze": ["*.layers.0.*", "*.layers.2.*"]})
    tuned = train("ani", *ccsdt, tmp_path, config, show_progress=False).model.module.state_dict()
    started = Model.load(member, device="cpu").module.state_dict()
    frozen = [k for k in started if ".layers.0." in k or ".layers.2." in k]
    assert len(frozen) == 16
    for key in frozen:
        assert torch.equal(tuned[key].cpu(), started[key]), key
    assert not any(torch.equal(tuned[k].cpu(), started[k]) for k in started if ".layers.1." in k or "final_layer" in k)
    with pytest.raises(ConfigError, match=r"train.freeze '\*.layer_0.\*': matches no parameter of the ani model \(its parameters look like potentials"):
        train("ani", *ccsdt, tmp_path / "typo", config.model_copy(update={"freeze": ["*.layer_0.*"]}), show_progress=False)


def test_resuming_a_killed_fine_tuning_gives_the_weights_of_an_uninterrupted_one(ccsdt, member, tmp_path):
    config = FINE_TUNE.model_copy(update={"init_from": str(member), "epochs": 3})
    whole = train("ani", *ccsdt, tmp_path / "whole", config, show_progress=False)
    train("ani", *ccsdt, tmp_path / "killed", config.model_copy(update={"epochs": 1}), show_progress=False)  # as if killed after epoch 1
    resumed = train("ani", *ccsdt, tmp_path / "killed", config, show_progress=False)
    assert resumed.epochs_run == whole.epochs_run == 3
    for key, value in whole.model.module.state_dict().items():
        assert torch.equal(resumed.model.module.state_dict()[key], value), key


def test_start_models_that_cannot_be_fail_before_training_in_one_line(ccsdt, member, tmp_path):
    with pytest.raises(ConfigError, match=r"init_from .*nowhere.pt: no such model file"):
        train("ani", *ccsdt, tmp_path / "a", FINE_TUNE.model_copy(update={"init_from": str(tmp_path / "nowhere.pt")}), show_progress=False)
    with pytest.raises(ConfigError, match=r"init_from .*model.pt: a 'ani' model; a 'pairmlp' training cannot start from it"):
        train("pairmlp", *ccsdt, tmp_path / "b", FINE_TUNE.model_copy(update={"init_from": str(member)}), show_progress=False)
    with pytest.raises(ConfigError, match=r"options differ from the start model's: radial_cutoff 4.6 \(start: 5.2\)"):
        train("ani", *ccsdt, tmp_path / "c", FINE_TUNE.model_copy(update={"init_from": str(member)}), {"radial_cutoff": 4.6}, show_progress=False)
    sulfur = labelled_molecules(2).without_forces()  # H C N O only: a start model of H and C alone cannot take them
    small = Model.build("ani", [1, 6], {1: -13.6, 6: -1029.0})
    small.save(tmp_path / "hc.pt")
    with pytest.raises(DataError, match=r"element\(s\) N O not supported by init_from .*hc.pt"):
        train("ani", sulfur, sulfur, tmp_path / "d", FINE_TUNE.model_copy(update={"init_from": str(tmp_path / "hc.pt")}), show_progress=False)
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir()) for name in "abcd")  # nothing was trained


@pytest.mark.parametrize(
    "argv, message",
    [
        (["teach", "--init-from", "{tmp}/nowhere"], "nowhere: no model.pt in it or in its sub-directories"),
        (["teach", "--init-from", "ani-pretrained:{ani1x}", "--teacher", "pairmlp:2"], "no 'pairmlp' model for the pairmlp teachers to start from (it holds 8 ani)"),
        (["teach", "--init-from", "ani-pretrained:{ani1x}", "--teacher", "ani-pretrained:{ani1x}"], "trains no teacher to start from it"),
        (["teach", "--init-from", "ani-pretrained:{ani1x}", "--data", "{ani2x}"], "not supported by the start model ANI-1x (teachers.init_from)"),
    ],
)
def test_run_level_start_mistakes_are_one_line_errors_before_any_training(capsys, shared_data, ani1x, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, ani1x=ani1x, ani2x=shared_data / "ani2x/ani2x_dimers.h5") for a in argv] + ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "teachers").exists()


def test_teachers_start_from_the_published_members_in_turn_and_from_a_previous_runs_teachers(ani1x, tmp_path):
    data = read("embedded:ccsdt").without_forces()
    write(data.subset(np.arange(0, len(data), 20)), tmp_path / "small.h5")  # 72 conformations
    config = RunConfig.load(None, {"data.path": str(tmp_path / "small.h5"), "teachers.spec": "ani:3", "teachers.init_from": f"ani-pretrained:{ani1x}",
                                   "train": {"batch_size": 16, "dtype": "float64", "device": "cpu"}, "epochs": 1, "jobs": 1})
    assert config.train_config("teachers").lr == 1e-4 and RunConfig().train_config("teachers").lr == 3e-3  # the fine-tuning default
    run = ekd.Run(tmp_path / "run", config, show_progress=False)
    teachers = run.teach()
    assert any("ekd_ref_ccsdt_ccpvdz_held_out.h5 as their held-out set, and it is not beside them" in n for n in run.inputs.notes)  # a part of embedded:ccsdt
    published = load_pretrained("ani", ani1x, device="cpu")
    for k, model in enumerate(teachers.models):
        recorded = model.info["init_from"]
        assert recorded["path"] == str(tmp_path / f"run/teachers/starts/{k:02d}-ani/model.pt")
        start = Model.load(recorded["path"], device="cpu")
        assert start.info["pretrained"] == published[k].info["pretrained"]  # member k, from its published files
        assert model.options == published[k].options and model.info["level_of_theory"] == "CCSD(T)/cc-pVDZ(fc)"
    first = teachers.models[0].module.state_dict()

    again = RunConfig.load(None, {**{k: v for k, v in config.model_dump().items() if k in ("data", "train", "epochs", "jobs")},
                                  "teachers.spec": "ani:2", "teachers.init_from": str(tmp_path / "run/teachers"), "teachers.seed": 7})
    second = ekd.Run(tmp_path / "second", again, show_progress=False).teach()
    assert [m.info["init_from"]["path"] for m in second.models] == [str(tmp_path / f"run/teachers/0{k}-ani/model.pt") for k in range(2)]
    assert second.models[0].options == teachers.models[0].options
    assert not all(torch.equal(v, first[k]) for k, v in second.models[0].module.state_dict().items())  # trained on from there


def test_a_relative_start_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    assert RunConfig.load(None, {"teachers.init_from": "runs/a/teachers"}).teachers.init_from == str(here / "runs/a/teachers")
    assert RunConfig.load(None, {"teachers.init_from": "ani-pretrained:models/x"}).teachers.init_from == f"ani-pretrained:{here / 'models/x'}"
