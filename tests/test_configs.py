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
