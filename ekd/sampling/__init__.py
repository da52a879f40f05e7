"""Teacher-driven sampling (``ekd sample``): geometries for a student from seed molecules, made
and labelled by the teacher ensemble itself (docs/sample.md)."""

from ekd.sampling.sampler import SampleSettings, sample
from ekd.sampling.seeds import Seed, seeds_from_file, seeds_from_smiles

__all__ = ["SampleSettings", "Seed", "sample", "seeds_from_file", "seeds_from_smiles"]
