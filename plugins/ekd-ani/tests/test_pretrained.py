"""The published ANI-1x / ANI-1ccx ensembles (NeuroChem format) loaded as frozen ekd models.

Reads ../shared/models and ../shared/data in place; skipped where they are absent.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ekd.data import Dataset, read
from ekd.ensemble import Ensemble
from ekd.errors import DataError
from ekd.evaluate import evaluate
from ekd.provenance import sha256_file
from ekd.testing import test_molecules
from ekd_ani.pretrained import load_pretrained, pretrained_models

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
MODELS = SHARED / "models"
ANI1X = MODELS / "ani-1x_8x"
ANI1CCX = MODELS / "ani-1ccx_8x"
S66X8 = SHARED / "data" / "comp6" / "s66x8_wb97x6-31gd.h5"


def need(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"{path} is absent (the published models and data sit in ../shared)")


@pytest.fixture(scope="module")
def ani1x():
    need(ANI1X)
    return pretrained_models(ANI1X, dtype=torch.float64, device="cpu")


def copy_model(tmp_path: Path, name: str = "ani-1x_8x") -> Path:
    """A writable copy of a published model (folder and .info) under tmp_path: its folder."""
    source = MODELS / name
    need(source)
    shutil.copyfile(MODELS / f"{name}.info", tmp_path / f"{name}.info")
    for file in source.rglob("*"):
        if file.is_file():
            target = tmp_path / name / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    return tmp_path / name


def test_ani1x_ensemble_on_s66x8_matches_the_published_level(ani1x):
    """Absolute energies (kcal/mol per conformation) against the file's wB97X/6-31G(d) labels,
    no offset refit; forces against −(stored gradient)."""
    need(S66X8)
    frames = read(S66X8)
    assert len(frames) == 528
    metrics = evaluate(Ensemble(ani1x), {"s66x8": frames})["s66x8"]
    assert metrics["energy_mae"] == pytest.approx(1.89, abs=0.05)
    assert metrics["force_mae"] == pytest.approx(1.56, abs=0.05)
    assert metrics["relative_energy_mae"] < metrics["energy_mae"]


def test_members_are_frozen_ani_models_in_ev(ani1x):
    from ase import units

    assert len(ani1x) == 8
    frames = test_molecules().subset([4])  # CH3OH
    for model in ani1x:
        assert model.backend.name == "ani"
        assert model.species == [1, 6, 7, 8]
        assert model.dtype == torch.float64
        assert not model.module.training
        assert not any(p.requires_grad for p in model.module.parameters())
    model = ani1x[0]
    energy = model.predict(frames).energy[0]
    assert not model.module.training  # predict leaves it in eval mode
    species = torch.tensor(frames.numbers)[None]
    coordinates = torch.tensor(frames.positions)[None]
    with torch.no_grad():
        hartree = model.module((species, coordinates)).energies.item()
    assert energy == pytest.approx(hartree * units.Hartree, rel=1e-14)
    energies = [m.predict(frames, forces=False).energy[0] for m in ani1x]
    assert len(set(energies)) == 8  # eight different members
    assert np.ptp(energies) < 0.1  # that agree to a few kcal/mol


def test_members_save_and_load_as_ordinary_ani_models(ani1x, tmp_path):
    from ekd.model import Model

    frames = test_molecules()
    ani1x[3].save(tmp_path / "model.pt")
    loaded = Model.load(tmp_path / "model.pt", device="cpu")
    assert loaded.options.element_hidden["C"] == (144, 112, 96)
    assert loaded.info["pretrained"]["level_of_theory"] == "wB97X/6-31G(d)"
    np.testing.assert_array_equal(loaded.predict(frames).forces, ani1x[3].predict(frames).forces)


def test_forces_are_minus_the_gradient_by_central_differences(ani1x):
    model = ani1x[0]
    frames = test_molecules().subset([4])  # CH3OH, displaced
    forces = model.predict(frames).forces
    # ANI's steep AEV terms (EtaR 16, zeta 32) need a small step: the difference from autograd is
    # 4e-4 eV/Å at h = 1e-3 Å, 2e-6 at 1e-4, 3e-8 at 1e-5 (float64 rounding then ~3e-8 too)
    h = 1e-5
    numeric = np.zeros_like(frames.positions)
    for atom in range(frames.n_atoms):
        for axis in range(3):
            energies = []
            for step in (h, -h):
                moved = frames.positions.copy()
                moved[atom, axis] += step
                shifted = Dataset.from_arrays([frames.numbers], [moved], ["CH3OH"])
                energies.append(model.predict(shifted, forces=False).energy[0])
            numeric[atom, axis] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces).max() > 0.1
    np.testing.assert_allclose(forces, numeric, atol=1e-6)


def test_metadata_and_provenance_hashes():
    need(ANI1X)
    ensemble = load_pretrained(MODELS / "ani-1x_8x.info")  # the .info file works as well as the folder
    assert ensemble.name == "ANI-1x"
    assert ensemble.symbols == ("H", "C", "N", "O")
    assert ensemble.species == [1, 6, 7, 8]
    assert ensemble.member_dirs == [f"train{k}" for k in range(8)]
    assert ensemble.self_energies[1] == pytest.approx(-0.600952980000 * 27.211386, rel=1e-6)
    assert ensemble.hidden == {"H": (160, 128, 96), "C": (144, 112, 96), "N": (128, 112, 96), "O": (128, 112, 96)}
    # .info, constants, self energies + per member and element: .nnf and 4 layers x (w, b)
    assert len(ensemble.files) == 3 + 8 * 4 * 9
    for key in ("ani-1x_8x.info", "ani-1x_8x/sae_linfit.dat", "ani-1x_8x/train7/networks/ANN-O.nnf-l4.bparam"):
        assert ensemble.files[key] == sha256_file(MODELS / key)
    assert all(len(files) == 3 + 4 * 9 for files in ensemble.member_files)
    models = pretrained_models(ANI1X)
    record = models[2].info["pretrained"]
    assert record["member"] == 2 and record["member_dir"] == "train2" and record["name"] == "ANI-1x"
    assert "ani-1x_8x/train2/networks/ANN-H.nnf" in record["files"]
    assert not any("/train3/" in key for key in record["files"])


def test_loading_is_deterministic():
    need(ANI1X)
    first, second = (load_pretrained(ANI1X).members[5].state_dict() for _ in range(2))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_ani1ccx_ignores_the_bare_train_entry_and_sits_on_its_own_reference():
    need(ANI1CCX)
    ensemble = load_pretrained(ANI1CCX)
    assert ensemble.name == "ANI-1ccx"
    assert (ANI1CCX / "train").exists()  # the prefix itself is present (an empty file), not a member
    assert ensemble.member_dirs == [f"train{k}" for k in range(8)]
    ani1x = load_pretrained(ANI1X) if ANI1X.exists() else None
    if ani1x is not None:
        assert ensemble.self_energies != ani1x.self_energies
        assert ensemble.files["ani-1ccx_8x/train0/networks/ANN-C.nnf-l2.wparam"] != ani1x.files["ani-1x_8x/train0/networks/ANN-C.nnf-l2.wparam"]


def test_missing_path_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="no such NeuroChem model") as error:
        load_pretrained(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "\n" not in str(error.value)


def test_folder_without_info_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a NeuroChem model folder"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(DataError, match="not a NeuroChem model"):
        load_pretrained(tmp_path / "weights.pt")


def test_missing_self_energy_file_is_named(tmp_path):
    folder = copy_model(tmp_path)
    (folder / "sae_linfit.dat").unlink()
    with pytest.raises(DataError, match="self-energy file .*sae_linfit.dat is missing"):
        load_pretrained(folder)


@pytest.mark.parametrize(
    "missing, member",
    [("train3/networks/ANN-N.nnf", 3), ("train6/networks/ANN-O.nnf-l2.wparam", 6)],
)
def test_missing_network_file_names_member_and_file(tmp_path, missing, member):
    folder = copy_model(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(DataError) as error:
        load_pretrained(folder)
    message = str(error.value)
    assert f"member {member} (train{member})" in message
    assert str(folder / missing) in message
    assert "\n" not in message


def test_truncated_weight_file_is_a_data_error(tmp_path):
    folder = copy_model(tmp_path)
    wparam = folder / "train1/networks/ANN-H.nnf-l3.wparam"
    wparam.write_bytes(wparam.read_bytes()[:-4])
    with pytest.raises(DataError, match=r"member 1 \(train1\).*expected"):
        load_pretrained(folder)


def test_the_private_torchani_parser_ekd_relies_on_still_reads_network_files():
    """ekd_ani.pretrained.nnf_layers is the one place that uses torchani's private NeuroChem
    parser; this fails loudly when a torchani upgrade changes it."""
    from ekd_ani.pretrained import nnf_layers

    need(ANI1X)
    nnf = ANI1X / "train0" / "networks" / "ANN-H.nnf"
    layers = nnf_layers(nnf)
    assert len(layers) == 4  # the published H network: 3 hidden layers and the output
    for layer in layers:
        assert (nnf.parent / layer.weights).is_file() and (nnf.parent / layer.weights).stat().st_size == 4 * layer.weight_numel
        assert (nnf.parent / layer.biases).stat().st_size == 4 * layer.bias_numel
