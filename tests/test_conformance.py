"""The conformance suite, run against every installed backend."""

from ekd.plugins import backends
from ekd.testing import BackendConformance

for _name in sorted(backends()):
    globals()[f"TestConformance_{_name}"] = type(f"TestConformance_{_name}", (BackendConformance,), {"backend_name": _name})
