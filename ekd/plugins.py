"""Plugin discovery: one pluggy manager, plugins loaded from the ``ekd`` entry-point group.

``EKD_PLUGINS=ani,mace`` loads only the named entry points (empty: none), for hermetic runs.
A plugin that fails to import does not break the others: its error is kept and shown by
``ekd backends`` and in the message when a backend is not found.
"""

from __future__ import annotations

import functools
import os
import warnings
from importlib import metadata

from typing import TYPE_CHECKING

import pluggy
import pydantic

from ekd import hookspecs
from ekd.errors import BackendError, PluginError

if TYPE_CHECKING:  # ekd.backend imports torch; plugin discovery itself does not need it
    from ekd.backend import Backend

__all__ = ["plugin_manager", "backends", "get_backend", "register_backend", "registered_in_process", "plugin_failures", "backend_infos"]

ENTRY_POINT_GROUP = "ekd"


class _Registry:
    def __init__(self):
        self.references: dict = {}
        self.backends: dict[str, Backend] = {}
        self.origin: dict[str, str] = {}
        self.failures: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def _state() -> tuple[pluggy.PluginManager, _Registry]:
    manager = pluggy.PluginManager("ekd")
    manager.add_hookspecs(hookspecs)
    registry = _Registry()
    pinned = os.environ.get("EKD_PLUGINS")
    wanted = None if pinned is None else {p.strip() for p in pinned.split(",") if p.strip()}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        built_in = entry_point.dist is not None and entry_point.dist.name == "ekd"  # registers like any plugin, never pinned out
        if wanted is not None and entry_point.name not in wanted and not built_in:
            continue
        label = f"{entry_point.name} ({entry_point.dist.name if entry_point.dist else entry_point.value})"
        try:
            manager.register(entry_point.load(), name=entry_point.name)
        except Exception as error:  # a broken third-party plugin must not take ekd down
            _fail(registry, label, error)
    manager.check_pending()
    _collect(manager, registry)
    return manager, registry


def _add_backend(registry: _Registry, plugin_name: str, backend) -> None:
    from ekd.backend import check_backend

    check_backend(backend, plugin_name)
    if backend.name in registry.backends:
        raise PluginError(
            f"plugin '{plugin_name}' registers backend '{backend.name}', already registered by '{registry.origin[backend.name]}'"
        )
    registry.backends[backend.name] = backend
    registry.origin[backend.name] = plugin_name


def _add_reference(registry: _Registry, plugin_name: str, reference) -> None:
    missing = [m for m in ("name", "Options", "level", "compute") if not hasattr(reference, m)]
    if missing or not (isinstance(reference.Options, type) and issubclass(reference.Options, pydantic.BaseModel)):
        raise PluginError(f"plugin '{plugin_name}' registered {type(reference).__name__}, which is not an ekd Reference (name, Options, level, compute)")
    if reference.name in registry.references:
        raise PluginError(f"plugin '{plugin_name}' registers reference '{reference.name}', already registered")
    registry.references[reference.name] = reference


def reference_registry() -> dict:
    """Installed reference calculators by name (see :mod:`ekd.reference`)."""
    return dict(_state()[1].references)


def _collect(manager: pluggy.PluginManager, registry: _Registry) -> None:
    """Call each plugin's hooks through pluggy's hook caller, one plugin at a time, so that a
    failure is attributed to (and contained in) the plugin that raised it. (Readers are asked
    for by the reader registry, :mod:`ekd.data.readers`.)"""
    names = [name for name, _ in manager.list_name_plugin()]
    for name in names:
        others = [manager.get_plugin(n) for n in names if n != name]
        try:
            manager.subset_hook_caller("ekd_register_backends", remove_plugins=others)(register=functools.partial(_add_backend, registry, name))
            manager.subset_hook_caller("ekd_register_references", remove_plugins=others)(register=functools.partial(_add_reference, registry, name))
        except Exception as error:  # a broken plugin (import, contract) must not take ekd down
            _fail(registry, name, error)


def _fail(registry: _Registry, plugin: str, error: Exception) -> None:
    """Keep a broken plugin's error (shown by ``ekd backends``) and warn, naming the plugin."""
    registry.failures[plugin] = f"{type(error).__name__}: {error}"
    warnings.warn(f"ekd plugin {plugin} failed to load and is skipped: {registry.failures[plugin]}", stacklevel=3)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (plugins loaded on first use)."""
    return _state()[0]


def backends() -> dict[str, Backend]:
    """Installed backends by name."""
    return dict(_state()[1].backends)


def plugin_failures() -> dict[str, str]:
    """Plugins that failed to import or register, with their errors."""
    return dict(_state()[1].failures)


#: the origin of backends registered with :func:`register_backend`
IN_PROCESS = "in-process"


def register_backend(backend, origin: str = IN_PROCESS) -> None:
    """Register a backend object directly (tests, notebooks); entry points are the normal path.

    Worker processes do not see such a backend: its trainings run in this process (ekd says so).
    """
    _add_backend(_state()[1], origin, backend)


def registered_in_process(name: str) -> bool:
    """Whether backend ``name`` was registered by :func:`register_backend` rather than a plugin."""
    return _state()[1].origin.get(name) == IN_PROCESS


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a BackendError naming what is installed otherwise."""
    found = backends()
    if name in found:
        return found[name]
    installed = ", ".join(sorted(found)) or "none"
    broken = "; ".join(f"plugin {p} failed: {e}" for p, e in plugin_failures().items())
    raise BackendError(f"unknown backend '{name}'; installed: {installed}" + (f" ({broken})" if broken else ""))


def backend_infos() -> list[dict]:
    """Name, distribution, version and supported elements of every installed backend."""
    from ase.data import chemical_symbols

    _, registry = _state()
    rows = []
    for name, backend in sorted(registry.backends.items()):
        module = type(backend).__module__.split(".")[0]
        dist = metadata.packages_distributions().get(module, [module])[0]
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
        elements = "any" if backend.elements is None else " ".join(chemical_symbols[z] for z in sorted(backend.elements))
        from ekd.backend import capabilities

        rows.append(dict(name=name, version=version, package=dist, elements=elements, plugin=registry.origin[name], capabilities=" ".join(sorted(capabilities(backend))) or "-"))
    return rows
