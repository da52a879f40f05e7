"""The minimal third-party backend of docs/plugins.md installs and passes the conformance suite."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def documented_files(page: Path) -> dict[str, str]:
    """The code blocks of ``page`` whose first line is ``# file: NAME``, by name."""
    blocks = re.findall(r"```(?:python|toml)\n# file: (\S+)\n(.*?)```", page.read_text(), flags=re.S)
    return dict(blocks)


@pytest.mark.slow
def test_the_documented_minimal_backend_installs_and_passes_the_conformance_suite(tmp_path):
    files = documented_files(ROOT / "docs/plugins.md")
    assert set(files) == {"ekd_minimal.py", "pyproject.toml", "test_conformance.py"}
    package = tmp_path / "package"
    package.mkdir()
    for name in ("ekd_minimal.py", "pyproject.toml"):
        (package / name).write_text(files[name])
    (tmp_path / "test_conformance.py").write_text(files["test_conformance.py"])
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(package)], check=True, capture_output=True)
    environment = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "ekd", "backends"], env=environment, capture_output=True, text=True, check=True)
    assert any(line.startswith("minimal ") for line in listed.stdout.splitlines())
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_conformance.py"], cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert re.search(r"\b1[0-9] passed\b", suite.stdout)  # the whole suite ran
