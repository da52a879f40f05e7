"""The core's neighbour edges (vesin) and the statistics measured on them."""

import numpy as np
import pytest
import torch

from ekd.backend import Batch, Statistics
from ekd.data import Dataset, load_default
from ekd.graph import neighbour_edges


def brute_force_edges(frames: Dataset, cutoff: float) -> set[tuple[int, int]]:
    edges = set()
    for k in range(len(frames)):
        rows = np.arange(frames.ptr[k], frames.ptr[k + 1])
        distance = np.linalg.norm(frames.positions[rows, None] - frames.positions[None, rows], axis=-1)
        i, j = np.nonzero((distance < cutoff) & ~np.eye(len(rows), dtype=bool))
        edges |= set(zip(rows[i].tolist(), rows[j].tolist()))
    return edges


@pytest.mark.parametrize("cutoff", [1.2, 2.5, 5.2])
def test_edges_equal_a_brute_force_count_on_the_embedded_set(cutoff):
    frames = load_default().subset(np.arange(0, 1600, 37))
    edges, shifts = neighbour_edges(frames, cutoff)
    assert set(zip(*edges.tolist())) == brute_force_edges(frames, cutoff) and edges.shape[1] == len(brute_force_edges(frames, cutoff))
    assert not shifts.any()  # molecules: no periodic images


def test_edges_stay_within_a_conformation_and_vectors_follow_positions():
    frames = Dataset.from_arrays(
        numbers=[np.array([1, 1, 1]), np.array([8, 1])],
        positions=[np.array([[0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]), np.array([[0, 0, 0], [0.9, 0, 0]])],
        molecule=["H3", "OH"],
    )
    batch = Batch.from_frames(frames, torch.float64, cutoff=2.0)
    assert sorted(map(tuple, batch.edge_index.T.tolist())) == [(0, 1), (1, 0), (3, 4), (4, 3)]
    vectors = {tuple(e): v for e, v in zip(batch.edge_index.T.tolist(), batch.edge_vectors().tolist())}
    assert vectors[(0, 1)] == [1.0, 0, 0] and vectors[(4, 3)] == [-0.9, 0, 0]


def test_statistics_by_hand(harmonic):
    frames = harmonic(6)
    statistics = Statistics.of(frames, [1, 8], cutoff=1.2)
    assert statistics.avg_num_neighbors == pytest.approx(len(brute_force_edges(frames, 1.2)) / frames.n_atoms)
    blocked = Statistics.of(frames, [1, 8], cutoff=1.2, block=4)  # summed block by block: the same up to the order of the sums
    assert blocked.reference_energies == pytest.approx(statistics.reference_energies, rel=1e-12)
    for scale in ("avg_num_neighbors", "energy_scale", "force_scale"):
        assert getattr(blocked, scale) == pytest.approx(getattr(statistics, scale), rel=1e-12)
    assert statistics.force_scale == pytest.approx(np.sqrt(np.mean(frames.forces**2)))
    assert Statistics.of(frames.without_forces(), [1, 8], cutoff=1.2).force_scale is None
    assert Statistics.from_dict(statistics.to_dict()) == statistics


@pytest.mark.parametrize("backend", ["mace", "nequip"])
def test_a_message_passing_model_is_built_with_its_training_split_s_neighbour_count(tmp_path, backend):
    from ekd.plugins import backends, get_backend
    from ekd.train import TrainConfig, train

    if backend not in backends():
        pytest.skip(f"{backend} is not installed")
    frames = load_default().subset(np.arange(0, 1600, 50))
    train_part, validation = frames.subset(np.arange(0, 32, 2)), frames.subset(np.arange(1, 32, 2))
    options = {**get_backend(backend).tiny, "r_max": 3.0}
    result = train(backend, train_part, validation, tmp_path, TrainConfig(epochs=1, device="cpu"), options, show_progress=False)
    direct = len(brute_force_edges(train_part, 3.0)) / train_part.n_atoms
    assert result.model.statistics.avg_num_neighbors == pytest.approx(direct)
    # what the network divides its neighbour sums by: MACE keeps the count, nequip 1/sqrt(count)
    used = [float(m.avg_num_neighbors) for m in result.model.module.modules() if isinstance(getattr(m, "avg_num_neighbors", None), (float, int))]
    used += [float(m.norm_const) ** -2 for m in result.model.module.modules() if isinstance(getattr(m, "norm_const", None), torch.Tensor)]
    assert used and all(v == pytest.approx(direct) for v in used)


def test_a_collapsed_cell_is_a_one_line_error_not_an_exhausted_memory():
    """A cell shrunk to a quarter (what a bad model's relaxation can do) has thousands of images
    within the cutoff: refused by name before any backend builds edge features."""
    from ase.build import bulk

    from ekd.errors import DataError

    good = Dataset.from_atoms([bulk("Cu", "fcc", a=3.6)])
    assert neighbour_edges(good, 5.0)[0].shape[1] == 42  # 12 + 6 + 24 images of the one atom
    collapsed = Dataset.from_atoms([bulk("Cu", "fcc", a=0.9)])
    with pytest.raises(DataError, match=r"conformation 0 \(Cu\) has \d+ neighbours per atom within 5 Å \(more than 500\): a collapsed cell"):
        neighbour_edges(collapsed, 5.0)
