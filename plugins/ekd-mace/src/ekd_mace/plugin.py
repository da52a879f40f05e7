"""Entry point of the ``mace`` backend (group ``ekd``)."""

import ekd

from ekd_mace.backend import MaceBackend


@ekd.hookimpl
def ekd_register_backends(register):
    register(MaceBackend())
