"""An ASE calculator for any ekd model or ensemble (molecules, and periodic cells where the backend models them; eV and eV/Å)."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from ekd.data import Dataset

__all__ = ["EkdCalculator"]


class EkdCalculator(Calculator):
    """ASE calculator around an :class:`ekd.Model` or :class:`ekd.Ensemble`.

    Every call computes all results. Results: ``energy`` (eV) and ``forces`` (n_atoms, 3) eV/Å,
    for a periodic cell ``stress`` (6,) eV/Å³ (ASE's sign and Voigt order); for an ensemble (the committee
    mean) also ``energy_spread`` (eV), ``force_spread`` (n_atoms,) eV/Å, and the members'
    ``energies`` (M,) and ``forces_comm`` (M, n_atoms, 3).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energy_spread", "force_spread", "energies", "forces_comm"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        if not hasattr(model, "models"):  # one model: no committee outputs
            self.implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.any())  # a backend without periodic cells refuses them, never models a cluster
        frames = Dataset.from_arrays([self.atoms.numbers], [self.atoms.positions], ["ase"], cell=self.atoms.cell.array[None] if periodic else None,
                                     pbc=self.atoms.pbc[None] if periodic else None)
        # all properties at once, as MD asks for both; stress asked only of periodic cells
        prediction = self.model.predict(frames, forces=True, **({"stress": True} if periodic else {}))
        self.results = {"energy": float(prediction.energy[0]), "free_energy": float(prediction.energy[0])}
        if periodic:
            self.results["stress"] = prediction.stress[0]
        if prediction.forces is not None:
            self.results["forces"] = prediction.forces
        member_energy = getattr(prediction, "member_energy", None)
        if member_energy is not None:
            self.results["energies"] = member_energy[:, 0]
            self.results["energy_spread"] = float(prediction.energy_spread[0])
            if prediction.member_forces is not None:
                self.results["forces_comm"] = prediction.member_forces
                self.results["force_spread"] = prediction.force_spread
