"""A whole run (:class:`ekd.Run`, ``ekd.distill``) on a tiny synthetic set with the example backend."""

import importlib
import json
import sys

import numpy as np
import pytest
import yaml

import ekd
import ekd.parallel as parallel
import ekd.provenance as provenance
from ekd.cli import main
from ekd.data import write
from ekd.errors import Cancelled, ConfigError
from ekd.report import HELD_OUT
from ekd.runconfig import RunConfig
from ekd.testing import labelled_molecules

readers = importlib.import_module("ekd.data.readers")  # (ekd.data.readers is also a function's name)
frames_io = importlib.import_module("ekd.data.frames")._IO  # what Dataset.read calls
TINY = {"width": 8, "n_rbf": 8}


@pytest.fixture
def data_path(tmp_path):
    path = tmp_path / "data.h5"
    write(labelled_molecules(8), path)
    return path


def config_for(data_path, **overrides):
    return RunConfig.load(None, {
        **({"data.path": str(data_path)} if data_path else {}),
        "teachers.spec": "pairmlp:2",
        "teachers.options": {"pairmlp": TINY},
        "student.backend": "pairmlp",
        "student.options": TINY,
        "student.seeds": 2,
        "student.baseline": True,
        "train": {"batch_size": 8, "dtype": "float64", "device": "cpu"},
        "epochs": 3,
        "jobs": 1,
        **overrides,
    })


def mtimes(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.glob("**/model.pt")}


def test_a_run_exposes_its_parts_as_objects_and_reopens(tmp_path, data_path):
    run = ekd.distill(config_for(data_path), out=tmp_path / "run", show_progress=False)
    report = run.report
    assert set(report.models) == {"teacher 00-pairmlp", "teacher 01-pairmlp", "teacher ensemble", "student seed-200", "student seed-201", "baseline seed-200", "baseline seed-201"}
    held_out = report.held_out
    students = [report.scores(f"student seed-{s}").force_mae for s in (200, 201)]
    baselines = [report.scores(f"baseline seed-{s}").force_mae for s in (200, 201)]
    assert held_out.student_force_mae.mean == pytest.approx(np.mean(students)) and held_out.student_force_mae.n == 2
    assert held_out.student_over_baseline == pytest.approx(np.mean(students) / np.mean(baselines))
    assert held_out.student_over_teacher_ensemble == pytest.approx(np.mean(students) / report.scores("teacher ensemble").force_mae)
    assert (tmp_path / "run/report.md").read_text().startswith("# EKD run report")
    assert (tmp_path / "run/plots/teacher_ensemble/parity_held-out_test.png").is_file()
    assert json.loads((tmp_path / "run/report.json").read_text())["format_version"] == 1

    again = ekd.load(tmp_path / "run")
    assert isinstance(again, ekd.Run) and again.report == ekd.Report.read(tmp_path / "run/report.json")
    assert again.report.to_dict() == report.to_dict()
    assert [m.path.parent.name for m in again.students] == ["seed-200", "seed-201"] and len(again.baselines) == 2
    assert again.teachers.names == ["00-pairmlp", "01-pairmlp"]
    data = again.data
    independent = np.mean([ekd.load(tmp_path / f"run/teachers/{n}").predict(data).forces for n in again.teachers.names], axis=0)
    np.testing.assert_allclose(again.labels.mean_forces, independent, rtol=0, atol=1e-10)  # the ensemble mean labels the student
    again.labels.check_matches(data)


def test_the_headline_is_students_over_baselines_and_judged_by_the_spread():
    student, baseline = ekd.SeedSpread.of([1.0, 1.2]), ekd.SeedSpread.of([2.0, 2.4])
    headline = ekd.Headline.of(student, baseline, ensemble=1.0)
    assert headline.student_over_baseline == pytest.approx(1.1 / 2.2) and headline.difference_exceeds_spread
    assert headline.student_over_teacher_ensemble == pytest.approx(1.1)
    assert not ekd.Headline.of(student, ekd.SeedSpread.of([1.1, 1.5]), None).difference_exceeds_spread  # 0.2 < spread 0.28
    worse = ekd.Headline.of(ekd.SeedSpread.of([4.7, 4.8]), ekd.SeedSpread.of([3.4, 3.5]), None)  # a student worse than its baseline is flagged too
    assert worse.difference_exceeds_spread and worse.student_over_baseline > 1
    assert ekd.Headline.of(student, None, None).student_over_baseline is None


def test_one_distill_reads_and_hashes_the_dataset_once(tmp_path, data_path, monkeypatch):
    reads, hashes, opens = [], [], []
    real_read, real_sha = readers.read, provenance.sha256_file
    monkeypatch.setitem(frames_io, "read", lambda path, *a, **k: reads.append(str(path)) or real_read(path, *a, **k))
    monkeypatch.setattr(readers, "sha256_file", lambda path, *a: hashes.append(str(path)) or real_sha(path, *a))
    sys.addaudithook(lambda event, args: opens.append(event) if event == "open" and str(args[0]) == str(data_path) else None)
    ekd.distill(config_for(data_path), out=tmp_path / "run", show_progress=False)
    assert reads == [str(data_path)] and hashes == [str(data_path)]
    assert len(opens) == 1  # the hash's open; the HDF5 reader opens it once more in C


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.pathh": "x"}, r"config.data.pathh: unknown option; allowed: format, energy_key, .*, path, val_fraction"),
        ({"teachers.options": {"pairmlp": {"widht": 8}}}, r"teachers.options.pairmlp.widht: unknown option; allowed: cutoff, n_rbf, width, embedding"),
        ({"teachers.variations": {"pairmlp": [{"n_rbff": 8}]}}, r"teachers.variations.pairmlp\[0\].n_rbff: unknown option; allowed: cutoff"),
        ({"student.options": {"widht": 8}}, r"student.options.widht: unknown option; allowed: cutoff, n_rbf, width, embedding"),
        ({"student.train": {"lrr": 0.1}}, r"student.train.lrr: unknown option; allowed: epochs, batch_size, lr"),
        ({"student.baseline_train": {"epoch": 3}}, r"student.baseline_train.epoch: unknown option"),
        ({"evaluate.md": {"step": 3}}, r"config.evaluate.md.step: unknown option; allowed: steps, timestep_fs"),
        ({"train": {"batchsize": 3}}, r"teachers.train.batchsize: unknown option"),
        ({"teachers.options": {"anii": {}}}, r"teachers.options.anii: no 'anii' teachers in the spec 'pairmlp:2'"),
        ({"train": {"val_fraction": 0.2}}, r"train.val_fraction: a run sets this with data.val_fraction"),
        ({"student.train": {"seed": 3}}, r"student.train.seed: a run sets this with teachers.seed and student.seed"),
        ({"teachers.train": {"force_weight": 1.0}}, r"teachers.train.force_weight: teachers and baselines never see forces"),
        ({"train": {"force_weight": 1.0}}, r"^train.force_weight: teachers and baselines never see forces or stresses; the student.s is student.train.force_weight"),
        ({"student.backend": "pairmlpp"}, r"unknown backend 'pairmlpp'; installed:"),
    ],
)
def test_a_mistake_in_any_section_fails_before_any_data_is_read(tmp_path, data_path, monkeypatch, overrides, message):
    monkeypatch.setitem(frames_io, "read", lambda *a, **k: pytest.fail("data were read before the config was checked"))
    with pytest.raises(ekd.EkdError, match=message):
        ekd.distill(config_for(data_path, **overrides), out=tmp_path / "run", show_progress=False)


def test_rerun_skips_finished_stages_and_config_changes_redo_only_dependents(tmp_path, data_path):
    run_dir = tmp_path / "run"
    first_report = ekd.distill(config_for(data_path), out=run_dir, show_progress=False).report
    first = mtimes(run_dir)
    report_written = (run_dir / "report.json").stat().st_mtime_ns
    assert ekd.distill(config_for(data_path), out=run_dir, show_progress=False).report.models == first_report.models
    assert mtimes(run_dir) == first and (run_dir / "report.json").stat().st_mtime_ns == report_written  # not even re-scored
    rescored = ekd.distill(config_for(data_path, **{"evaluate.refit_offsets": True}), out=run_dir, show_progress=False).report
    assert mtimes(run_dir) == first and rescored.config["evaluate"]["refit_offsets"] and rescored.models != first_report.models
    ekd.distill(config_for(data_path, **{"student.weighting": "inverse_spread"}), out=run_dir, show_progress=False)
    again = mtimes(run_dir)
    assert all(again[k] == first[k] for k in first if k.startswith(("teachers", "baselines")))
    assert all(again[k] != first[k] for k in first if k.startswith("students"))


def test_a_changed_teacher_option_is_never_reused_by_label(capsys, tmp_path, data_path):
    run_dir = tmp_path / "run"
    ekd.Run(run_dir, config_for(data_path), show_progress=False).teach()
    ekd.Run(run_dir, config_for(data_path), show_progress=False).label()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["teachers"]["options"]["pairmlp"]["width"] = 12
    (tmp_path / "wider.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(SystemExit) as exit_info:
        main(["label", "--out", str(run_dir), "--config", str(tmp_path / "wider.yaml")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "teacher 00-pairmlp was made with other settings or data than this config" in err
    assert "run 'ekd teach --out" in err and len(err.strip().splitlines()) == 1
    before = mtimes(run_dir)
    run = ekd.distill(config_for(data_path, **{"teachers.options": {"pairmlp": {"width": 12, "n_rbf": 8}}}), out=run_dir, show_progress=False)
    assert all(mtimes(run_dir)[k] != before[k] for k in before if k.startswith("teachers"))  # retrained
    assert run.teachers.models[0].options.width == 12


def test_the_outlier_rule_leaves_a_failed_teacher_out_of_the_labels(tmp_path, data_path):
    run = ekd.Run(tmp_path / "run", config_for(data_path, **{"teachers.spec": "pairmlp:4", "teachers.variations": {}}), show_progress=False)
    run.teach()
    history = tmp_path / "run/teachers/02-pairmlp/history.csv"
    rows = history.read_text().splitlines()
    history.write_text("\n".join([rows[0]] + [",".join(["1"] + ["1000"] * (len(r.split(",")) - 1)) for r in rows[1:]]) + "\n")  # a stuck training
    run = ekd.Run.open(tmp_path / "run", show_progress=False)  # ('ekd label' later: the teachers are read from their folders)
    assert run.teachers.left_out.keys() == {"02-pairmlp"} and len(run.teachers.members) == 4
    labels = run.label()
    assert [t.spec for t in labels.teachers] == ["00-pairmlp", "01-pairmlp", "03-pairmlp"]
    assert labels.left_out[0]["name"] == "02-pairmlp" and "the median of the pairmlp teachers" in labels.left_out[0]["reason"]
    kept = [ekd.load(tmp_path / f"run/teachers/{n}").predict(run.data).forces for n in ("00-pairmlp", "01-pairmlp", "03-pairmlp")]
    np.testing.assert_allclose(labels.mean_forces, np.mean(kept, axis=0), rtol=0, atol=1e-10)
    assert run.teachers.names == ["00-pairmlp", "01-pairmlp", "03-pairmlp"]


def test_progress_events_and_a_clean_cancel_that_resumes(tmp_path, data_path):
    events = []
    ekd.distill(config_for(data_path), out=tmp_path / "straight", on_progress=events.append, show_progress=False)
    epochs = [e for e in events if e.epoch is not None]
    assert {(e.stage, e.model) for e in epochs} >= {("teach", "teachers/00-pairmlp"), ("students and baselines", "baselines/seed-201")}
    assert all(e.epochs == 3 and "val_loss" in e.metrics for e in epochs)
    assert [e.stage for e in events if e.finished] == ["teach", "label", "students", "evaluate"]

    def stop_in_students(event):
        return not (event.model == "students/seed-200" and event.epoch == 2)

    with pytest.raises(Cancelled, match="students/seed-200 epoch 2"):
        ekd.distill(config_for(data_path), out=tmp_path / "cancelled", on_progress=stop_in_students, show_progress=False)
    assert not (tmp_path / "cancelled/report.json").exists()
    resumed = ekd.distill(config_for(data_path), out=tmp_path / "cancelled", show_progress=False).report
    assert resumed.models == ekd.Report.read(tmp_path / "straight").models


def test_interrupted_run_finishes_with_the_same_report(tmp_path, data_path, monkeypatch):
    straight = ekd.distill(config_for(data_path), out=tmp_path / "straight", show_progress=False).report
    real_train = parallel.train
    calls = []

    def interrupt_first_student(backend, *args, info=None, on_epoch_end=None, **kwargs):
        calls.append(info["role"])
        if info["role"] == "student" and calls.count("student") == 1:
            on_epoch_end = lambda epoch, row: (_ for _ in ()).throw(KeyboardInterrupt) if epoch == 2 else None  # noqa: E731
        return real_train(backend, *args, info=info, on_epoch_end=on_epoch_end, **kwargs)

    monkeypatch.setattr(parallel, "train", interrupt_first_student)
    with pytest.raises(KeyboardInterrupt):
        ekd.distill(config_for(data_path), out=tmp_path / "resumed", show_progress=False)
    teachers_before = {k: v for k, v in mtimes(tmp_path / "resumed").items() if k.startswith("teachers")}
    monkeypatch.setattr(parallel, "train", real_train)
    resumed = ekd.distill(config_for(data_path), out=tmp_path / "resumed", show_progress=False).report
    assert {k: v for k, v in mtimes(tmp_path / "resumed").items() if k.startswith("teachers")} == teachers_before
    assert resumed.models == straight.models


def test_cli_and_parallel_jobs_give_the_api_s_metrics_and_leave_no_process(capsys, tmp_path, data_path):
    import multiprocessing

    api = ekd.distill(config_for(data_path), out=tmp_path / "api", show_progress=False).report
    config = tmp_path / "config.yaml"
    config.write_text((tmp_path / "api/config.yaml").read_text())
    main(["run", "--config", str(config), "--out", str(tmp_path / "cli"), "--jobs", "2"])
    cli = ekd.Report.read(tmp_path / "cli")
    assert cli.models.keys() == api.models.keys()
    for name in api.models:
        for metric in ("energy_mae", "force_mae", "relative_energy_mae"):
            assert getattr(cli.scores(name), metric) == pytest.approx(getattr(api.scores(name), metric), rel=1e-6), (name, metric)
    assert "student/baseline" in capsys.readouterr().out
    assert multiprocessing.active_children() == []


def test_parallel_trainings_match_serial_ones(tmp_path, data_path):
    serial = ekd.Run(tmp_path / "serial", config_for(data_path), show_progress=False).teach()
    side_by_side = ekd.Run(tmp_path / "parallel", config_for(data_path, jobs=2), show_progress=False)
    ensemble = side_by_side.teach()
    data = side_by_side.data
    for alone, together in zip(serial.models, ensemble.models):
        np.testing.assert_allclose(together.predict(data).forces, alone.predict(data).forces, rtol=0, atol=1e-8)
    before = mtimes(tmp_path / "parallel")
    side_by_side.teach()
    assert mtimes(tmp_path / "parallel") == before  # finished members are not started again


def test_single_member_and_missing_teachers(tmp_path, data_path):
    run = ekd.Run(tmp_path / "run", config_for(data_path), show_progress=False)
    assert run.teach(member=1).names == ["01-pairmlp"]
    with pytest.raises(ConfigError, match="teacher 00-pairmlp is not trained yet"):
        run.label()
    with pytest.raises(ConfigError, match="--member 5: the ensemble has members 0..1"):
        run.teach(member=5)


def test_a_run_that_can_score_nothing_says_so_before_training(tmp_path, data_path):
    with pytest.raises(ConfigError, match="nothing to score: data.test_fraction is 0.0 .* no evaluation file is given"):
        ekd.distill(config_for(data_path, **{"data.test_fraction": 0.0}), out=tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run/teachers").exists()
    with pytest.raises(ekd.DataError, match="nowhere.h5: no such file"):
        ekd.distill(config_for(data_path, **{"evaluate.files": [str(tmp_path / "nowhere.h5")]}), out=tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run/teachers").exists()


def test_evaluation_files_are_scored_and_yaml_paths_are_relative_to_the_yaml(tmp_path, data_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    write(labelled_molecules(2, seed=9), folder / "extra.h5")
    (folder / "run.yaml").write_text(f"data: {{path: ../{data_path.name}}}\nevaluate: {{files: [extra.h5]}}\n")
    monkeypatch.chdir(tmp_path.parent)  # somewhere else
    config = RunConfig.load(folder / "run.yaml")
    assert config.data.path == str(data_path) and config.evaluate.files == [str(folder / "extra.h5")]
    run = ekd.distill(config.model_copy(update={k: v for k, v in config_for(data_path).__dict__.items() if k not in ("data", "evaluate")}), out=tmp_path / "run", show_progress=False)
    assert set(run.report.headline) == {HELD_OUT, "extra"} and run.report.scores("student seed-200", "extra").n_conformations == 10


def test_md_stability_in_the_report_when_asked(tmp_path, data_path):
    run = ekd.distill(config_for(data_path, **{"evaluate.md": {"steps": 20, "max_molecules": 2}}), out=tmp_path / "run", show_progress=False)
    md = run.report.md_stability
    assert set(md["models"]) == {"teacher ensemble", "student seed-200", "student seed-201", "baseline seed-200", "baseline seed-201"}
    assert md["settings"]["steps"] == 20 and all(r["n_molecules"] == 2 for r in md["models"].values())
    assert "## MD stability" in (tmp_path / "run/report.md").read_text()
    only = {"evaluate.md": {"steps": 20, "max_molecules": 2}, "evaluate.md_models": ["student"]}
    assert set(ekd.distill(config_for(data_path, **only), out=tmp_path / "run", show_progress=False).report.md_stability["models"]) == {"student seed-200", "student seed-201"}
    assert ekd.distill(config_for(data_path), out=tmp_path / "run", show_progress=False).report.md_stability is None  # off by default


def test_atoms_in_memory_become_the_run_s_data_and_the_run_reopens(tmp_path):
    images = labelled_molecules(8).to_atoms()
    run = ekd.distill(config_for(None), data=images, out=tmp_path / "run", show_progress=False)
    reopened = ekd.Run.open(tmp_path / "run")
    assert reopened.config.data.path == str((tmp_path / "run/data.h5").resolve())
    np.testing.assert_array_equal(reopened.data.positions, np.concatenate([a.positions for a in images]))
    np.testing.assert_array_equal(reopened.data.energy, [a.get_potential_energy() for a in images])
    reopened.labels.check_matches(reopened.data)
    assert reopened.run().models == run.report.models  # every stage is current: nothing retrains


def test_a_stage_says_how_long_it_will_take_and_how_to_shorten_a_long_one():
    from ekd.progress import StageEstimate

    lines = []
    estimate = StageEstimate("students", total_epochs=600, workers=2, write=lines.append)
    for seconds in (10.0, 12.0):
        estimate.epoch_done(seconds)
    assert lines == []  # not before three epochs
    estimate.epoch_done(11.0)
    estimate.epoch_done(11.0)
    assert len(lines) == 1 and "students: at most 55 min left (11.00 s per epoch, 600 epochs in all, 2 at a time" in lines[0]
    assert "--epochs" not in lines[0]
    long = StageEstimate("teach", total_epochs=2000, workers=1, write=lines.append)
    for _ in range(3):
        long.epoch_done(5.0)
    assert "at most 2.8 h left" in lines[-1] and "--epochs N bounds every model" in lines[-1]


def test_model_size_follows_the_device_is_saved_and_separates_artifacts(tmp_path, data_path):
    from ekd.pipeline import student_jobs
    from ekd.plugins import backends, get_backend

    if "mace" not in backends():
        pytest.skip("needs the mace backend")
    small = config_for(data_path, **{"student.backend": "mace", "student.options": {"r_max": 4.0}, "teachers.spec": "mace:2", "teachers.options": {}})
    assert small.resolved_size() == "small"  # this machine has no GPU: sized for a CPU
    assert small.student_options == {**get_backend("mace").small, "r_max": 4.0}  # your options win
    upstream = small.model_copy(update={"size": "upstream"})
    assert upstream.student_options == {"r_max": 4.0}
    runs = {name: ekd.Run(tmp_path / name, config, show_progress=False) for name, config in (("small", small), ("upstream", upstream))}
    assert runs["small"].members[0].options["hidden_irreps"] == "32x0e + 32x1o" and "hidden_irreps" not in runs["upstream"].members[0].options
    digests = {name: student_jobs(run.directory, run.config, *run.split[:2], {}, False)[0].stage.inputs_sha256 for name, run in runs.items()}
    assert digests["small"] != digests["upstream"]  # a laptop's and a GPU node's students never mix
    assert "ekd: model size small (sized for a CPU" in runs["small"].describe_sizes()
    runs["small"]._save_config()
    assert yaml.safe_load((tmp_path / "small/config.yaml").read_text())["size"] == "small"


def test_an_epoch_is_timed_on_conformations_drawn_from_all_the_data_and_scaled_by_atoms(tmp_path, monkeypatch):
    """Data sorted smallest molecule first (as files grouped by molecule often are): a step that
    costs 1 ms per atom gives exactly 1 ms per atom of the epoch, not the first molecules' cost."""
    import types

    import ekd.estimate as estimate
    from ekd.parallel import TrainJob
    from ekd.stages import Stage
    from ekd.train import TrainConfig

    frames = labelled_molecules(count_per_molecule=20).without_forces()
    frames = frames.subset(np.argsort(frames.sizes, kind="stable"))
    train_frames, val_frames = frames.subset(np.arange(100)), frames.subset(np.arange(100, len(frames)))
    assert train_frames.sizes[:32].mean() < 0.8 * train_frames.sizes.mean()  # the first batch is not typical
    clock, timed_atoms = [0.0], []
    monkeypatch.setattr(estimate, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def step(model, batch, optimizer, config):
        clock[0] += 1e-3 * len(batch.numbers)
        timed_atoms.append(len(batch.numbers))

    monkeypatch.setattr(estimate, "optimizer_step", step)
    job = TrainJob(Stage(tmp_path / "t", "x"), "pairmlp", train_frames, val_frames, TrainConfig(batch_size=8, epochs=1), {}, {})
    assert estimate.epoch_seconds(job) == pytest.approx(1e-3 * (train_frames.n_atoms + val_frames.n_atoms / 3))
    assert sum(timed_atoms) / 32 > 1.1 * train_frames.sizes[:32].mean()  # timed on a draw, not on the first molecules


def test_the_estimate_counts_each_unfinished_training_once_per_epoch_and_worker(tmp_path, data_path, monkeypatch):
    """Teachers: 2 members x 3 epochs; students and baselines: 2 seeds each x 3 epochs; one at a
    time. A finished stage drops out of the estimate."""
    import ekd.estimate as estimate

    timed = []

    def seconds(job, threads=1, steps=3):
        timed.append((job.backend, job.config.force_weight > 0))
        return 2.0 if job.config.force_weight > 0 else 1.0

    monkeypatch.setattr(estimate, "epoch_seconds", seconds)
    run = ekd.Run(tmp_path / "run", config_for(data_path), show_progress=False)
    assert run.estimate() == {"teach": 2 * 3 * 1.0, "students and baselines": 2 * 3 * 2.0 + 2 * 3 * 1.0}
    assert sorted(timed) == [("pairmlp", False), ("pairmlp", True)]  # seeds of one kind are timed once
    run.teach()
    assert run.estimate()["teach"] == 0.0
    assert "about 18 s here at their epoch bounds (students and baselines 18 s" in run.describe_estimate()


def test_a_timed_epoch_restores_the_thread_count(tmp_path, data_path):
    import torch

    from ekd.estimate import epoch_seconds
    from ekd.pipeline import student_jobs

    run = ekd.Run(tmp_path / "run", config_for(data_path), show_progress=False)
    job = student_jobs(run.directory, run.config, *run.split[:2], {})[0]
    before = torch.get_num_threads()
    assert epoch_seconds(job, threads=before + 1) > 0  # another count than the process's
    assert torch.get_num_threads() == before


def test_a_held_out_file_is_the_whole_test_set_and_data_can_name_their_own(tmp_path, data_path):
    data = ekd.Dataset.read(data_path)
    write(labelled_molecules(2, seed=9), tmp_path / "held.h5")
    write(data.with_metadata(held_out="held.h5"), tmp_path / "named.h5")  # as embedded:ccsdt names its CC forces
    run = ekd.distill(config_for(tmp_path / "named.h5"), out=tmp_path / "run", show_progress=False)
    train, validation, test = run.split
    assert len(train) + len(validation) == len(data) and len(test) == 10  # nothing cut from the data for testing
    assert ekd.Run.open(tmp_path / "run").config.data.test_path == str(tmp_path / "held.h5")
    assert run.report.scores("student seed-200", HELD_OUT).n_conformations == 10
    calibration = ekd.Report.read(tmp_path / "run").calibration[HELD_OUT]  # the spread against each model's error, kept in report.json
    assert set(calibration) == {"teacher ensemble", "student seed-200", "student seed-201"}
    assert sum(b["n"] for b in calibration["student seed-200"]["per_conformation"]["bins"]) == 10
    assert (tmp_path / "run/plots/calibration_held-out_test.png").is_file() and "## Calibration" in (tmp_path / "run/report.md").read_text()
    held = ekd.Dataset.read(tmp_path / "held.h5")
    write(held.concatenate([held, data.subset([3])]), tmp_path / "leaky.h5")
    with pytest.raises(ekd.DataError, match=r"leaky.h5: 1 of its 11 held-out conformations are also in the training data"):
        ekd.distill(config_for(data_path, **{"data.test_path": str(tmp_path / "leaky.h5")}), out=tmp_path / "leaky", show_progress=False)
    assert not (tmp_path / "leaky/teachers").exists()


def test_a_warm_started_run_starts_every_model_from_its_namesake(tmp_path, data_path):
    ekd.distill(config_for(data_path), out=tmp_path / "first", show_progress=False)
    ekd.distill(config_for(data_path, warm_start=str(tmp_path / "first")), out=tmp_path / "second", show_progress=False)
    for role, name in (("teachers", "01-pairmlp"), ("students", "seed-201"), ("baselines", "seed-200")):
        started = ekd.load(tmp_path / "second" / role / name / "model.pt").info["train_config"]["init_from"]
        assert started == str(tmp_path / "first" / role / name / "model.pt")
    with pytest.raises(ConfigError, match=r"warm_start: .*first/teachers/02-pairmlp/model.pt does not exist"):
        ekd.distill(config_for(data_path, warm_start=str(tmp_path / "first"), **{"teachers.spec": "pairmlp:3"}), out=tmp_path / "third", show_progress=False)


def test_a_run_on_two_ranks_spreads_the_members_shards_the_labels_and_matches_one_process(tmp_path, data_path):
    from ekd.testing import on_ranks

    config = config_for(data_path, **{"train": {"batch_size": 8, "dtype": "float64", "device": "cpu"}})
    one = ekd.distill(config, out=tmp_path / "one", show_progress=False)
    on_ranks(2, "ekd.run:distill", config, out=tmp_path / "two", show_progress=True)  # rank 0 alone prints (and times the estimate)
    two = ekd.Run.open(tmp_path / "two")
    assert [ekd.load(tmp_path / "two/teachers" / m / "model.pt").info["ranks"] for m in ("00-pairmlp", "01-pairmlp")] == [1, 1]  # one member per rank
    assert ekd.load(tmp_path / "two/students/seed-200/model.pt").info["ranks"] == 1
    for name in ("member_forces", "member_energy"):
        np.testing.assert_allclose(getattr(two.labels, name), getattr(one.labels, name), rtol=0, atol=1e-10)
    assert sorted(p.name for p in (tmp_path / "two/label").iterdir()) == ["stage.json"]  # each rank's blocks, removed once merged
    assert two.report.held_out.student_force_mae.mean == pytest.approx(one.report.held_out.student_force_mae.mean, rel=1e-8)
    assert not list((tmp_path / "two").glob("**/*.tmp*"))
    on_ranks(2, "ekd.run:distill", config.model_copy(update={"data": config.data.model_copy(update={"stream": True})}), out=tmp_path / "streamed")
    streamed = ekd.Run.open(tmp_path / "streamed")  # each rank labels every other block; rank 0 writes the file
    np.testing.assert_allclose(ekd.Labels.read(tmp_path / "streamed/labels.h5").member_forces, one.labels.member_forces, rtol=0, atol=1e-10)
    assert sorted(p.name for p in (tmp_path / "streamed/label").iterdir()) == ["stage.json"] and not list((tmp_path / "streamed").glob("**/*.tmp*"))
    assert streamed.report.held_out.student_force_mae.mean == pytest.approx(one.report.held_out.student_force_mae.mean, rel=1e-8)


def test_the_batch_cache_bound_changes_no_stage_and_no_checkpoint(tmp_path, data_path):
    from ekd.pipeline import student_jobs, teacher_jobs

    configs = [config_for(data_path, **{"train": {"batch_cache_mb": mb}}) for mb in (2048, 0)]
    assert [c.train_config("teachers").batch_cache_mb for c in configs] == [2048, 0]
    runs = [ekd.Run(tmp_path / "run", config, show_progress=False) for config in configs]
    teachers = [[job.stage.inputs_sha256 for job in teacher_jobs(tmp_path, run.config, run.members, *run.split[:2])] for run in runs]
    students = [[job.stage.inputs_sha256 for job in student_jobs(tmp_path, run.config, *run.split[:2], {}, False)] for run in runs]
    assert teachers[0] == teachers[1] and students[0] == students[1]  # a run resumed with another bound retrains nothing


def test_a_streamed_run_scores_as_the_run_in_memory_with_its_data_and_labels_left_on_disk(tmp_path, data_path, monkeypatch):
    import dataclasses

    import ekd.pipeline.evaluate
    from ekd.active import grow

    memory = ekd.distill(config_for(data_path), out=tmp_path / "memory", show_progress=False)
    whole = lambda *args, **kwargs: pytest.fail("read whole")  # noqa: E731
    monkeypatch.setitem(frames_io, "read", whole)
    monkeypatch.setattr(ekd.Labels, "read", classmethod(whole))
    monkeypatch.setattr(ekd.pipeline.evaluate, "PLOT_SAMPLE", 3)  # parity plots and calibration from 3 of the test split's conformations
    streamed = ekd.distill(config_for(data_path, **{"data.stream": True}), out=tmp_path / "streamed", show_progress=False)
    assert isinstance(streamed.data, ekd.data.StreamedDataset)
    assert list(streamed.report.models) == list(memory.report.models)
    for name, scores in memory.report.models.items():  # every model: same labels, same trainings, same scores over every test conformation
        for key, value in dataclasses.asdict(scores.datasets[HELD_OUT]).items():
            assert (value is None) == (getattr(streamed.report.models[name].datasets[HELD_OUT], key) is None), (name, key)
            assert value is None or getattr(streamed.report.models[name].datasets[HELD_OUT], key) == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
    calibration = streamed.report.calibration[HELD_OUT]["student seed-200"]["per_conformation"]["bins"]
    assert sum(b["n"] for b in calibration) == 3 < memory.report.models["student seed-200"].datasets[HELD_OUT].n_conformations
    assert sorted(p.name for p in (tmp_path / "streamed/label").iterdir()) == ["stage.json"]  # the labelled blocks, removed once written
    monkeypatch.undo()
    for name in ("member_forces", "member_energy"):
        assert np.array_equal(getattr(ekd.Labels.read(tmp_path / "streamed/labels.h5"), name), getattr(memory.labels, name))
    with pytest.raises(ConfigError, match=r"reading options \(energy_key\) do not apply with data.stream"):
        ekd.Run(tmp_path / "x", config_for(data_path, **{"data.stream": True, "data.energy_key": "energy"})).data
    with pytest.raises(ConfigError, match=r"student.weighting: inverse_spread needs the labels in memory"):
        ekd.Run(tmp_path / "x", config_for(data_path, **{"data.stream": True, "student.weighting": "inverse_spread"})).data
    with pytest.raises(ConfigError, match=r"ekd grow adds conformations to its data in memory; data.stream \(--stream\) does not apply"):
        grow(tmp_path / "grow", config_for(data_path, **{"data.stream": True}))
