"""Test helpers shipped with ekd, above all the backend conformance suite for plugin authors."""

from ekd.testing.conformance import BackendConformance, labelled_molecules, pair_potential, periodic_cells, test_molecules
from ekd.testing.lammps import lammps_box, lammps_virial
from ekd.testing.ranks import on_ranks

__all__ = ["BackendConformance", "labelled_molecules", "lammps_box", "lammps_virial", "on_ranks", "pair_potential", "periodic_cells", "test_molecules"]
