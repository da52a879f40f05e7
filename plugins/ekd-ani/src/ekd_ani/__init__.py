"""ANI backend for ekd: ANI-1x-style AEVs and per-element networks built with torchani 2.9."""

from ekd_ani.backend import AniBackend, AniOptions

__all__ = ["AniBackend", "AniOptions"]
