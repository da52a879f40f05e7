"""Entry point of the ``nequip`` backend (group ``ekd``)."""

import ekd

from ekd_nequip.backend import NequipBackend


@ekd.hookimpl
def ekd_register_backends(register):
    register(NequipBackend())
