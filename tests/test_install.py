"""A backend plugin installs alone: ./install.sh core ani in a fresh environment trains an epoch.

(The other backends, and a plain ``pip install -e . -e plugins/ekd-mace``, are checked the same
way by benchmarks/install_alone.py.)"""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_core_and_the_ani_plugin_alone_install_and_train(tmp_path):
    venv = tmp_path / "venv"
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "EKD_VENV": str(venv)}
    subprocess.run([str(ROOT / "install.sh"), "core", "ani"], cwd=ROOT, env=environment, check=True, capture_output=True)
    ekd = str(venv / "bin/ekd")
    listed = json.loads(subprocess.run([ekd, "backends", "--json"], check=True, capture_output=True, text=True).stdout)
    assert [row["name"] for row in listed["backends"]] == ["ani"] and listed["failed_plugins"] == {}
    data = tmp_path / "slice.h5"
    subprocess.run([str(venv / "bin/python"), "-c", f"import ekd, numpy as np; ekd.Dataset.embedded().subset(np.arange(0, 1600, 25)).write('{data}')"], check=True)
    subprocess.run([ekd, "train", "--backend", "ani", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "one")], check=True, capture_output=True)
    assert (tmp_path / "one/model.pt").is_file()
    missing = subprocess.run([ekd, "train", "--backend", "mace", "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert missing.returncode == 2 and "unknown backend 'mace'; installed: ani" in missing.stderr
