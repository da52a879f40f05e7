"""The CLI through its entry point: output, JSON, one-line errors and exit codes."""

import json

import pytest

from ekd.cli import main
from ekd.data import read


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def ok(capsys, *argv):
    main(list(argv))
    return capsys.readouterr()


def test_info_json_has_the_documented_fields(capsys, shared_data):
    out, _ = ok(capsys, "data", "info", str(shared_data / "comp6/s66x8_wb97x6-31gd.h5"), "--json")
    info = json.loads(out)
    assert info["n_conformations"] == 528 and info["n_molecules"] == 66
    assert info["elements"] == ["H", "C", "N", "O"] and info["has_forces"] is True
    assert info["force_sign_check"]["verdict"] == "consistent"
    assert "energies" in info["available_keys"] and info["units"]["energy"] == "eV"


def test_info_text_and_energy_key(capsys, shared_data):
    out, _ = ok(capsys, "data", "info", str(shared_data / "ani1x/ani1x_sample.h5"), "--energy-key", "ccsd(t)_cbs.energy")
    assert "conformations           3" in out and "CCSD(T)*/CBS" in out and "eV" in out


def test_info_warns_when_the_sign_in_use_disagrees_with_the_data(capsys, shared_data):
    _, err = ok(capsys, "data", "info", str(shared_data / "comp6/s66x8_wb97x6-31gd.h5"), "--force-sign", "+1")
    assert "warning" in err and "gradients" in err and "--force-sign -1" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "info", "missing.h5"], "missing.h5: no such file"),
        (["data", "info", "{ani1x}", "--energy-key", "wb97x.energy"], "no energy key 'wb97x.energy'"),
        (["data", "info", "{md17}", "--energy-unit", "furlongs"], "unknown energy unit 'furlongs'"),
        (["grow", "--reference-options", "method=ccsd"], "--reference-options: not JSON"),
    ],
)
def test_user_mistakes_are_one_line_errors_with_exit_2(capsys, shared_data, argv, message):
    argv = [a.format(ani1x=shared_data / "ani1x/ani1x_sample.h5", md17=shared_data / "md17/ethanol_md17_2000.xyz") for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", [["run"], ["train", "--backend", "pairmlp"]])
def test_epoch_bound_below_one_is_refused_at_the_flag(capsys, tmp_path, command):
    code, _, err = run(capsys, *command, "--out", str(tmp_path / "run"), "--epochs", "0")
    assert code == 2 and "'--epochs': 0 is not in the range x>=1" in err
    assert not (tmp_path / "run").exists()


def test_convert_to_extxyz_and_hdf5_keeps_units(capsys, shared_data, tmp_path):
    source = shared_data / "md17/ethanol_md17_2000.xyz"
    ok(capsys, "data", "convert", str(source), str(tmp_path / "e.h5"), "--energy-unit", "kcal/mol")
    ok(capsys, "data", "convert", str(tmp_path / "e.h5"), str(tmp_path / "e.xyz"))
    original = read(source, energy_unit="kcal/mol")
    via_h5, via_xyz = read(tmp_path / "e.h5"), read(tmp_path / "e.xyz")
    assert len(via_h5) == len(via_xyz) == 2000
    assert abs(via_h5.energy - original.energy).max() == 0
    assert abs(via_xyz.forces - original.forces).max() < 1e-7


@pytest.fixture
def synthetic(tmp_path):
    from ekd.data import write
    from ekd.testing import labelled_molecules

    path = tmp_path / "synthetic.h5"
    write(labelled_molecules(6), path)
    return path


def test_train_run_and_evaluate_commands(capsys, tmp_path, synthetic):
    smoke = str(__import__("pathlib").Path(__file__).parents[1] / "configs/pairmlp-smoke.yaml")
    out, _ = ok(capsys, "train", "--backend", "pairmlp", "--data", str(synthetic), "--out", str(tmp_path / "one"), "--epochs", "2")
    assert "trained pairmlp on energies only" in out and "held-out test force MAE" in out
    out, _ = ok(capsys, "run", "--config", smoke, "--data", str(synthetic), "--out", str(tmp_path / "run"))
    assert "student force MAE" in out and "student/baseline" in out
    out, _ = ok(capsys, "evaluate", str(tmp_path / "run/teachers"), "--data", str(synthetic), "--json", str(tmp_path / "e.json"))
    assert "synthetic: energy_mae" in out
    assert "force_mae" in json.loads((tmp_path / "e.json").read_text())["synthetic"]


def test_run_with_an_unknown_backend_is_one_line(capsys, tmp_path, synthetic):
    code, _, err = run(capsys, "run", "--teacher", "anii:2", "--data", str(synthetic), "--out", str(tmp_path / "r"))
    assert code == 2 and "unknown backend 'anii'; installed:" in err and len(err.strip().splitlines()) == 1
