"""The ``ekd`` command line. Each command parses its options and calls its Python twin.

User mistakes raise :class:`ekd.errors.EkdError`; :func:`main` prints them as one line and exits
with status 2 (``--debug`` or ``EKD_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ekd.errors import ConfigError, EkdError

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ekd")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """ekd: ensemble knowledge distillation of ML interatomic potentials.

    Units at every boundary: positions Å, energies eV, forces eV/Å; reports in kcal/mol.
    """
    if debug:
        os.environ["EKD_DEBUG"] = "1"
    from ekd.distributed import init_from_environment

    init_from_environment()  # under torchrun: join its process group (docs/scaling.md)


def read_options(command):
    """Options that tell a reader how to interpret a file (shared by every command that reads)."""
    options = [
        click.option("--format", "format_", help="Reader name (default: detect from the file layout)."),
        click.option("--energy-key", help="Stored energy to use, e.g. 'ccsd(t)_cbs.energy'."),
        click.option("--force-key", help="Stored forces to use; 'none' reads no forces."),
        click.option("--force-sign", type=click.Choice(["+1", "-1"]), help="+1: stored array is forces; -1: gradients."),
        click.option("--energy-unit", help="Unit of stored energies: eV, meV, Ha, kcal/mol, kJ/mol."),
        click.option("--molecule-key", help="Per-frame key holding the molecule id (ASE formats)."),
        click.option("--stress-key", help="Stored stress to use (ASE formats; ASE's sign, energy unit/Å³); 'none' reads none."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _read_options(format_, energy_key, force_key, force_sign, energy_unit, molecule_key, stress_key):
    from ekd.data import ReadOptions

    return ReadOptions(
        format=format_,
        energy_key=energy_key,
        force_key="" if force_key == "none" else force_key,
        force_sign=None if force_sign is None else int(force_sign),
        energy_unit=energy_unit,
        molecule_key=molecule_key,
        stress_key="" if stress_key == "none" else stress_key,
    )


def _read(path, **read_kwargs):
    from ekd.data import DEFAULT_DATASET, read
    from ekd.data.embedded import resolve

    path = resolve(path) if path else DEFAULT_DATASET
    return path, read(path, _read_options(**read_kwargs))


@cli.group()
def data() -> None:
    """Inspect and convert dataset files."""


@data.command("info")
@click.argument("path", required=False)
@read_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def data_info(path, as_json, **read_kwargs) -> None:
    """Summarize a dataset file (default: the embedded reference set)."""
    from ekd.data.inspect import summarize

    path, frames = _read(path, **read_kwargs)
    summary = summarize(frames, path)
    check = summary["force_sign_check"]
    if check["verdict"] == "flipped":
        click.echo(
            f"warning: {path}: energies and forces disagree in sign (slope {check['slope']:+.2f} over "
            f"{check['n_pairs']} nearby pairs); the stored array looks like gradients: try --force-sign "
            f"{'+1' if summary['force_sign'] == -1 else '-1'}",
            err=True,
        )
    elif check["verdict"] == "scale":
        click.echo(f"warning: {path}: the energies change {abs(check['slope']):.3g} times as much as the forces predict ({check['n_pairs']} nearby "
                   "pairs): energies and forces are in different units (23.06: kcal/mol energies read as eV; --energy-unit sets theirs)", err=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [
        ("file", f"{summary['path']} ({summary['format']})"),
        ("conformations", summary["n_conformations"]),
        ("molecules", summary["n_molecules"]),
        ("elements", " ".join(summary["elements"])),
        ("atoms per conformation", f"{summary['atoms_min']}-{summary['atoms_max']}"),
        ("level of theory", summary["level_of_theory"] or "not recorded"),
        ("energy key", summary["energy_key"] or "none"),
        ("force key", f"{summary['force_key']} (sign {summary['force_sign']:+d})" if summary["has_forces"] else "none"),
        ("periodic", f"{summary['n_periodic']} of {summary['n_conformations']} (pbc " + ", ".join(f"{k}: {n}" for k, n in summary["periodic_axes"].items()) + ")"
         if summary["n_periodic"] else "none (molecules)"),
        ("stress", "yes (periodic conformations)" if summary["has_stress"] else "none"),
        ("units (as read)", "positions Å, energies eV, forces eV/Å, stress eV/Å³"),
        ("available keys", ", ".join(summary["available_keys"])),
    ]
    if summary["has_energies"]:
        rows.append(("energy range", f"{summary['energy_min_eV']:.4f} to {summary['energy_max_eV']:.4f} eV"))
    if check["n_pairs"]:
        rows.append(("force sign check", f"{check['verdict']} (slope {check['slope']:+.3f}, {check['n_pairs']} pairs)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@data.command("convert")
@click.argument("source")
@click.argument("target")
@read_options
def data_convert(source, target, **read_kwargs) -> None:
    """Convert SOURCE to TARGET: .h5 (ekd HDF5, what --stream reads; the ANI releases are copied
    one molecule at a time, so files larger than memory convert) or .xyz (extended XYZ), in eV and Å."""
    from ekd.data import convert, write
    from ekd.data.embedded import resolve

    if Path(target).suffix.lower() in (".h5", ".hdf5"):
        written = convert(resolve(source), target, _read_options(**read_kwargs))
    else:
        _, frames = _read(source, **read_kwargs)
        write(frames, target)
        written = len(frames)
    click.echo(f"wrote {written} conformations to {target}")


@cli.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def backends_command(as_json) -> None:
    """List installed backends (name, version, package, elements) and broken plugins."""
    from ekd.plugins import backend_infos, plugin_failures

    rows, failures = backend_infos(), plugin_failures()
    if as_json:
        click.echo(json.dumps({"backends": rows, "failed_plugins": failures}, indent=2))
        return
    header = ("name", "version", "package", "elements", "capabilities")
    if rows:
        widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
        for line in [dict(zip(header, header))] + rows:
            click.echo("  ".join(f"{str(line[h]):<{w}}" for h, w in zip(header, widths)).rstrip())
    else:
        click.echo("no backends installed (install a plugin, e.g. ./install.sh core ani)")
    from ekd.reference import references

    click.echo(f"reference calculators: {', '.join(sorted(references())) or 'none'} (ekd reference --calculator NAME)")
    for plugin, error in failures.items():
        click.echo(f"plugin {plugin} failed to load: {error}", err=True)


@cli.command("train")
@click.option("--backend", required=True, help="Installed backend name (see 'ekd backends').")
@click.option("--data", "data_path", help="Dataset file (default: the embedded reference set).")
@click.option("--forces", is_flag=True, help="Also train on the data's reference forces.")
@click.option("--out", required=True, help="Run directory (an unfinished run there is resumed).")
@click.option("--config", "config_path", help="YAML with 'train' and 'options' sections.")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs (overrides the config).")
@click.option("--seed", type=int, help="Seed of the split, the initialisation and the batch order.")
@click.option("--force-weight", type=float, help="Weight of the force term (with --forces; default 0.1).")
@click.option("--stream", is_flag=True, help="Read the data lazily, a batch at a time (an ekd HDF5 file: 'ekd data convert' makes one).")
@read_options
def train_command(backend, data_path, forces, out, config_path, epochs, seed, force_weight, stream, **read_kwargs) -> None:
    """Train one model; energies only unless --forces. Scores it on a held-out test split."""
    from ekd.pipeline import train_model

    summary = train_model(
        backend, out, data_path, forces, config_path, _read_options(**read_kwargs), stream=stream,
        epochs=epochs, seed=seed, force_weight=force_weight,
    )
    test = summary.test
    click.echo(
        f"trained {backend} on {summary.trained_on}: {summary.epochs_run} epochs "
        f"(best {summary.best_epoch}{', stopped early' if summary.stopped_early else ''}), {summary.seconds:.0f} s"
    )
    if test is not None and test.energy_mae is not None:
        click.echo(f"held-out test ({test.n_conformations} conformations): energy MAE {test.energy_mae:.3f} kcal/mol")
    if test is not None and test.force_mae is not None:
        click.echo(f"held-out test force MAE {test.force_mae:.3f} kcal/mol/Å (against the data's forces)")
    click.echo(f"model: {summary.model.path}; log: {Path(out) / 'history.csv'}")


def run_options(command):
    """Options shared by the EKD stage commands (teach, label, student, run)."""
    options = [
        click.option("--out", default="runs/ekd", show_default=True, help="Run directory (resumed when it exists)."),
        click.option("--config", "config_path", help="Run YAML (default: the run directory's saved config)."),
        click.option("--data", "data_path", help="Dataset (default: the embedded reference set)."),
        click.option("--mix", "mix_specs", multiple=True, help="Also train on this file, PATH or PATH:WEIGHT (its loss weight; repeat), e.g. sampled.h5:0.5."),
        click.option("--test", "test_path", help="Held-out test set file (default: a data.test_fraction cut of --data, or the file the data name)."),
        click.option("--teacher", "teacher_spec", help="Teachers: backend[:count][,backend[:count]...], e.g. ani:4,mace:2."),
        click.option("--init-from", "init_from", help="Start the teachers from these models and fine-tune them: ani-pretrained:PATH or ekd models (a run's teachers folder)."),
        click.option("--student", "student_backend", help="Student backend name."),
        click.option("--epochs", type=click.IntRange(min=1), help="Epoch bound of every model (teachers, students, baselines)."),
        click.option("--jobs", type=click.IntRange(min=1), help="Trainings side by side (default: one per CPU core, up to two where that leaves none idle)."),
        click.option("--eval", "eval_paths", multiple=True, help="Also score on this dataset file (repeat; replaces evaluate.files)."),
        click.option("--size", type=click.Choice(["auto", "small", "upstream"]), help="Model size: small (CPU), upstream (the libraries' own, GPU); auto: by device."),
        click.option("--stress-weight", type=click.FloatRange(min=0), help="Weight of the student's stress term (periodic data; eV/Å³; default 0: off)."),
        click.option("--stream", is_flag=True, default=None,
                     help="Read the data lazily, a batch at a time, labels too (an ekd HDF5 file: 'ekd data convert' makes one)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _mixed(specs: tuple[str, ...]) -> list[dict] | None:
    """--mix PATH[:WEIGHT] values as data.mix entries (paths relative to the working directory)."""
    entries = []
    for spec in specs:
        path, sep, weight = spec.rpartition(":")
        try:
            entries.append({"path": path, "weight": float(weight)} if sep and path else {"path": spec})
        except ValueError:
            entries.append({"path": spec})  # a colon that is part of the path
    return entries or None


def _config(out, config_path, data_path, mix_specs, test_path, teacher_spec, init_from, student_backend, epochs, jobs, eval_paths, size, stress_weight, stream, **extra):
    """The run configuration: the given YAML (or the saved config in ``out``) with the flags on top."""
    from ekd.runconfig import RunConfig

    overrides = {
        "data.path": data_path,
        "data.mix": _mixed(mix_specs),
        "data.test_path": test_path,
        "teachers.spec": teacher_spec,
        "teachers.init_from": init_from,
        "student.backend": student_backend,
        "epochs": epochs,
        "jobs": jobs,
        "evaluate.files": list(eval_paths) or None,
        "size": size,
        "student.train.stress_weight": stress_weight,
        "data.stream": stream,
        **extra,
    }
    saved = Path(out) / "config.yaml"
    path = config_path if config_path is not None else (saved if saved.is_file() else None)
    return RunConfig.load(path, overrides)


def _run(out, **kwargs):
    """The :class:`ekd.Run` in ``out`` with the given YAML (or the run's saved config) and flags."""
    from ekd.run import Run

    return Run(out, _config(out, **kwargs))


@cli.command("teach")
@run_options
@click.option("--member", type=int, help="Train only this member (members can run as separate jobs).")
def teach_command(member, **kwargs) -> None:
    """Train the teacher ensemble on energies only."""
    ensemble = _run(**kwargs).teach(member=member)
    click.echo(f"teachers ready: {', '.join(ensemble.names)}")


@cli.command("label")
@run_options
def label_command(**kwargs) -> None:
    """Label every conformation with each teacher's forces; write RUN_DIR/labels.h5."""
    from ekd.data.labels import read_provenance

    run = _run(**kwargs)
    run.label()
    provenance = read_provenance(run.directory / "labels.h5")
    left_out = f"; left out: {', '.join(t['name'] for t in provenance['left_out'])}" if provenance["left_out"] else ""
    click.echo(f"labels: {run.directory / 'labels.h5'} ({len(provenance['teachers'])} teachers, {len(run.data)} conformations{left_out})")


@cli.command("student")
@run_options
@click.option("--baseline", is_flag=True, help="Also train the energy-only baseline (the control).")
def student_command(baseline, **kwargs) -> None:
    """Train the student(s) on reference energies + teacher-mean forces."""
    models = _run(**kwargs).train_students(baseline=baseline)
    click.echo(f"trained: {', '.join(str(m.path.parent) for m in models)}")


@cli.command("run")
@run_options
@click.option("--baseline", is_flag=True, default=None, help="Also train the energy-only baseline (the control).")
def run_command(baseline, **kwargs) -> None:
    """teach -> label -> student (-> baseline) -> evaluate, with report.md in the run directory."""
    run = _run(**kwargs, **{"student.baseline": baseline})
    report = run.run()
    click.echo(report.markdown().split("\n## ")[0].strip())
    click.echo(f"report: {run.directory / 'report.md'} (JSON: {run.directory / 'report.json'})")


@cli.command("grow")
@run_options
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds of new data (default 3; the last data's run is scored too).")
@click.option("--per-round", type=click.IntRange(min=1), help="New reference calculations per round (default 50).")
@click.option("--select", "strategy", type=click.Choice(["force_spread", "energy_spread", "random"]), help="How candidates are chosen (default force_spread).")
@click.option("--initial", type=click.IntRange(min=2), help="Conformations of --data to start from (default 200).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), help="Sampling MD temperature in K (default 600).")
@click.option("--reference", "reference_name", help="Reference calculator for new data (default: the one that made --data).")
@click.option("--reference-options", help='Its options as JSON, e.g. \'{"method": "ccsd(t)", "basis": "cc-pvdz"}\' (default: the data\'s).')
@click.option("--seed", type=int, help="Seed of the start subset, sampling and random selection (default 0).")
def grow_command(rounds, per_round, strategy, initial, temperature, reference_name, reference_options, seed, **kwargs) -> None:
    """Active learning: rounds of EKD runs, each buying reference energies where the teachers disagree most."""
    from ekd.active import grow

    try:
        parsed_options = json.loads(reference_options) if reference_options is not None else None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--reference-options: not JSON ({error.msg}); expected e.g. '{{\"method\": \"ccsd(t)\"}}'") from None
    settings = {"rounds": rounds, "per_round": per_round, "select": strategy, "initial": initial, "temperature_K": temperature,
                "reference": reference_name, "reference_options": parsed_options, "seed": seed}
    grow(kwargs["out"], _config(**kwargs), {k: v for k, v in settings.items() if v is not None})
    click.echo((Path(kwargs["out"]) / "grow.md").read_text().strip())


@cli.command("sample")
@click.argument("out")
@click.option("--teachers", required=True, help="The ensemble that samples and labels: ani-pretrained:PATH (a published one) or a run's teachers folder.")
@click.option("--smiles", "smiles", multiple=True, help="A seed molecule as 'SMILES' or 'SMILES name' (repeat; needs RDKit).")
@click.option("--smiles-file", help="Seed molecules, one 'SMILES [name]' per line.")
@click.option("--structures", multiple=True, help="A structure file (any format ekd reads): the first conformation of each molecule is a seed (repeat).")
@click.option("--config", "config_path", help="YAML file of sampling settings (ekd.sampling.SampleSettings; see docs/sample.md).")
@click.option("--no-pairs", is_flag=True, default=None, help="Sample each seed alone, not pairs of seeds.")
@click.option("--max-force-spread", type=click.FloatRange(min=0, min_open=True), help="eV/Å: the spread gate (default: 2 x the seeds' median spread).")
@click.option("--exclude", multiple=True, help="A file (e.g. your test set) whose geometries are kept out of the sample (repeat).")
@click.option("--seed", type=int, help="Seed of the conformers, MD and placements (default 0).")
def sample_command(out, teachers, smiles, smiles_file, structures, config_path, no_pairs, max_force_spread, exclude, seed) -> None:
    """Make geometries for a student with the teachers: MD over a temperature ladder, rattles, soft
    modes and pairs of the seeds, filtered and labelled with the teachers' mean and spread; writes OUT/sampled.h5."""
    from ekd.config import load_yaml
    from ekd.sampling import sample

    settings = {**load_yaml(config_path), **{k: v for k, v in {"pairs": None if no_pairs is None else False,
                                                              "max_force_spread": max_force_spread, "seed": seed,
                                                              "exclude": list(exclude) or None}.items() if v is not None}}
    data = sample(out, teachers, smiles, smiles_file, structures, settings)
    click.echo(f"wrote {len(data)} conformations to {Path(out) / 'sampled.h5'} (summary: {Path(out) / 'sample.json'}, spread: {Path(out) / 'spread.png'})")


@cli.command("evaluate")
@click.argument("model_path")
@click.option("--data", "--eval", "data_paths", multiple=True, help="Dataset(s) to score on (repeat); default: the embedded set.")
@click.option("--json", "json_out", help="Write the metrics as JSON to this file.")
@click.option("--refit-offsets", is_flag=True, help="Refit per-element energy offsets first (other energy reference).")
@click.option("--plots", "plot_dir", help="Write parity plots (PNG) to this directory.")
@read_options
def evaluate_command(model_path, data_paths, json_out, refit_offsets, plot_dir, **read_kwargs) -> None:
    """Score a model, a teacher ensemble directory or a run's member on COMP6 metrics; periodic
    data also in meV/atom, meV/Å and GPa, and the crystals the data name (embedded:metals) on
    their lattice constant, bulk modulus, vacancy and surface energies."""
    from ekd._io import atomic_path
    from ekd.ensemble import load_predictor
    from ekd.evaluate import evaluate
    from ekd.evaluate.materials import material_properties_of

    predictor = load_predictor(model_path)
    datasets = {}
    for path in data_paths or [None]:
        resolved, frames = _read(path, **read_kwargs)
        datasets[resolved.stem] = frames
    results = evaluate(predictor, datasets, refit=refit_offsets, plot_dir=plot_dir)
    if refit_offsets:
        click.echo("note: per-element energy offsets were refit on each dataset before scoring energies")
    for name, metrics in results.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float) and not k.endswith(("_meV", "_GPa")))
        click.echo(f"{name}: {shown} (kcal/mol, kcal/mol/Å)")
        periodic = [f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith(("_meV", "_GPa"))]
        if periodic:
            click.echo(f"{name}, periodic cells: {', '.join(periodic)} (meV/atom, meV/Å, GPa)")
    for name, frames in datasets.items():
        if frames.metadata.get("materials"):
            checked = material_properties_of({"model": predictor}, frames.metadata["materials"])
            found = results.setdefault(name, {})["materials"] = checked["models"]["model"]
            for system, truth in checked["ground_truth"].items():
                values = found[system].get("failed") or ", ".join(f"{k} {found[system][k]:.3f} (truth {v:.3f}) {checked['units'][k]}" for k, v in truth.items())
                click.echo(f"{name}, {system}: {values}")
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(results, indent=2))


@cli.command("md")
@click.argument("model_path")
@click.option("--data", "data_path", help="Starting geometries: each molecule's (or periodic system's) first conformation (default: the embedded set).")
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True, help="MD steps per molecule.")
@click.option("--timestep", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True, help="Time step, fs.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True, help="Langevin thermostat temperature, K.")
@click.option("--friction", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True, help="Langevin friction, 1/fs.")
@click.option("--max-bond-deviation", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True, help="Å; a bond that changes more fails the run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the starting velocities and the thermostat noise.")
@click.option("--molecules", "max_molecules", type=click.IntRange(min=1), help="Only the data's first N molecules (default: all).")
@click.option("--json", "json_out", help="Write the results as JSON to this file.")
@click.option("--trajectories", "trajectory_dir", help="Write each molecule's trajectory (ASE .traj) to this directory.")
@read_options
def md_command(model_path, data_path, steps, timestep, temperature, friction, max_bond_deviation, seed, max_molecules, json_out, trajectory_dir, **read_kwargs) -> None:
    """MD stability: Langevin NVT from each molecule's (or periodic system's) first conformation; a
    molecule fails when a bond changes by more than --max-bond-deviation Å, a periodic cell when
    two atoms come closer than half their covalent radii sum or it heats past 3x the thermostat."""
    from ekd._io import atomic_path
    from ekd.ensemble import load_predictor
    from ekd.evaluate.md import MDSettings, md_stability

    settings = MDSettings(
        steps=steps, timestep_fs=timestep, temperature_K=temperature, friction_per_fs=friction, max_bond_deviation=max_bond_deviation, seed=seed, max_molecules=max_molecules,
    )
    predictor = load_predictor(model_path)
    _, frames = _read(data_path, **read_kwargs)
    results = md_stability(predictor, frames, settings, trajectory_dir)
    width = max(12, *(len(n) + 2 for n in results["molecules"]))
    click.echo(f"{'system':<{width}}{'stable':>8}{'time (ps)':>11}{'check':>32}{'mean T (K)':>12}")
    for name, run in results["molecules"].items():
        click.echo(f"{name:<{width}}{'yes' if run['stable'] else 'NO':>8}{run['time_ps']:>11.3f}{_md_check(run):>32}{_number(run['mean_temperature_K'], '.0f'):>12}")
    click.echo(
        f"stable: {results['n_stable']}/{results['n_molecules']} {'molecules' if all('max_bond_deviation' in r for r in results['molecules'].values()) else 'systems'} "
        f"over {steps * timestep / 1000:g} ps at {temperature:g} K "
        f"(Langevin, {timestep:g} fs steps; mean time to failure or end {results['mean_time_ps']:.3f} ps)"
    )
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(results, indent=2))


def _number(value: float | None, spec: str) -> str:
    return "not finite" if value is None else f"{value:{spec}}"


def _md_check(run: dict) -> str:
    """What decided a run's stability: a molecule's largest bond change, a cell's closest pair
    (over the covalent radii sum) and highest temperature."""
    if "max_bond_deviation" in run:
        return f"max bond change {_number(run['max_bond_deviation'], '.3f')} Å"
    return f"closest pair {_number(run['min_distance_ratio'], '.2f')}, max T {_number(run['max_temperature_K'], '.0f')} K"


@cli.command("reference")
@click.argument("source")
@click.argument("target")
@click.option("--calculator", required=True, help="Reference calculator: pyscf, ase, or one a plugin adds (see 'ekd backends').")
@click.option("--option", "option_pairs", multiple=True, help="KEY=VALUE of the calculator's options (repeat), e.g. method=ccsd(t) basis=cc-pvdz.")
@click.option("--forces", is_flag=True, help="Also compute forces (analytic gradients where the method has them).")
@click.option("--jobs", type=click.IntRange(min=1), help="Worker processes (default: one per CPU core).")
@click.option("--work", "work_dir", help="Folder of finished chunks: an interrupted run resumes from it (default: TARGET.work).")
@read_options
def reference_command(source, target, calculator, option_pairs, forces, jobs, work_dir, **read_kwargs) -> None:
    """Label SOURCE's configurations with reference energies (and forces); write TARGET (.h5/.xyz)."""
    import yaml

    from ekd.data import write
    from ekd.reference import compute_reference

    options = {}
    for pair in option_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value) if value else value
    _, frames = _read(source, **read_kwargs)
    labelled = compute_reference(frames, calculator, options, work_dir or f"{target}.work", forces=forces, jobs=jobs)
    write(labelled, target)
    record = labelled.metadata["reference"]
    click.echo(f"wrote {len(labelled)} of {len(frames)} conformations to {target} ({record['level_of_theory']}, "
               f"{'energies and forces' if forces else 'energies'}; {record['cpu_seconds']:.0f} CPU-seconds)")
    for failure in record["failures"]:
        click.echo(f"left out: conformation {failure['index']} ({failure['molecule']}): {failure['error']}", err=True)


@cli.command("export")
@click.argument("model_path")
@click.argument("target")
def export_command(model_path, target) -> None:
    """Write MODEL_PATH (an ekd checkpoint) in its backend's native format to TARGET."""
    from ekd.model import Model

    model = Model.load(model_path, device="cpu")
    model.export(target)
    click.echo(f"exported the {model.backend.name} model to {target}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ekd`` console script."""
    try:
        cli.main(args=argv, prog_name="ekd", standalone_mode=False)
    except EkdError as error:
        if os.environ.get("EKD_DEBUG"):
            raise
        click.echo(f"ekd: error: {error}", err=True)
        sys.exit(2)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except OSError as error:  # the machine's, not ekd's: a full or read-only disk, a missing permission
        if os.environ.get("EKD_DEBUG"):
            raise
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"ekd: error: {where}{error.strerror or error} (nothing half-written is kept; run the same command again to resume; "
                   "--debug for the traceback)", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("ekd: interrupted; run the same command again to resume from the last finished step", err=True)
        sys.exit(130)
