"""HIP-NN backend for ekd: hierarchical interacting particle networks built with hippynn 0.1.3."""

from ekd_hippynn.backend import HipnnBackend, HipnnOptions

__all__ = ["HipnnBackend", "HipnnOptions"]
