"""Backend discovery through entry points, and its errors."""

from importlib import metadata

import pytest

from ekd import plugins
from ekd.cli import main
from ekd.errors import BackendError


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins under a patched environment; restore the real set afterwards."""
    plugins._state.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    plugins._state.cache_clear()


def test_installed_backends_are_found_by_entry_point():
    names = plugins.backends()
    assert {"ani", "pairmlp"} <= set(names)
    rows = {row["name"]: row for row in plugins.backend_infos()}
    assert rows["ani"]["package"] == "ekd-ani" and rows["pairmlp"]["package"] == "ekd-pairmlp"


def test_unknown_backend_names_what_is_installed():
    with pytest.raises(BackendError, match=r"unknown backend 'mcae'; installed: .*ani.*pairmlp"):
        plugins.get_backend("mcae")


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(fresh_plugins):
    real = metadata.entry_points(group="ekd")
    broken = metadata.EntryPoint(name="broken", value="ekd_no_such_module.plugin", group="ekd")
    fresh_plugins.setattr(plugins.metadata, "entry_points", lambda group: [*real, broken])
    with pytest.warns(UserWarning, match=r"ekd plugin broken \(ekd_no_such_module.plugin\) failed to load and is skipped: ModuleNotFoundError"):
        assert "ani" in plugins.backends()
    assert "ModuleNotFoundError" in plugins.plugin_failures()["broken (ekd_no_such_module.plugin)"]
    with pytest.raises(BackendError, match=r"unknown backend 'x'; installed: .*\(plugin broken .* failed: ModuleNotFoundError"):
        plugins.get_backend("x")


def test_ekd_plugins_pins_the_set(fresh_plugins):
    fresh_plugins.setenv("EKD_PLUGINS", "pairmlp")
    assert set(plugins.backends()) == {"pairmlp"}


def test_backends_command(capsys):
    main(["backends"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "version", "package", "elements", "capabilities"]
    ani = next(line for line in out.splitlines() if line.startswith("ani "))
    assert ani.split()[-6:] == ["convert", "export", "features", "periodic", "pretrained", "variations"]
    assert any(line.startswith("ani ") for line in out.splitlines())


class _Pair:
    """A minimal valid backend to break one member at a time (the example backend's parts)."""

    def __init__(self, **changes):
        from ekd_pairmlp import PairMLPBackend

        base = PairMLPBackend()
        for member in ("name", "Options", "tiny", "elements", "cutoff", "build", "energy"):
            setattr(self, member, getattr(base, member))
        for member, value in changes.items():
            if value is None:
                delattr(self, member) if member in self.__dict__ else None
            else:
                setattr(self, member, value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"energy": None}, r"plugin 'mine' registered _Pair, which lacks energy of the ekd Backend contract"),
        ({"name": "my backend"}, r"plugin 'mine': backend name 'my backend' must be an identifier"),
        ({"Options": dict}, r"plugin 'mine': backend 'pairmlp' Options must subclass ekd.backend.BackendOptions"),
        ({"tiny": {"widht": 3}}, r"plugin 'mine': pairmlp.tiny.widht: unknown option; allowed: cutoff"),
        ({"variations": ({}, {"n_rbff": 4})}, r"plugin 'mine': pairmlp.variations\[1\].n_rbff: unknown option"),
    ],
)
def test_a_backend_that_breaks_the_contract_is_refused_naming_the_plugin(changes, message):
    from ekd.backend import check_backend
    from ekd.errors import PluginError

    with pytest.raises(PluginError, match=message):
        check_backend(_Pair(**changes), "mine")


def test_capabilities_are_declared_types():
    from ekd.backend import capabilities

    assert capabilities(plugins.get_backend("ani")) == {"convert", "export", "features", "periodic", "pretrained", "variations"}
    assert capabilities(plugins.get_backend("pairmlp")) == {"periodic"}
    assert capabilities(_Pair(variations=({}, {"width": 4}))) == {"variations"}


def test_a_backend_registered_in_process_trains_an_ensemble_with_two_jobs(tmp_path, capsys):
    import ekd
    from ekd.testing import labelled_molecules
    from ekd_pairmlp import PairMLPBackend

    class NotebookBackend(PairMLPBackend):  # defined here: no worker process can import it
        name = "notebook_pairs"

    if "notebook_pairs" not in plugins.backends():
        plugins.register_backend(NotebookBackend())
    assert plugins.registered_in_process("notebook_pairs") and not plugins.registered_in_process("pairmlp")
    data = labelled_molecules(4)
    config = ekd.RunConfig.load(None, {"teachers.spec": "notebook_pairs:2", "teachers.options": {"notebook_pairs": {"width": 8, "n_rbf": 8}},
                                       "student.backend": "pairmlp", "epochs": 2, "jobs": 2, "train": {"device": "cpu"}})
    ensemble = ekd.train_ensemble(data, data, tmp_path, config, show_progress=False)
    assert [m.backend.name for m in ensemble.models] == ["notebook_pairs", "notebook_pairs"]
    assert "backend notebook_pairs is registered in this process" in capsys.readouterr().err
