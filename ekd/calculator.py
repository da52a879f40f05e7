"""An ASE calculator for any ekd model: energy (eV) and forces (eV/Å) of one structure."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from ekd.data import Frames

__all__ = ["EkdCalculator"]


class EkdCalculator(Calculator):
    """ASE calculator around an :class:`ekd.model.Model` (non-periodic molecules)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        frames = Frames.from_arrays([self.atoms.numbers], [self.atoms.positions], ["ase"])
        prediction = self.model.predict(frames, forces="forces" in properties)
        self.results = {"energy": float(prediction.energy[0])}
        if prediction.forces is not None:
            self.results["forces"] = prediction.forces
