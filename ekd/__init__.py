"""ekd: ensemble knowledge distillation of machine-learning interatomic potentials."""

from ekd.hookspecs import hookimpl, hookspec

from importlib import metadata as _metadata

__all__ = ["hookimpl", "hookspec", "__version__"]

try:
    __version__ = _metadata.version("ekd")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
