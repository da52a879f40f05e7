"""MACE backend for ekd: mace-torch's ScaleShiftMACE built from scratch (mace-torch 0.3.16)."""

from ekd_mace.backend import MaceBackend, MaceOptions

__all__ = ["MaceBackend", "MaceOptions"]
