"""Test helpers shipped with ekd, above all the backend conformance suite for plugin authors."""

from ekd.testing.conformance import BackendConformance, labelled_molecules, pair_potential, periodic_cells, test_molecules

__all__ = ["BackendConformance", "labelled_molecules", "pair_potential", "periodic_cells", "test_molecules"]
