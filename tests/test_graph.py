import numpy as np
import torch

from ekd.backend import Batch
from ekd.data import Dataset
from ekd.graph import edges_within


def test_edges_stay_within_a_conformation_and_the_cutoff():
    frames = Dataset.from_arrays(
        numbers=[np.array([1, 1, 1]), np.array([8, 1])],
        positions=[np.array([[0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]), np.array([[0, 0, 0], [0.9, 0, 0]])],
        molecule=["H3", "OH"],
    )
    edges = edges_within(Batch.from_frames(frames, torch.float64), cutoff=2.0)
    assert sorted(map(tuple, edges.T.tolist())) == [(0, 1), (1, 0), (3, 4), (4, 3)]
