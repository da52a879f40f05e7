"""The EKD stages on their own, taking and returning ekd's objects: train a teacher ensemble,
label any dataset with any ensemble (trained or published), train students from labels; and
``ekd train`` (one model). :class:`ekd.Run` chains the stages in a run directory.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from ekd import distributed
from ekd._io import atomic_path
from ekd.config import dump_yaml, load_yaml, validate
from ekd.data import DEFAULT_DATASET, Dataset, ReadOptions
from ekd.data import stream as streamed
from ekd.data.embedded import resolve
from ekd.data.frames import PerConformation
from ekd.data.labels import Labels, LabelsWriter, TeacherRecord, data_identity, make_provenance
from ekd.ensemble import Ensemble
from ekd.errors import ConfigError, DataError
from ekd.evaluate import evaluate_streamed
from ekd.backend import validate_options
from ekd.model import CHECKPOINT_FORMAT, Model
from ekd.parallel import TrainJob, run_jobs
from ekd.plugins import get_backend
from ekd.progress import ProgressCallback, progress_bar
from ekd.report import Scores
from ekd.provenance import config_hash, package_versions, sha256_file
from ekd.runconfig import RunConfig, TeacherMember, parse_teacher_spec
from ekd.stages import Stage
from ekd.train import TrainConfig, inverse_spread_weights, train

__all__ = ["DEFAULT_FORCE_WEIGHT", "TrainSummary", "failed_teachers", "label", "label_to_file", "train_ensemble", "train_model", "train_students"]

#: force weight used by ``--forces`` when the config sets none
DEFAULT_FORCE_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """One trained model (``ekd train``) and its scores on the held-out test split
    (:class:`ekd.report.Scores`, kcal/mol and kcal/mol/Å; None when the split is empty)."""

    model: Model
    trained_on: str
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    test: Scores | None
    data: str
    data_sha256: str | None

    def to_dict(self) -> dict:
        """``summary.json``: the fields, the model as its backend name and checkpoint path."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "test")}
        test = {k: v for k, v in dataclasses.asdict(self.test).items() if v is not None} if self.test else {}
        return {"backend": self.model.backend.name, "model": str(self.model.path), **values, "test": test,
                "units": {"energy": "kcal/mol", "forces": "kcal/mol/Å"}}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)

def train_model(
    backend: str,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    forces: bool = False,
    config: str | os.PathLike | dict | None = None,
    read_options: ReadOptions | None = None,
    show_progress: bool = True,
    stream: bool = False,
    **overrides,
) -> "TrainSummary":
    """``ekd train``: train one model and score it on a held-out test split.

    Args:
        backend: installed backend name.
        out: run directory (resumed if it holds an unfinished run of the same settings).
        data: dataset path; default: the embedded reference set.
        forces: train on the data's reference forces too (otherwise they are never seen).
        config: YAML path or mapping with sections ``train`` (:class:`TrainConfig`) and
            ``options`` (the backend's hyperparameters).
        stream: read the data lazily, a batch at a time (an ekd HDF5 file; for data larger than
            memory, see :func:`ekd.data.stream`); only the held-out test split is loaded whole.
        overrides: ``TrainConfig`` fields that win over the config (e.g. ``epochs=20``).
    Returns the :class:`TrainSummary` written to ``out/summary.json``.
    """
    get_backend(backend)  # an unknown name fails before any data is read
    sections = config if isinstance(config, dict) else load_yaml(config)
    unknown = set(sections) - {"train", "options"}
    if unknown:
        raise ConfigError(f"config: unknown section(s) {', '.join(sorted(unknown))}; expected 'train' and 'options'")
    train_values = {**sections.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    if forces and "force_weight" not in train_values:
        train_values["force_weight"] = DEFAULT_FORCE_WEIGHT
    train_config = validate(TrainConfig, train_values, "train")
    validate_options(get_backend(backend), sections.get("options"), "options")
    for key in ("force_weight", "stress_weight"):
        if getattr(train_config, key) > 0 and not forces:
            raise ConfigError(f"train.{key} > 0 trains on reference forces and stresses: pass --forces to confirm")

    path = Path(data) if data is not None else DEFAULT_DATASET
    if stream and (read_options or ReadOptions()).given():
        raise ConfigError(f"{path}: reading options do not apply with --stream (the file is ekd HDF5: convert it with them first)")
    frames = streamed(resolve(path)) if stream else Dataset.read(path, read_options or ReadOptions())
    if frames.energy is None:
        raise DataError(f"{path}: no energies to train on")
    if forces and not frames.has_forces:
        raise DataError(f"{path}: --forces needs forces in the data, and it has none")
    fractions = (1 - train_config.val_fraction - train_config.test_fraction, train_config.val_fraction, train_config.test_fraction)
    train_part, val_part, test_part = frames.split(fractions, seed=train_config.seed)
    if not forces:  # the reference forces and stresses are held-out truth
        train_part, val_part = train_part.without_forces(), val_part.without_forces()

    out = Path(out)
    effective = {"backend": backend, "data": str(path), "forces": forces, "train": train_config.model_dump(), "options": sections.get("options", {})}
    out.mkdir(parents=True, exist_ok=True)
    main = distributed.is_main()  # under torchrun the training is data-parallel; rank 0 writes
    if main:
        _write_text(out / "config.yaml", dump_yaml(effective))
    info = {"config": effective, "data_sha256": frames.metadata.get("sha256"), "versions": package_versions()}
    result = train(backend, train_part, val_part, out, train_config, sections.get("options"), info=info, show_progress=show_progress and main)

    summary = TrainSummary(
        model=result.model,
        trained_on="energies and forces" if forces else "energies only",
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        seconds=round(result.seconds, 1),
        test=Scores(**evaluate_streamed(result.model, test_part)) if len(test_part) else None,  # a block at a time: streamed or not
        data=str(path),
        data_sha256=frames.metadata.get("sha256"),
    )
    if main:
        _write_text(out / "summary.json", json.dumps(summary.to_dict(), indent=2))
    return summary




# ------------------------------------------------------------------------------------------
# teach
# ------------------------------------------------------------------------------------------
def warm_started(config: RunConfig, train_config: TrainConfig, role: str, name: str) -> tuple[TrainConfig, str | None]:
    """``train_config`` starting from the namesake ``role/name/model.pt`` in ``config.warm_start``
    (with that file's sha256 for the stage hash), or as it is without a warm start."""
    if not config.warm_start:
        return train_config, None
    path = Path(config.warm_start) / role / name / "model.pt"
    if not path.is_file():
        raise ConfigError(f"warm_start: {path} does not exist (each teacher, student and baseline starts from its namesake in {config.warm_start})")
    return train_config.model_copy(update={"init_from": str(path)}), sha256_file(path)


def teacher_jobs(out: Path, config: RunConfig, members: list[TeacherMember], train_part: Dataset, validation: Dataset) -> list[TrainJob]:
    """One resumable training per member in ``out/<member name>``, on energies only."""
    train_part, validation = train_part.without_forces(), validation.without_forces()
    jobs = []
    for m in members:
        train_config, start = warm_started(config, config.train_config("teachers", seed=m.seed), "teachers", m.name)
        subset = train_part
        if config.teachers.subset_fraction < 1:
            keep = np.random.default_rng(m.seed).permutation(len(train_part))[: max(1, round(config.teachers.subset_fraction * len(train_part)))]
            subset = train_part.subset(np.sort(keep))
        stage = Stage(out / m.name, config_hash("teacher", CHECKPOINT_FORMAT, dataclasses.asdict(m), train_config.hashed(), start, subset.fingerprint(), validation.fingerprint()))
        info = {"role": "teacher", "member": dataclasses.asdict(m), "data_sha256": train_part.metadata.get("sha256"), "level_of_theory": train_part.metadata.get("level_of_theory")}
        jobs.append(TrainJob(stage, m.backend, subset, validation, train_config, m.options, info))
    return jobs


def train_ensemble(
    train_part: Dataset,
    validation: Dataset,
    out: str | os.PathLike,
    config: RunConfig | None = None,
    on_progress: ProgressCallback | None = None,
    show_progress: bool = True,
) -> Ensemble:
    """Train ``config.teachers`` on the energies of ``train_part`` (forces are never seen),
    selecting each on ``validation``; members go to ``out/<name>`` and resume there.

    Published ensembles are loaded, not trained: ``ekd.load("ani-pretrained:PATH")``.
    """
    config = config if config is not None else RunConfig()
    if any(path is not None for _, _, path in config.teachers.parts()):
        raise ConfigError(f"teachers.spec '{config.teachers.spec}': a published ensemble is loaded, not trained (ekd.load('<backend>-pretrained:PATH'))")
    members = parse_teacher_spec(config.teachers, sized=config.sized_options)
    jobs = teacher_jobs(Path(out), config, members, train_part, validation)
    run_jobs(jobs, config.jobs, show_progress, "teach", on_progress)
    return Ensemble([Model.load(job.stage.directory / "model.pt") for job in jobs], [m.name for m in members])


def pretrained_stage(out: Path, member: TeacherMember, model: Model) -> Stage:
    """The stage a published ensemble member is installed in (its source's files hashed)."""
    return Stage(out / member.name, config_hash("pretrained", CHECKPOINT_FORMAT, member.__dict__, model.info["pretrained"]))


def install_pretrained(out: Path, member: TeacherMember, model: Model, data: Dataset) -> Stage:
    """Save a published ensemble member as ``out/<name>/model.pt`` (nothing is trained)."""
    source = model.info["pretrained"]
    data.check_elements(model.species, f"the pretrained teacher {source.get('name', member.pretrained)} ({member.pretrained})")
    stage = pretrained_stage(out, member, model)
    if not stage.done:
        stage.start()
        saved = dataclasses.replace(model, info={"role": "teacher", "member": dataclasses.asdict(member), "pretrained": source})
        saved.save(stage.directory / "model.pt")
        stage.finish()
    return stage


def failed_teachers(teachers: list[tuple[TeacherMember, Stage]], factor: float | None) -> dict[str, str]:
    """Trained teachers whose best validation loss is over ``factor`` × the median of their
    backend's members (at least three): failed trainings, left out of the labels."""
    best = {}
    for member, stage in teachers:
        history = stage.directory / "history.csv"
        if history.is_file():
            with open(history, newline="") as handle:
                best[member.name] = (member.backend, min(float(row["val_loss"]) for row in csv.DictReader(handle)))
    failed = {}
    for backend in {b for b, _ in best.values()} if factor else ():
        losses = {name: loss for name, (b, loss) in best.items() if b == backend}
        if len(losses) >= 3:
            median = float(np.median(list(losses.values())))
            failed.update({n: f"best validation loss {v:.3g} is {v / median:.0f}x the median of the {backend} teachers ({median:.3g})" for n, v in losses.items() if v > factor * median})
    return failed


# ------------------------------------------------------------------------------------------
# label
# ------------------------------------------------------------------------------------------
def label(data: Dataset, ensemble: Ensemble, left_out: list[dict] | None = None, config: dict | None = None, show_progress: bool = True,
          shards: Path | None = None) -> Labels:
    """Every member's forces (eV/Å) and energies (eV) on every conformation of ``data``, and
    stresses (eV/Å³) when some conformations are periodic.

    The data's own forces and stresses, if any, are never part of the labels (held-out truth).
    ``left_out`` and ``config`` are recorded as provenance. Under ``torchrun`` each rank labels
    its share of the conformations (by atoms) into ``shards/shard-<r>-of-<W>.npz`` (kept: an
    interrupted labelling redoes only missing shards) and every rank returns the merged labels.
    """
    unlabelled = data.without_forces()
    periodic = bool(data.periodic.any())
    records = _teacher_records(ensemble)
    ranks = distributed.world()
    if ranks == 1:
        forces, energies, stresses = _member_predictions(unlabelled, ensemble, periodic, show_progress)
    else:
        if shards is None:
            raise ValueError("labelling on several ranks needs a folder for the shards")
        digest = config_hash("label-shard", data_identity(data), _weights_identity(ensemble), ranks)
        me = distributed.rank()
        path = Path(shards) / f"shard-{me}-of-{ranks}.npz"
        if _saved_digest(path) != digest:
            part = unlabelled.subset(distributed.shard(unlabelled.sizes, ranks, me))
            _save_predictions(path, digest, _member_predictions(part, ensemble, periodic, show_progress and distributed.is_main()))
        distributed.barrier()
        parts = [np.load(Path(shards) / f"shard-{r}-of-{ranks}.npz") for r in range(ranks)]
        forces = np.concatenate([p["forces"] for p in parts], axis=1)
        energies = np.concatenate([p["energies"] for p in parts], axis=1)
        stresses = np.concatenate([p["stresses"] for p in parts], axis=1) if periodic else None
    return Labels(unlabelled, forces, records, energies, left_out or [], make_provenance(data, config), stresses)


def label_to_file(data: PerConformation, ensemble: Ensemble, path: str | os.PathLike, left_out: list[dict] | None = None, config: dict | None = None,
                  block: int = 4096, show_progress: bool = True, shards: Path | None = None) -> None:
    """:func:`label` for data larger than memory (a streamed dataset, ``ekd.data.stream``): the
    labels file ``path`` is written ``block`` conformations at a time, holding one block's member
    forces. ``ekd.data.stream(path)`` opens it as the students' training data.

    With ``shards`` (a folder), each block's predictions are first kept there as
    ``block-<k>.npz``, so that an interrupted labelling redoes only missing blocks; under
    ``torchrun`` (which needs it) rank ``r`` labels blocks ``r, r + W, …`` and rank 0 writes the
    file, then removes the blocks."""
    if not len(data):
        raise DataError(f"{data.metadata.get('source', 'data')}: no conformations to label")
    unlabelled, periodic = data.without_forces(), bool(data.periodic.any())
    records, provenance = _teacher_records(ensemble), make_provenance(data, config)
    ranks = distributed.world()
    if shards is None and ranks > 1:
        raise ValueError("labelling on several ranks needs a folder for the shards")
    predictions = _label_blocks(unlabelled, ensemble, periodic, block, shards, show_progress) if shards is not None else None
    if not distributed.is_main():
        return
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle, progress_bar("label" if predictions is None else "write labels", len(data),
                                                                              show_progress, unit="conformation") as bar:
        writer = LabelsWriter(handle)
        for k, (_, part) in enumerate(unlabelled.blocks(block)):
            if predictions is None:
                forces, energies, stresses = _member_predictions(part, ensemble, periodic, False)
            else:
                with np.load(predictions[k]) as saved:
                    forces, energies, stresses = saved["forces"], saved["energies"], saved["stresses"] if periodic else None
            block_labels = Labels(part, forces, records, energies, left_out or [], provenance, stresses)
            writer.append(block_labels)
            bar.update(len(part))
        writer.finish(block_labels)
    for saved in predictions or []:
        saved.unlink()


def _label_blocks(unlabelled: PerConformation, ensemble: Ensemble, periodic: bool, block: int, shards: Path, show_progress: bool) -> list[Path]:
    """Each rank's blocks' member predictions into ``shards/block-<k>.npz`` (those saved with the
    same data, teachers and block size are kept); every block's file, in order, once all ranks are done."""
    ranks, me = distributed.world(), distributed.rank()
    digest = config_hash("label-block", unlabelled.fingerprint(), _weights_identity(ensemble), block)
    files = [Path(shards) / f"block-{k}.npz" for k in range(-(-len(unlabelled) // block))]
    mine = [(first, files[first // block]) for first in range(me * block, len(unlabelled), ranks * block)]
    with progress_bar("label", sum(min(block, len(unlabelled) - first) for first, _ in mine), show_progress and distributed.is_main(),
                      unit="conformation") as bar:
        for first, file in mine:
            part = unlabelled.subset(np.arange(first, min(first + block, len(unlabelled))))
            if _saved_digest(file) != digest:
                _save_predictions(file, digest, _member_predictions(part.load(), ensemble, periodic, False))
            bar.update(len(part))
    distributed.barrier()
    return files


def _weights_identity(ensemble: Ensemble) -> list[str]:
    """sha256 of each member's weights (saved predictions are reused only for the same members)."""
    identities = []
    for model in ensemble.models:
        digest = hashlib.sha256()
        for tensor in model.module.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        identities.append(digest.hexdigest())
    return identities


def _save_predictions(file: Path, digest: str, predictions: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> None:
    """Member forces, energies and (periodic) stresses with the digest of what made them, atomically."""
    arrays = dict(zip(("forces", "energies", "stresses"), predictions))
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, digest=digest, **{k: v for k, v in arrays.items() if v is not None})


def _saved_digest(file: Path) -> str | None:
    """The digest a saved block of predictions was made with (None: no such file)."""
    if not file.is_file():
        return None
    with np.load(file) as saved:
        return str(saved["digest"])


def _teacher_records(ensemble: Ensemble) -> list[TeacherRecord]:
    return [TeacherRecord(m.backend.name, name, sha256_file(m.path) if m.path else None, (m.info.get("member") or {}).get("seed"), m.info.get("pretrained"))
            for name, m in zip(ensemble.names, ensemble.models)]


def _member_predictions(frames: Dataset, ensemble: Ensemble, periodic: bool, show_progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every member's forces (M, A, 3), energies (M, N) and, for periodic data, stresses (M, N, 6)."""
    prediction = ensemble.predict(frames, forces=True, stress=periodic, show_progress=show_progress)
    return prediction.member_forces, prediction.member_energy, prediction.member_stress if periodic else None


# ------------------------------------------------------------------------------------------
# students
# ------------------------------------------------------------------------------------------
def student_jobs(out: Path, config: RunConfig, train_part: Dataset, validation: Dataset, info: dict, baseline: bool = False) -> list[TrainJob]:
    """One resumable training per student seed in ``out/students/seed-<seed>`` (``baselines``:
    the energy-only controls, trained on the same energies without any forces)."""
    role = "baseline" if baseline else "student"
    parts = [train_part, validation]
    if baseline:
        parts = [p.without_forces() for p in parts]
    elif config.student.weighting == "inverse_spread":
        parts = [p.with_forces(p.forces, force_weight=inverse_spread_weights(p.atom_data["force_spread"])) for p in parts]
    periodic = bool(train_part.periodic.any() or validation.periodic.any())
    jobs = []
    for k in range(config.student.seeds):
        seed = config.student.seed + k
        train_config, start = warm_started(config, config.train_config(role, seed=seed, periodic=periodic), f"{role}s", f"seed-{seed}")
        digest = config_hash(role, CHECKPOINT_FORMAT, config.student.backend, config.student_options, None if baseline else config.student.weighting,
                             train_config.hashed(), start, *(p.fingerprint() for p in parts))
        stage = Stage(out / f"{role}s" / f"seed-{seed}", digest)
        jobs.append(TrainJob(stage, config.student.backend, *parts, train_config, config.student_options, {"role": role, "seed": seed, **info}))
    return jobs


def train_students(labels: Labels, out: str | os.PathLike, config: RunConfig | None = None, baseline: bool = False,
                   on_progress: ProgressCallback | None = None, show_progress: bool = True) -> list[Model]:
    """Train ``config.student.seeds`` students on the labels' energies and teacher-mean forces
    (``baseline``: the energy-only controls), split by ``config.data``; models go to ``out``."""
    config = config if config is not None else RunConfig()
    source = config.energy_source(labels.data.energy is not None)
    parts = labels.dataset(source).split(config.data.fractions, by=config.data.split, seed=config.data.seed)
    info = {"data_sha256": labels.source_sha256, "energy_labels": source, "level_of_theory": labels.data.metadata.get("level_of_theory")}
    jobs = student_jobs(Path(out), config, parts.train, parts.validation, info, baseline)
    run_jobs(jobs, config.jobs, show_progress, "baselines" if baseline else "students", on_progress)
    return [Model.load(job.stage.directory / "model.pt") for job in jobs]
