"""Every shipped config file is valid, and the commented default matches the code's defaults."""

from pathlib import Path

import pytest

from ekd.runconfig import RunConfig
from ekd.train import TrainConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_file_validates(path):
    RunConfig.load(path)


def test_default_yaml_states_the_real_defaults():
    documented = RunConfig.load(Path(__file__).parents[1] / "configs/default.yaml")
    defaults = RunConfig()
    assert documented.model_dump(exclude={"train"}) == defaults.model_dump(exclude={"train"})
    assert TrainConfig(**documented.train) == TrainConfig()


def test_role_training_settings_merge_and_student_defaults_survive_partial_overrides():
    config = RunConfig.load(None, {"train": {"epochs": 30, "lr": 0.01}, "student.train": {"lr": 0.002}, "student.baseline_train": {"epochs": 70}})
    student, baseline, teacher = (config.train_config(role) for role in ("student", "baseline", "teachers"))
    assert (student.force_weight, student.epochs, student.lr) == (0.1, 50, 0.002)  # the students' own defaults kept
    assert (baseline.force_weight, baseline.epochs, baseline.lr) == (0.0, 70, 0.01)
    assert (teacher.force_weight, teacher.epochs) == (0.0, 30)
    capped = RunConfig.load(None, {"epochs": 3, "student.baseline_train": {"epochs": 70}})
    assert {capped.train_config(role).epochs for role in ("student", "baseline", "teachers")} == {3}


def test_students_of_periodic_data_keep_the_shared_epoch_bound_unless_told(tmp_path):
    from ekd.data import Dataset, load_default
    from ekd.pipeline import student_jobs
    from ekd.testing import periodic_cells, test_molecules

    def student_epochs(data, **overrides):
        config = RunConfig.load(None, {"train": {"epochs": 300}, **overrides})
        return {job.config.epochs for job in student_jobs(tmp_path, config, data, data, {})}

    molecules, cells = test_molecules(), periodic_cells()
    assert student_epochs(load_default()) == {50}  # STUDENT_TRAIN: forces converge fast (50 batches an epoch: 2,500 steps)
    assert len(molecules) <= 32 and student_epochs(molecules) == {2000}  # one batch an epoch: raised to 2,000 steps (STUDENT_MIN_STEPS)
    assert student_epochs(molecules, **{"train": {"epochs": 300, "batch_size": 4}}) == {-(-2000 // -(-len(molecules) // 4))}
    assert student_epochs(molecules, **{"student.train": {"epochs": 80}}) == student_epochs(molecules, epochs=80) == {80}  # a bound you set wins
    assert student_epochs(cells) == {300}  # energies (the equation of state) take the full bound
    mixed = Dataset.concatenate([molecules, cells])
    assert student_epochs(mixed) == {300}
    assert student_epochs(mixed, **{"student.train": {"epochs": 80}}) == {80}  # the user's bound wins
