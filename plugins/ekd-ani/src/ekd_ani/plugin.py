"""Entry point of the ``ani`` backend (group ``ekd``)."""

import os

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # CUDA extensions are optional

import ekd

from ekd_ani.backend import AniBackend


@ekd.hookimpl
def ekd_register_backends(register):
    register(AniBackend())
