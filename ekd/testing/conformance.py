"""The backend conformance suite: what every ekd backend must satisfy.

A plugin author subclasses :class:`BackendConformance` in their own tests::

    from ekd.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend_name = "mybackend"       # as registered through the entry point
        options = {"width": 8}           # optional: a small model (default: the backend's ``tiny``)

and pytest runs every check below against it: the energy contract (reference energies, forces
= −∂E/∂x by finite differences, invariances, batching, save/load, seeds, training), the
declared cutoff (nothing beyond it changes an energy), the statistics (the model is built from
what the core measured) and the declared capabilities. Models are float64; molecules are built
in code (no data files needed).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase.build import molecule

from ekd.backend import Statistics, capabilities
from ekd.data import Dataset
from ekd.errors import DataError
from ekd.graph import neighbour_edges
from ekd.ensemble import Ensemble
from ekd.model import Model
from ekd.plugins import get_backend
from ekd.train import TrainConfig, train

__all__ = ["BackendConformance", "labelled_molecules", "pair_potential", "periodic_cells", "test_molecules"]

SPECIES = [1, 6, 7, 8]
REFERENCE = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2042.0}  # eV, roughly free-atom scale


def test_molecules(count_per_molecule: int = 2, seed: int = 0, scale: float = 0.05) -> Dataset:
    """Randomly displaced small H/C/N/O molecules of different sizes (no labels)."""
    rng = np.random.default_rng(seed)
    numbers, positions, names = [], [], []
    for name in ("H2O", "NH3", "CH3OH", "HCN", "CH4"):
        atoms = molecule(name)
        for _ in range(count_per_molecule):
            numbers.append(atoms.numbers)
            positions.append(atoms.positions + rng.normal(scale=scale, size=atoms.positions.shape))
            names.append(name)
    return Dataset.from_arrays(numbers, positions, names)


test_molecules.__test__ = False  # a helper, not a test


def pair_potential(frames: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """A smooth synthetic truth: Morse-like pair energies plus per-element constants.

    Returns energies (N,) in eV and the exact forces −∂E/∂x (A, 3) in eV/Å.
    """
    energies, forces = np.zeros(len(frames)), np.zeros_like(frames.positions)
    for n in range(len(frames)):
        rows = frames.atoms_of(n)
        xyz, z = frames.positions[rows], frames.numbers[rows]
        i, j = np.triu_indices(len(z), 1)
        vector = xyz[i] - xyz[j]
        r = np.linalg.norm(vector, axis=-1)
        decay = np.exp(-1.5 * (r - 1.2))
        energies[n] = np.sum((1 - decay) ** 2) + sum(REFERENCE[int(a)] for a in z)
        de_dr = 2 * (1 - decay) * 1.5 * decay
        pair_force = -(de_dr / r)[:, None] * vector  # force on atom i from pair (i, j)
        block = np.zeros_like(xyz)
        np.add.at(block, i, pair_force)
        np.add.at(block, j, -pair_force)
        forces[rows] = block
    return energies, forces


def labelled_molecules(count_per_molecule: int = 8, seed: int = 3, scale: float = 0.1) -> Dataset:
    """:func:`test_molecules` with energies and forces of :func:`pair_potential`."""
    frames = test_molecules(count_per_molecule, seed, scale)
    energy, forces = pair_potential(frames)
    return dataclasses.replace(frames, energy=energy, forces=forces)


def periodic_cells(seed: int = 0, edge: float = 3.2) -> Dataset:
    """Two periodic cells of H, C, N, O (Å), smaller than usual cutoffs, so that atoms see their
    own images: a skewed fully periodic cell and a slab (``pbc`` True, True, False), with every
    two atoms (images included) at least 1 Å apart."""
    rng = np.random.default_rng(seed)
    pbc = np.array([[True] * 3, [True, True, False]])
    cells, positions = [], []
    for k in range(2):
        while True:
            cell = edge * np.eye(3) + rng.uniform(-0.3, 0.3, size=(3, 3))
            points = rng.uniform(size=(4, 3)) @ cell
            candidate = Dataset.from_arrays([np.array(SPECIES)], [points], ["cell"], cell=cell[None], pbc=pbc[k : k + 1])
            if neighbour_edges(candidate, 1.0)[0].shape[1] == 0:
                break
        cells.append(cell)
        positions.append(points)
    return Dataset.from_arrays([np.array(SPECIES)] * 2, positions, ["bulk", "slab"], cell=np.array(cells), pbc=pbc)


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


class BackendConformance:
    """Checks every backend must pass. Set ``backend_name`` (and optionally ``options``)."""

    backend_name: str = ""
    options: dict | None = None
    #: tolerance (eV, eV/Å) for quantities that must agree exactly up to float64 round-off
    atol: float = 1e-8

    @pytest.fixture
    def backend(self):
        return get_backend(self.backend_name)

    def build(self, backend, reference: dict[int, float] = REFERENCE, seed: int = 0, **options) -> Model:
        """A float64 model with the suite's options, its statistics measured on the test molecules."""
        options = {**(backend.tiny if self.options is None else self.options), **options}
        cutoff = backend.cutoff(backend.Options(**options))
        statistics = dataclasses.replace(Statistics.of(labelled_molecules(2), SPECIES, cutoff), reference_energies=reference)
        return Model.build(backend, SPECIES, statistics, options, seed=seed, dtype=torch.float64, device="cpu")

    @pytest.fixture
    def model(self, backend) -> Model:
        return self.build(backend)

    @pytest.fixture
    def frames(self) -> Dataset:
        return test_molecules()

    def test_energy_shape_and_reference_energies(self, backend, model, frames):
        prediction = model.predict(frames, forces=False)
        assert prediction.energy.shape == (len(frames),) and np.isfinite(prediction.energy).all()
        shifted = self.build(backend, {z: e + 1.0 for z, e in REFERENCE.items()})
        # the model includes its per-element reference energies: +1 eV each shifts E by n_atoms
        np.testing.assert_allclose(shifted.predict(frames, forces=False).energy - prediction.energy, frames.sizes, atol=1e-6)

    def test_forces_are_minus_energy_gradient(self, model, frames):
        frames = frames.subset([4])  # methanol
        prediction, numeric = model.predict(frames, forces=True), _numeric_forces(model, frames)
        np.testing.assert_allclose(prediction.forces, numeric, atol=1e-5 + 1e-4 * np.abs(numeric).max())
        assert np.abs(prediction.forces).max() > 1e-3  # not trivially zero

    def test_invariant_to_rotation_and_translation(self, model, frames):
        before = model.predict(frames)
        rotation, shift = _rotation(1), np.array([1.5, -2.0, 0.7])
        moved = dataclasses.replace(frames, positions=frames.positions @ rotation.T + shift)
        after = model.predict(moved)
        np.testing.assert_allclose(after.energy, before.energy, atol=1e-6)
        np.testing.assert_allclose(after.forces, before.forces @ rotation.T, atol=1e-6)

    def test_invariant_to_atom_permutation(self, model, frames):
        frames = frames.subset([4])
        order = np.random.default_rng(2).permutation(frames.n_atoms)
        permuted = dataclasses.replace(frames, numbers=frames.numbers[order], positions=frames.positions[order])
        before, after = model.predict(frames), model.predict(permuted)
        np.testing.assert_allclose(after.energy, before.energy, atol=1e-6)
        np.testing.assert_allclose(after.forces, before.forces[order], atol=1e-6)

    def test_batched_equals_one_at_a_time(self, model, frames):
        together = model.predict(frames, batch_size=len(frames))
        alone = [model.predict(frames.subset([i]), batch_size=1) for i in range(len(frames))]
        np.testing.assert_allclose(together.energy, [p.energy[0] for p in alone], atol=self.atol * 100)
        np.testing.assert_allclose(together.forces, np.concatenate([p.forces for p in alone]), atol=self.atol * 100)

    def test_save_load_reproduces_outputs_exactly(self, model, frames, tmp_path):
        model.save(tmp_path / "model.pt")
        loaded = Model.load(tmp_path / "model.pt", device="cpu")
        before, after = model.predict(frames), loaded.predict(frames)
        np.testing.assert_array_equal(after.energy, before.energy)
        np.testing.assert_array_equal(after.forces, before.forces)
        assert loaded.backend.name == model.backend.name and loaded.options == model.options

    def test_a_saved_model_restarted_by_init_from_reproduces_its_outputs(self, backend, model, frames, tmp_path):
        """Fine-tuning (``init_from``) starts where the saved model is: the same forces, and
        energies moved only by its reference energies refit to the new data (Σ_Z n_Z·Δ_Z)."""
        from ekd.train.start import load_start, started_from

        model.save(tmp_path / "model.pt")
        restarted = started_from(load_start(tmp_path / "model.pt", backend.name), labelled_molecules(2), seed=1, dtype=torch.float64, device="cpu")
        shift = np.array([restarted.info["init_from"]["reference_shift_eV"][z] for z in model.species])
        before, after = model.predict(frames), restarted.predict(frames)
        assert np.abs(shift).max() > 1e-3  # (the new data's energies are not the model's: the check below is not vacuous)
        np.testing.assert_allclose(after.forces, before.forces, rtol=0, atol=self.atol)
        np.testing.assert_allclose(after.energy, before.energy + frames.composition(model.species) @ shift, rtol=0, atol=self.atol * 100)
        assert restarted.statistics.avg_num_neighbors == model.statistics.avg_num_neighbors

    def test_same_seed_same_model_other_seed_other_model(self, backend, model, frames):
        again, other = self.build(backend, seed=0), self.build(backend, seed=1)
        energy = model.predict(frames, forces=False).energy
        np.testing.assert_array_equal(again.predict(frames, forces=False).energy, energy)
        assert not np.allclose(other.predict(frames, forces=False).energy, energy)

    def test_nothing_beyond_the_declared_cutoff_changes_an_energy(self, model, frames):
        """Two molecules further apart than the cutoff: the energy of the pair is the sum of
        theirs (the backend uses only the core's edges within its declared cutoff)."""
        first, second = frames.subset([4]), frames.subset([2])
        apart = second.positions + np.array([model.cutoff + 3.0 + np.ptp(first.positions[:, 0]), 0.0, 0.0])
        together = Dataset.from_arrays([np.concatenate([first.numbers, second.numbers])], [np.concatenate([first.positions, apart])], ["pair"])
        separate = model.predict(first).energy[0] + model.predict(second).energy[0]
        np.testing.assert_allclose(model.predict(together).energy[0], separate, atol=1e-6)
        assert model.statistics.avg_num_neighbors is not None and model.cutoff > 0

    def test_the_model_is_built_from_the_statistics(self, backend, model, tmp_path):
        """The statistics the core measured are the ones saved with the model and rebuilt."""
        model.save(tmp_path / "model.pt")
        assert Model.load(tmp_path / "model.pt", device="cpu").statistics == model.statistics
        measured = Statistics.of(labelled_molecules(2), SPECIES, model.cutoff)
        assert model.statistics.avg_num_neighbors == measured.avg_num_neighbors > 0

    def test_declared_capabilities_work(self, backend, model, frames, tmp_path):
        declared = capabilities(backend)
        if "variations" in declared:
            for variation in backend.variations:
                assert np.isfinite(self.build(backend, **variation).predict(frames.subset([0])).energy).all()
        if "export" in declared:
            target = tmp_path / f"model{backend.export_suffix}"
            model.export(target)
            assert target.is_file() and target.stat().st_size > 0

    def test_members_sharing_features_predict_what_they_predict_alone(self, backend, model, frames):
        if "features" not in capabilities(backend):
            pytest.skip(f"backend '{backend.name}' does not declare shared features")
        other = self.build(backend, seed=1)
        assert backend.feature_key(other.options) == backend.feature_key(model.options)
        ensemble = Ensemble([model, other])
        assert ensemble.sharing() == [[0, 1]] and ensemble.sharing(stress=True) == [[0], [1]]
        together = ensemble.predict(frames)
        for k, member in enumerate((model, other)):
            alone = member.predict(frames)
            np.testing.assert_allclose(together.member_energy[k], alone.energy, atol=self.atol)
            np.testing.assert_allclose(together.member_forces[k], alone.forces, atol=self.atol)
        assert np.abs(together.member_forces[0] - together.member_forces[1]).max() > 1e-3  # two members, not one twice

    # periodic cells: checked for a backend that declares them, refused by one that does not ----------
    def periodic_model(self, backend) -> Model:
        if "periodic" not in capabilities(backend):
            with pytest.raises(DataError, match="does not model periodic cells"):
                self.build(backend).predict(periodic_cells())
            pytest.skip(f"backend '{backend.name}' does not declare periodic cells (and refuses them)")
        return self.build(backend)

    def test_periodic_forces_are_minus_energy_gradient(self, backend):
        model = self.periodic_model(backend)
        for k, frames in enumerate(periodic_cells().subset([i]) for i in range(2)):
            prediction, numeric = model.predict(frames, forces=True), _numeric_forces(model, frames)
            np.testing.assert_allclose(prediction.forces, numeric, atol=1e-5 + 1e-4 * np.abs(numeric).max(), err_msg=f"cell {k}")

    def test_stress_is_the_strain_derivative_of_the_energy(self, backend):
        """σ = (1/V) ∂E/∂ε by central differences of a symmetric strain applied to positions and
        cell together, in ASE's Voigt order; NaN for a molecule."""
        model = self.periodic_model(backend)
        cells = periodic_cells()
        prediction = model.predict(cells, stress=True)
        step = 1e-5
        for k in range(len(cells)):
            frames, volume = cells.subset([k]), abs(np.linalg.det(cells.cell[k]))
            numeric = []
            for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)):
                energies = []
                for sign in (1, -1):
                    strain = np.zeros((3, 3))
                    strain[i, j] += sign * step / (1 if i == j else 2)
                    strain[j, i] = strain[i, j]
                    deformed = dataclasses.replace(frames, positions=frames.positions @ (np.eye(3) + strain), cell=frames.cell @ (np.eye(3) + strain))
                    energies.append(model.predict(deformed, forces=False).energy[0])
                numeric.append((energies[0] - energies[1]) / (2 * step * volume))
            np.testing.assert_allclose(prediction.stress[k], numeric, atol=1e-7 + 1e-4 * np.abs(numeric).max(), err_msg=f"cell {k}")
            assert np.abs(numeric).max() > 1e-5  # not trivially zero
        assert np.isnan(model.predict(test_molecules().subset([0]), stress=True).stress).all()

    def test_periodic_energy_ignores_wrapping_and_respects_the_open_axis(self, backend):
        """Moving an atom by a periodic cell vector changes nothing; along the slab's open axis
        it does (the images along it must not exist)."""
        model = self.periodic_model(backend)
        frames = periodic_cells()
        before = model.predict(frames)
        moved = frames.positions.copy()
        moved[0] += frames.cell[0, 0] - 2 * frames.cell[0, 1]  # bulk: atom 0 by a - 2b
        moved[5] += frames.cell[1, 1]  # slab: atom 1 by b (periodic)
        after = model.predict(dataclasses.replace(frames, positions=moved))
        np.testing.assert_allclose(after.energy, before.energy, atol=1e-6)
        np.testing.assert_allclose(after.forces, before.forces, atol=1e-6)
        along_open_axis = frames.positions.copy()
        along_open_axis[5] += frames.cell[1, 2]
        assert abs(model.predict(dataclasses.replace(frames, positions=along_open_axis), forces=False).energy[1] - before.energy[1]) > 1e-6

    def test_a_supercell_has_twice_the_energy_and_the_same_forces(self, backend):
        model = self.periodic_model(backend)
        primitive = periodic_cells().subset([0])
        supercell = Dataset.from_atoms([primitive.to_atoms()[0].repeat((2, 1, 1))])
        small, large = model.predict(primitive), model.predict(supercell)
        np.testing.assert_allclose(large.energy[0], 2 * small.energy[0], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(large.forces, np.tile(small.forces, (2, 1)), atol=1e-6)

    def test_a_molecule_far_from_its_images_is_the_isolated_molecule(self, backend, frames):
        model = self.periodic_model(backend)
        methanol = frames.subset([4])
        edge = np.ptp(methanol.positions, axis=0).max() + model.cutoff + 1.0
        boxed = dataclasses.replace(methanol, cell=edge * np.eye(3)[None], pbc=np.ones((1, 3), dtype=bool))
        np.testing.assert_allclose(model.predict(boxed).energy, model.predict(methanol).energy, atol=1e-8)
        np.testing.assert_allclose(model.predict(boxed).forces, model.predict(methanol).forces, atol=1e-8)

    def test_short_training_lowers_validation_loss(self, backend, tmp_path):
        data = labelled_molecules(count_per_molecule=12).without_forces()
        train_part, val_part = data.subset(np.arange(0, len(data), 2)), data.subset(np.arange(1, len(data), 2))
        config = TrainConfig(epochs=8, batch_size=8, lr=3e-3, dtype="float64", device="cpu", ema_decay=0.0)
        options = backend.tiny if self.options is None else self.options
        result = train(backend.name, train_part, val_part, tmp_path, config, options, show_progress=False)
        history = [row["val_loss"] for row in _read_history(tmp_path / "history.csv")]
        assert min(history[1:]) < history[0] and result.best_val_loss < history[0]


def _numeric_forces(model: Model, frames: Dataset, step: float = 1e-4) -> np.ndarray:
    """(A, 3) eV/Å: −∂E/∂x of one conformation by central finite differences of the energy."""
    numeric = np.zeros_like(frames.positions)
    for atom, axis in np.ndindex(frames.n_atoms, 3):
        energies = []
        for sign in (1, -1):
            moved = frames.positions.copy()
            moved[atom, axis] += sign * step
            energies.append(model.predict(dataclasses.replace(frames, positions=moved), forces=False).energy[0])
        numeric[atom, axis] = -(energies[0] - energies[1]) / (2 * step)
    return numeric


def _read_history(path) -> list[dict]:
    import csv

    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
