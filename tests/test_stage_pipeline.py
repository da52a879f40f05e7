"""The one-way stage pipeline: inputs resolved once, each stage once, one labelling loop, and runs
of the previous layout resumed without retraining."""

import ast
import collections
import hashlib
import importlib
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ekd
from ekd.data import write
from ekd.data.frames import PerConformation
from ekd.model import Model
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/run-v0c78935"  # made by scripts/make_run_fixture.py at 0c78935
STAGES = ["inputs", "teach", "labelling", "students", "evaluate"]  # in pipeline order
TINY = {"width": 8, "n_rbf": 8}


def tiny(data_path, **overrides) -> RunConfig:
    return RunConfig.load(None, {
        "data.path": str(data_path), "teachers.spec": "pairmlp:2", "teachers.options": {"pairmlp": TINY}, "student.backend": "pairmlp",
        "student.options": TINY, "student.seeds": 2, "student.baseline": True, "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"},
        "epochs": 3, "jobs": 1, **overrides,
    })


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_directory_of_the_previous_layout_resumes_without_retraining_and_scores_the_same(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    before = digests(run_dir)
    report = ekd.Run.open(run_dir, show_progress=False).run()
    after = digests(run_dir)
    trained = [k for k in before if k.endswith(("model.pt", "history.csv", "labels.h5")) or (k.endswith("stage.json") and not k.startswith("evaluate"))]
    assert len(trained) == 20 and {k: after[k] for k in trained} == {k: before[k] for k in trained}  # nothing retrained or relabelled
    assert after["evaluate/stage.json"] != before["evaluate/stage.json"]  # scored again, by this code (the config's data path moved with the copy)
    saved = ekd.Report.read(FIXTURE / "report.json")
    assert saved.models.keys() == report.models.keys()
    for name, scores in saved.models.items():
        assert report.models[name].datasets == scores.datasets, name  # the same numbers, to the last bit
        assert report.models[name].role == scores.role == name.split(" seed")[0].split(" 0")[0]  # read from the name in an older report
    assert report.headline == saved.headline


def test_one_run_hashes_each_stage_input_once_splits_once_and_loads_each_teacher_once(tmp_path, monkeypatch):
    write(labelled_molecules(8), tmp_path / "data.h5")
    frames = importlib.import_module("ekd.data.frames")
    hashed, splits, loads = [], [], collections.Counter()
    real_hash, real_split, real_load = frames.sha256_arrays, PerConformation.split_indices, Model.load.__func__

    def counted_hash(data):
        hashed.append(real_hash(data))
        return hashed[-1]

    def counted_split(self, *args, **kwargs):
        splits.append(len(self))
        return real_split(self, *args, **kwargs)

    def counted_load(cls, path, *args, **kwargs):
        caller = inspect.currentframe().f_back.f_globals["__name__"]
        if caller != "ekd.train.trainer":  # (a training returns its best model: not a teacher loaded by a stage)
            loads[str(Path(path).resolve().relative_to(tmp_path.resolve()))] += 1
        return real_load(cls, path, *args, **kwargs)

    monkeypatch.setattr(frames, "sha256_arrays", counted_hash)
    monkeypatch.setattr(PerConformation, "split_indices", counted_split)
    monkeypatch.setattr(Model, "load", classmethod(counted_load))
    run = ekd.distill(tiny(tmp_path / "data.h5"), out=tmp_path / "run", show_progress=False)

    assert len(run.students) == len(run.baselines) == 2 and run.report.held_out.baseline_force_mae.n == 2
    repeated = {digest: n for digest, n in collections.Counter(hashed).items() if n > 1}
    assert hashed and not repeated  # teachers' and baselines' energy-only parts, students' labelled parts, the labelled data: once each
    assert splits == [len(run.data)]  # the data split once; labels take the same conformations
    teachers = {k: n for k, n in loads.items() if k.startswith("run/teachers/")}
    assert teachers == {"run/teachers/00-pairmlp/model.pt": 1, "run/teachers/01-pairmlp/model.pt": 1}


def label_both_ways(data_path: str, out: str) -> None:
    """On each rank: label one run in memory and one streamed, recording which loop made each."""
    from ekd import distributed

    stage = importlib.import_module("ekd.pipeline.labelling")
    calls, real = [], stage._blocks

    def recorded(unlabelled, *args):
        calls.append(type(unlabelled).__name__)
        return real(unlabelled, *args)

    stage._blocks = recorded
    try:
        for streamed in (False, True):
            run = ekd.Run(Path(out) / ("streamed" if streamed else "memory"), tiny(data_path, **{"data.stream": streamed}), show_progress=False)
            run.teach()
            run.label()
    finally:
        stage._blocks = real  # (the one-rank case runs in the test's own process)
    (Path(out) / f"calls-{distributed.rank()}.json").write_text(json.dumps(calls))


@pytest.mark.parametrize("ranks", [1, 2])
def test_data_in_memory_and_streamed_are_labelled_by_the_same_loop_with_the_same_labels(tmp_path, ranks, monkeypatch):
    from ekd.testing import on_ranks

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # (spawned ranks get this sys.path and import this module)
    write(labelled_molecules(60), tmp_path / "data.h5")  # 300 conformations: two blocks on two ranks
    if ranks == 1:
        label_both_ways(str(tmp_path / "data.h5"), str(tmp_path))
    else:
        on_ranks(2, "test_stage_pipeline:label_both_ways", str(tmp_path / "data.h5"), str(tmp_path))
    for rank in range(ranks):  # every rank went through the one loop, for both kinds of data
        assert json.loads((tmp_path / f"calls-{rank}.json").read_text()) == ["Dataset", "StreamedDataset"]
    memory, streamed = (ekd.Labels.read(tmp_path / kind / "labels.h5") for kind in ("memory", "streamed"))
    for name in ("member_forces", "member_energy"):
        assert np.array_equal(getattr(memory, name), getattr(streamed, name))  # identical, not close
    assert [sorted(p.name for p in (tmp_path / kind / "label").iterdir()) for kind in ("memory", "streamed")] == [["stage.json"]] * 2


def test_the_run_calls_the_public_stage_functions_not_twins():
    import ekd.run

    for name in ("train_ensemble", "label", "train_students"):
        assert getattr(ekd.run, name) is getattr(ekd, name), name
    source = (ROOT / "ekd/run.py").read_text()
    assert all(f"{name}(" in source for name in ("resolve_inputs", "train_ensemble", "label", "train_students", "evaluate_run"))


def _imports(path: Path, module: str) -> set[str]:
    """Every ekd module ``path`` imports, at the top or inside functions (relative to the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ekd")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ekd"):
            for a in node.names:  # 'from ekd import distributed' imports the module ekd.distributed
                sub = f"{node.module}.{a.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).is_file() or (ROOT / sub.replace(".", "/")).is_dir() else node.module)
    return found - {module}


def test_no_import_cycles_and_no_stage_imports_a_later_stage_or_the_run():
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in (ROOT / "ekd").rglob("*.py")}
    graph = {name: {m for m in _imports(path, name) if m in modules} for name, path in modules.items()}
    graph["ekd"] = set()  # (its names are imported lazily, on first use)
    state, cycles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for other in graph[name]:
            if state.get(other) == "open" and not name.startswith(other + "."):  # (a module of a package importing the package is no cycle)
                cycles.append(trail[trail.index(other):] + [other] if other in trail else [name, other])
            elif other not in state:
                visit(other, trail + [other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles
    for k, stage in enumerate(STAGES):
        imported = graph[f"ekd.pipeline.{stage}"]
        assert "ekd.run" not in imported and not imported & {f"ekd.pipeline.{later}" for later in STAGES[k + 1:]}, stage


def test_the_run_class_stays_small_and_never_reassigns_its_config():
    source = (ROOT / "ekd/run.py").read_text()
    run = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Run")
    assert run.end_lineno - run.lineno + 1 <= 200
    assigned = [n for n in ast.walk(run) if isinstance(n, ast.Attribute) and n.attr == "config" and isinstance(n.ctx, ast.Store)]
    assert not assigned
    assert not [p for p in (ROOT / "ekd").rglob("*.py") if "noqa: B018" in p.read_text()]


def test_a_finished_run_reopened_from_its_saved_config_is_not_scored_again(tmp_path):
    write(labelled_molecules(4), tmp_path / "data.h5")
    ekd.distill(tiny(tmp_path / "data.h5"), out=tmp_path / "run", show_progress=False)  # size: auto, saved as what it resolved to
    before = digests(tmp_path / "run")
    ekd.Run.open(tmp_path / "run", show_progress=False).run()
    assert digests(tmp_path / "run") == before  # nothing redone, the report included
