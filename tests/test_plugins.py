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
    assert out.splitlines()[0].split() == ["name", "version", "package", "elements"]
    assert any(line.startswith("ani ") for line in out.splitlines())
