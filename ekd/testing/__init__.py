"""Test helpers shipped with ekd, above all the backend conformance suite for plugin authors."""

from ekd.testing.conformance import BackendConformance, test_molecules

__all__ = ["BackendConformance", "test_molecules"]
