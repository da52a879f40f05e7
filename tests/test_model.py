"""The core model wrapper: checkpoints, errors, the ASE calculator."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from ekd.data import Dataset
from ekd.errors import BackendError, ConfigError, DataError
from ekd.model import Model
from ekd.testing import test_molecules


def tiny(backend="pairmlp", **kwargs):
    return Model.build(backend, [1, 6, 7, 8], options={"width": 8} if backend == "pairmlp" else None, dtype=torch.float64, device="cpu", **kwargs)


def test_checkpoint_of_another_backend_is_refused(tmp_path):
    tiny().save(tmp_path / "m.pt")
    with pytest.raises(BackendError, match="m.pt: a 'pairmlp' checkpoint, not a 'ani' one"):
        Model.load(tmp_path / "m.pt", backend="ani")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(DataError, match="x.pt: not a readable ekd model checkpoint"):
        Model.load(tmp_path / "x.pt")
    with pytest.raises(DataError, match="nothere.pt: no such model checkpoint"):
        Model.load(tmp_path / "nothere.pt")


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match=r"^pairmlp options.widht: unknown option; allowed: cutoff, n_rbf, width, embedding$"):
        Model.build("pairmlp", [1, 8], options={"widht": 3})
    with pytest.raises(ConfigError, match=r"^pairmlp options.width: Input should be a valid integer"):
        Model.build("pairmlp", [1, 8], options={"width": "wide"})


def test_element_not_in_the_model_is_a_data_error():
    frames = test_molecules().with_metadata(source="mols.h5")
    model = Model.build("pairmlp", [1, 8], options={"width": 8}, device="cpu")
    with pytest.raises(DataError, match=r"mols.h5: element\(s\) C N not supported by this pairmlp model"):
        model.predict(frames)


def test_building_restores_global_torch_state():
    state, dtype = torch.random.get_rng_state(), torch.get_default_dtype()
    tiny(seed=5)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_default_dtype() == dtype


def test_ase_calculator_matches_predict():
    model = tiny()
    atoms = molecule("CH3OH")
    atoms.calc = model.calculator()
    frames = Dataset.from_arrays([atoms.numbers], [atoms.positions], ["m"])
    prediction = model.predict(frames)
    assert atoms.get_potential_energy() == pytest.approx(prediction.energy[0])
    np.testing.assert_allclose(atoms.get_forces(), prediction.forces)


def test_an_export_that_fails_leaves_nothing_and_one_that_succeeds_keeps_its_file_name(tmp_path, monkeypatch):
    """Backends write under the target's own name (they check suffixes such as '.nequip.zip')
    into a staging folder; only a finished file is moved to the target."""
    model = tiny()
    names = []

    def export(module, path, fail=False):
        names.append(path.name)
        path.write_text("half" if fail else "whole")
        if fail:
            raise RuntimeError("disk full")

    monkeypatch.setattr(model.backend, "export_suffix", ".x.pt", raising=False)
    monkeypatch.setattr(model.backend, "export", lambda module, path: export(module, path, fail=True), raising=False)
    with pytest.raises(RuntimeError, match="disk full"):
        model.export(tmp_path / "out/model.x.pt")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(model.backend, "export", export, raising=False)
    model.export(tmp_path / "out/model.x.pt")
    assert names == ["model.x.pt", "model.x.pt"] and [p.name for p in (tmp_path / "out").iterdir()] == ["model.x.pt"]
    assert (tmp_path / "out/model.x.pt").read_text() == "whole"
