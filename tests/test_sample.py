"""ekd sample: teacher-driven sampling from SMILES with the published ANI-1x ensemble (real
teachers, tiny settings): reproducible, filtered as claimed, gated, labelled by the teachers,
resumable, and refusing bad seeds before any MD. Students on sampled data, mixed with a reference
set by per-source loss weights."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ekd.backend import Batch, loss_weights
from ekd.cli import main
from ekd.config import validate
from ekd.data import Dataset
from ekd.ensemble import load_predictor
from ekd.errors import ConfigError, DataError
from ekd.runconfig import RunConfig
from ekd.sampling import SampleSettings, sample, seeds_from_smiles
from ekd.sampling.filters import distinct, descriptor, intact, nearest_rms
from ekd.train.loss import LossTotals, ekd_loss

pytest.importorskip("ekd_ani")
pytest.importorskip("rdkit")

import ekd.sampling.sampler as sampling  # noqa: E402

TINY = {"replicas": 1, "temperatures_K": [300.0, 600.0], "md_steps": 20, "record_every": 5, "rattles": 3, "soft_mode_samples": 3,
        "contacts": [2.0, 3.5], "pair_md_steps": 10, "max_force_spread": None}  # (no gate: the gate tests set theirs)


@pytest.fixture(scope="module")
def teachers(ani1x):
    return load_predictor(f"ani-pretrained:{ani1x}", device="cpu")


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, teachers):
    out = tmp_path_factory.mktemp("sample")
    return out, sample(out, teachers, smiles=["O water", "CO methanol"], settings=TINY, show_progress=False)


def test_sampling_is_reproducible_for_a_seed(sampled, teachers, tmp_path):
    _, data = sampled
    again = sample(tmp_path / "again", teachers, smiles=["O water", "CO methanol"], settings=TINY, show_progress=False)
    other = sample(tmp_path / "other", teachers, smiles=["O water", "CO methanol"], settings={**TINY, "seed": 1}, show_progress=False)
    assert np.array_equal(again.positions, data.positions) and np.array_equal(again.energy, data.energy)
    assert len(other) != len(data) or not np.allclose(other.positions, data.positions)
    assert set(data.molecules) == {"water", "methanol", "water+water", "water+methanol", "methanol+methanol"}


def test_labels_are_the_teachers_mean_and_spread(sampled, teachers):
    _, data = sampled
    prediction = teachers.predict(data)
    assert np.allclose(data.energy, prediction.energy, atol=1e-8)
    assert np.allclose(data.forces, prediction.forces, atol=1e-8)
    assert np.allclose(data.atom_data["force_spread"], prediction.force_spread, atol=1e-8)
    assert data.metadata["level_of_theory"] == "wB97X/6-31G(d)" and len(data.metadata["sampled"]["teachers"]) == 8


def test_the_summary_counts_what_each_filter_removed(sampled):
    out, data = sampled
    summary = json.loads((out / "sample.json").read_text())
    kept = sum(c["kept"] for c in summary["systems"].values())
    assert summary["sampled"] == kept and summary["conformations"] == kept - summary["gated"] == len(data)
    water = summary["systems"]["water"]
    assert water["made"] == {"seed": 1, "md": 2 * 4, "rattle": 3, "soft mode": 3}
    assert water["kept"] + water["overlap"] + water["broken"] + water["new bond"] + water["near copies"] == 15
    assert (out / "spread.png").stat().st_size > 0


def _copy(out, to):
    shutil.copytree(out, to)
    return to


WATER = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


def test_filters_remove_overlaps_broken_and_new_bonds():
    numbers = np.array([8, 1, 1])
    assert intact(numbers, WATER, WATER + 0.01, 0.5, 0.5) is None
    stretched = WATER.copy()
    stretched[1, 0] = 1.7  # O-H 0.96 -> 1.7 Å
    assert intact(numbers, WATER, stretched, 0.5, 0.5) == "broken"
    squeezed = WATER.copy()
    squeezed[2] = squeezed[1] + [0.0, 0.3, 0.0]  # H 0.3 Å from H
    assert intact(numbers, WATER, squeezed, 0.5, 0.5) == "overlap"
    pair = np.concatenate([WATER, WATER + [3.0, 0.0, 0.0]])
    bonded = np.concatenate([WATER, WATER + [1.9, 0.0, 0.0]])  # an H of the first 0.94 Å from the second O
    assert intact(np.tile(numbers, 2), pair, pair, 0.5, 0.5) is None
    assert intact(np.tile(numbers, 2), pair, bonded, 0.5, 0.5) == "new bond"


def test_near_copies_are_left_out_and_distinct_geometries_kept():
    rng = np.random.default_rng(0)
    geometries = [WATER, WATER + rng.normal(scale=1e-4, size=WATER.shape), WATER * 1.1, WATER * 1.1 + 1e-4]
    kept = distinct([descriptor(g) for g in geometries], np.arange(4), min_rms=0.02)
    assert kept == [0, 2]


@pytest.mark.parametrize("gated", ["drop", "weight"])
def test_the_spread_gate_drops_or_down_weights_above_its_threshold(sampled, teachers, tmp_path, gated):
    out, data = sampled
    spread = np.bincount(data.conformation_index, weights=data.atom_data["force_spread"]) / data.sizes
    threshold = float(np.median(spread))
    out = _copy(out, tmp_path / "gated")  # (the parts are reused: only the gate is new)
    gated_data = sample(out, teachers, smiles=["O water", "CO methanol"], show_progress=False,
                        settings={**TINY, "max_force_spread": threshold, "gated": gated, "gated_weight": 0.2})
    above = spread > threshold
    if gated == "drop":
        assert len(gated_data) == int((~above).sum()) and np.array_equal(gated_data.energy, data.energy[~above])
    else:
        assert len(gated_data) == len(data)
        assert np.array_equal(gated_data.atom_data["weight"][gated_data.ptr[:-1]], np.where(above, 0.2, 1.0))
    assert json.loads((out / "sample.json").read_text())["gated"] == int(above.sum())


def test_the_automatic_gate_is_twice_the_median_spread_at_the_relaxed_seeds(sampled, teachers, tmp_path):
    out, data = sampled
    out = _copy(out, tmp_path / "auto")
    gated = sample(out, teachers, smiles=["O water", "CO methanol"], settings={**TINY, "max_force_spread": "auto"}, show_progress=False)
    seeds = Dataset.read(out / "seeds.h5")
    at_seeds = [teachers.predict(seeds.subset([k])).force_spread.mean() for k in range(len(seeds))]
    threshold = json.loads((out / "sample.json").read_text())["gate"]["max_force_spread_eV_per_A"]
    assert threshold == pytest.approx(2 * np.median(at_seeds))
    spread = np.bincount(data.conformation_index, weights=data.atom_data["force_spread"]) / data.sizes
    assert len(gated) == int((spread <= threshold).sum()) < len(data)


def test_a_killed_sampling_resumes_without_redoing_finished_systems(sampled, teachers, tmp_path, monkeypatch):
    out, data = sampled
    copy = _copy(out, tmp_path / "killed")
    (copy / "parts" / "water+methanol.h5").unlink()
    (copy / "sampled.h5").unlink()
    made = []
    real = sampling._candidates
    monkeypatch.setattr(sampling, "_candidates", lambda system, *a: made.append(system.name) or real(system, *a))
    again = sample(copy, teachers, smiles=["O water", "CO methanol"], settings=TINY, show_progress=False)
    assert made == ["water+methanol"]
    assert np.array_equal(again.positions, data.positions)
    made.clear()
    sample(copy, teachers, smiles=["O water", "CO methanol"], settings={**TINY, "rattles": 4}, show_progress=False)
    assert made == ["water", "methanol"]  # the pairs do not depend on the rattles: kept


@pytest.mark.parametrize("smiles, error, message", [
    (["C1CC"], DataError, "SMILES 'C1CC': RDKit cannot read it"),
    (["ClCCl dichloromethane"], ConfigError, "seeds dichloromethane: elements Cl are not among the teachers' (CHNO)"),
])
def test_bad_seeds_are_refused_before_any_md(teachers, tmp_path, monkeypatch, smiles, error, message):
    monkeypatch.setattr(sampling, "langevin", lambda *a, **k: pytest.fail("MD ran"))
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample(tmp_path, teachers, smiles=smiles, settings=TINY, show_progress=False)


def test_a_missing_exclude_file_is_refused_before_any_md(teachers, tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "langevin", lambda *a, **k: pytest.fail("MD ran"))
    with pytest.raises(ConfigError, match="sample.exclude: .*nowhere.h5 does not exist"):
        sample(tmp_path, teachers, smiles=["O water"], settings={**TINY, "exclude": [str(tmp_path / "nowhere.h5")]}, show_progress=False)


def test_an_empty_result_is_an_error(teachers, tmp_path):
    with pytest.raises(DataError, match="sampling kept no geometry"):
        sample(tmp_path, teachers, smiles=["O water"], settings={**TINY, "pairs": False, "min_distance": 5.0}, show_progress=False)


def test_cli_sample_errors_are_one_line(capsys, ani1x, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "s"), "--teachers", f"ani-pretrained:{ani1x}", "--smiles", "C1CC"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip() == "ekd: error: SMILES 'C1CC': RDKit cannot read it (check the bonds, rings and charges)"


def test_smiles_seeds_and_settings():
    seeds = seeds_from_smiles(["C#C ethyne", "c1ccccc1"])
    assert [s.name for s in seeds] == ["ethyne", "c1ccccc1"] and [len(s.numbers) for s in seeds] == [4, 12]
    with pytest.raises(DataError, match="seed names repeat: water"):
        seeds_from_smiles(["O water", "[OH2] water"])
    with pytest.raises(ConfigError, match="sample.replicas"):
        validate(SampleSettings, {"replicas": -1}, "sample")


def test_the_overlap_check_finds_a_test_geometry_and_passes_sampled_ones(sampled, shared_data):
    """The check the S66x8 benchmark relies on: no sampled water dimer is within 0.1 Å RMS of an
    S66x8 one, and an S66x8 conformation itself (permuted and moved) is found at 0."""
    _, data = sampled
    s66 = Dataset.read(shared_data / "comp6/s66x8_wb97x6-31gd.h5")
    dimers = data.subset(np.flatnonzero(data.molecule == "water+water"))
    assert len(dimers) and nearest_rms(dimers, s66).min() > 0.1
    k = 3
    atoms = s66.atoms_of(k)
    order = np.random.default_rng(0).permutation(atoms.stop - atoms.start)
    moved = Dataset.from_arrays([s66.numbers[atoms][order]], [s66.positions[atoms][order] + 5.0], ["copy"])
    assert nearest_rms(moved, s66)[0] == pytest.approx(0.0, abs=1e-9)


def test_source_weights_scale_the_energy_and_force_terms(harmonic):
    frames = harmonic(4)
    weight = np.repeat([1.0, 1.0, 0.25, 0.25], frames.sizes)
    weighted = frames.with_forces(frames.forces, weight=weight)
    energy_weight, force_weight = loss_weights(weighted)
    assert np.array_equal(energy_weight, [1.0, 1.0, 0.25, 0.25]) and np.array_equal(force_weight, weight)
    batch = Batch.from_frames(weighted, dtype=__import__("torch").float64)
    import torch

    predicted = batch.energy + torch.tensor([0.3, 0.0, 0.6, 0.0], dtype=torch.float64)
    _, parts = ekd_loss(predicted, batch.forces, batch, 1.0, 1.0)
    expected = (1.0 * (0.3 / 3) ** 2 + 0.25 * (0.6 / 3) ** 2) / 2.5
    assert parts["energy"] == pytest.approx(expected) and LossTotals.of(weighted).conformations == 2.5


def test_data_mix_joins_sources_with_their_weights_and_notes_other_levels(sampled, tmp_path):
    from ekd.pipeline.inputs import resolve_inputs

    out, data = sampled
    config = RunConfig.load(None, {"data.path": "embedded:ccsdt", "data.mix": [{"path": str(out / "sampled.h5"), "weight": 0.5}],
                                   "student.backend": "pairmlp"})
    inputs = resolve_inputs(config)
    reference = Dataset.embedded(name="ccsdt")
    assert len(inputs.data) == len(reference) + len(data)
    first = inputs.data.atom_data["weight"][inputs.data.ptr[:-1]]
    assert np.array_equal(first, np.r_[np.ones(len(reference)), np.full(len(data), 0.5)])
    assert any("different levels of theory" in note for note in inputs.notes)
    assert np.array_equal(inputs.energy_only[0].atom_data["weight"], inputs.split.train.atom_data["weight"])  # teachers see the weights too


def test_a_student_distils_from_a_published_ensemble_on_sampled_data(sampled, ani1x, tmp_path):
    import ekd

    out, data = sampled
    config = RunConfig.load(None, {
        "data.path": str(out / "sampled.h5"),
        "teachers.spec": f"ani-pretrained:{ani1x}",
        "student.backend": "pairmlp",
        "student.options": {"width": 8, "n_rbf": 8},
        "student.seeds": 1,
        "train": {"epochs": 2, "batch_size": 16, "dtype": "float64", "device": "cpu"},
        "jobs": 1,
    })
    run = ekd.distill(config, out=tmp_path / "run", show_progress=False)
    report = run.report
    assert [n for n, m in report.models.items() if m.role == "student"] == ["student seed-200"]
    assert not [n for n, m in report.models.items() if m.role == "baseline"]
    labels = run.labels.dataset()
    assert np.allclose(labels.forces, data.subset(np.arange(len(data))).forces, atol=1e-8)  # the run's labels are the sampler's


def sample_here(out: str, teachers: str) -> None:
    """One rank's share of a sampling (run by :func:`ekd.testing.on_ranks`): records the systems it made."""
    from ekd import distributed

    made, real = [], sampling._candidates
    sampling._candidates = lambda system, *a: made.append(system.name) or real(system, *a)
    try:
        sample(out, f"ani-pretrained:{teachers}", smiles=["O water", "CO methanol"], settings=TINY, show_progress=False)
    finally:
        sampling._candidates = real
    (Path(out) / f"made-{distributed.rank()}.json").write_text(json.dumps(made))


def test_two_ranks_share_the_systems_and_sample_what_one_rank_does(sampled, ani1x, tmp_path, monkeypatch):
    from ekd.testing import on_ranks

    _, data = sampled
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # (spawned ranks import this module)
    on_ranks(2, "test_sample:sample_here", str(tmp_path), str(ani1x))
    made = [json.loads((tmp_path / f"made-{rank}.json").read_text()) for rank in range(2)]
    assert made == [["water", "water+water", "methanol+methanol"], ["methanol", "water+methanol"]]
    assert np.array_equal(Dataset.read(tmp_path / "sampled.h5").positions, data.positions)
