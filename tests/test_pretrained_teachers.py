"""Published ensembles (ANI-1x, ANI-1ccx in ../shared/models) as teachers, through the CLI and the
pipeline: evaluation, labels provenance, teacher-energy labels for geometries without energies."""

import dataclasses
import json

import numpy as np
import pytest

from ekd.cli import main
from ekd.data import load_default, read, write
from ekd.runconfig import RunConfig

pytest.importorskip("ekd_ani")


def test_evaluate_ani1x_on_s66x8_gives_the_published_accuracy(capsys, shared_data, ani1x, tmp_path):
    """Independently measured on this file (float64): energy MAE 1.89, force MAE 1.56."""
    main(["evaluate", f"ani-pretrained:{ani1x}", "--data", str(shared_data / "comp6/s66x8_wb97x6-31gd.h5"), "--json", str(tmp_path / "s66.json")])
    metrics = json.loads((tmp_path / "s66.json").read_text())["s66x8_wb97x6-31gd"]
    assert metrics["n_conformations"] == 528 and metrics["n_molecules"] == 66
    assert metrics["energy_mae"] == pytest.approx(1.89, abs=0.05)
    assert metrics["force_mae"] == pytest.approx(1.56, abs=0.05)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "ani-pretrained:{tmp}/nowhere"], "nowhere: no such NeuroChem model"),
        (["evaluate", "ani-pretrained:"], "a pretrained ensemble needs its path"),
        (["run", "--teacher", "pairmlp-pretrained:{tmp}", "--out", "{tmp}/r"], "backend 'pairmlp' cannot load pretrained models"),
        (["teach", "--teacher", "ani-pretrained:{ani1x}", "--data", "{ani2x}", "--out", "{tmp}/r"], "not supported by the pretrained teacher ANI-1x"),
    ],
)
def test_pretrained_mistakes_are_one_line_errors(capsys, shared_data, ani1x, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, ani1x=ani1x, ani2x=shared_data / "ani2x/ani2x_dimers.h5") for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_teachers_label_energies_of_geometries_without_any(ani1x, tmp_path, monkeypatch):
    frames = load_default()
    geometries = dataclasses.replace(frames.subset(np.arange(0, len(frames), 40)).without_forces(), energy=None)  # positions only
    write(geometries, tmp_path / "new.xyz")
    config = RunConfig.load(None, {
        "data.path": str(tmp_path / "new.xyz"),
        "teachers.spec": f"ani-pretrained:{ani1x}",
        "student.backend": "pairmlp",
        "student.options": {"width": 8, "n_rbf": 8},
        "student.seeds": 1,
        "student.baseline": True,
        "train": {"epochs": 2, "batch_size": 8, "dtype": "float64", "device": "cpu"},
        "evaluate.files": [],
        "jobs": 1,
    })
    import ekd.pipeline.inputs
    import ekd.pipeline.teach

    loads = []
    real = ekd.pipeline.inputs.load_pretrained
    for module in (ekd.pipeline.inputs, ekd.pipeline.teach):  # (the run resolves its inputs once; the teach stage reuses them)
        monkeypatch.setattr(module, "load_pretrained", lambda *a, **k: loads.append(a) or real(*a, **k))
    run = ekd.distill(config, out=tmp_path / "run", show_progress=False)
    assert len(loads) == 1  # the published ensemble is read once per run

    record = run.labels.teachers[3]
    source = record.source
    assert source["name"] == "ANI-1x" and source["member"] == 3 and source["level_of_theory"] == "wB97X/6-31G(d)"
    assert len(source["files"]) == 3 + 4 * 9  # .info, constants, self energies; 4 elements x (.nnf + 4 layers x w, b)
    assert record.seed is None

    labels = run.labels.dataset("teachers")
    teachers = ekd.load(f"ani-pretrained:{ani1x}").predict(read(tmp_path / "new.xyz"))
    np.testing.assert_allclose(labels.energy, teachers.energy, atol=1e-9)  # eV: the ensemble-mean energy
    np.testing.assert_allclose(labels.forces, teachers.forces, atol=1e-9)

    report = run.report
    assert report.energy_references["held-out test (vs teacher labels)"] == "wB97X/6-31G(d)"
    assert report.models["student seed-200"].level_of_theory == "wB97X/6-31G(d)"
    assert not (tmp_path / "run/teachers/00-ani-pretrained/history.csv").exists()  # installed, not trained
