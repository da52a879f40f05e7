"""The example plugin passes ekd's conformance suite: this file is all a plugin author writes."""

from ekd.testing import BackendConformance


class TestPairMLP(BackendConformance):
    backend_name = "pairmlp"
