"""NequIP backend for ekd: E(3)-equivariant message passing built with nequip 0.19."""

from ekd_nequip.backend import NequipBackend, NequipOptions

__all__ = ["NequipBackend", "NequipOptions"]
