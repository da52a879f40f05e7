"""The examples of docs/python-api.md run as written (the docs cannot rot)."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def python_blocks(path: Path) -> list[str]:
    """The file's python code blocks, each padded with blank lines so that a traceback's line
    numbers are the markdown file's."""
    text = path.read_text()
    return ["\n" * text[: m.start(1)].count("\n") + m.group(1) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]


@pytest.mark.slow
def test_python_api_examples_run_as_written(tmp_path, monkeypatch):
    pytest.importorskip("ekd_ani")
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "shared").symlink_to(SHARED)
    monkeypatch.chdir(work)
    blocks = python_blocks(ROOT / "docs/python-api.md")
    assert len(blocks) >= 6
    namespace, output = {}, io.StringIO()
    for block in blocks:
        with contextlib.redirect_stdout(output):
            exec(compile(block, "docs/python-api.md", "exec"), namespace)
    printed = output.getvalue()
    documented_error = re.search(r"print\(error\)  # (.*)", (ROOT / "docs/python-api.md").read_text()).group(1)
    assert documented_error in printed  # the error the docs show is the one ekd gives
    assert "student/baseline force MAE" in printed and "students/seed-200 2 / 3" in printed
    assert (work / "runs/api-demo/report.json").is_file() and (work / "runs/stages/students/seed-200/model.pt").is_file()
