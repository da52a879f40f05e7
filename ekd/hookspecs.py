"""Hook specifications: how a plugin adds backends and readers to ekd.

A plugin is any module with functions marked ``@ekd.hookimpl`` named like the specs below,
advertised under the ``ekd`` entry-point group of its distribution::

    [project.entry-points.ekd]
    mybackend = "ekd_mybackend.backend"   # the module holding the hookimpls
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("ekd")
hookimpl = pluggy.HookimplMarker("ekd")

__all__ = ["hookspec", "hookimpl", "ekd_register_backends", "ekd_register_readers", "ekd_register_references"]


@hookspec
def ekd_register_backends(register: Callable) -> None:
    """Called once when ekd loads its plugins. Call ``register(backend)`` for each backend
    the plugin provides; ``backend`` is an object satisfying :class:`ekd.backend.Backend`."""


@hookspec
def ekd_register_readers(register: Callable) -> None:
    """Called once when ekd loads its plugins. Call ``register(reader)`` for each
    :class:`ekd.data.Reader` (a data file layout) the plugin provides."""


@hookspec
def ekd_register_references(register: Callable) -> None:
    """Called once when ekd loads its plugins. Call ``register(reference)`` for each reference
    calculator the plugin provides: an object satisfying :class:`ekd.reference.Reference`
    (a level of theory that computes energies and, when asked, forces of configurations)."""
