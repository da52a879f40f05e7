"""The configuration of an EKD run (``ekd run``, ``teach``, ``label``, ``student``, ``distill``).

Every option lives here with its default; ``configs/default.yaml`` is the commented version.
A config is checked whole when it is built: unknown keys in any section, backend options that
the backend's own ``Options`` class rejects and training options that a run would ignore all
fail at once, before any data is read. CLI flags override YAML; relative paths in a YAML file
are relative to that file's folder; the effective config is saved as ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable, Literal

import pydantic

from ekd.config import config_error, load_yaml, validate
from ekd.data import ReadOptions
from ekd.data.embedded import PREFIX as EMBEDDED_PREFIX
from ekd.ensemble import PRETRAINED, pretrained_spec
from ekd.errors import ConfigError
from ekd.evaluate.md import MDSettings
from ekd.train import TrainConfig

__all__ = ["MixedSource", "RunConfig", "TeacherMember", "parse_teacher_spec"]

_STRICT = pydantic.ConfigDict(extra="forbid")

#: students' own defaults (over the shared ``train``): they learn from the teachers' forces and
#: converge in far fewer epochs than energy-only models (docs/sweep.md)
STUDENT_TRAIN = {"force_weight": 0.1, "epochs": 50}
#: students train for at least this many optimizer steps: on small data (fewer than 2,000 batches
#: in 50 epochs: under ~1,300 training conformations at batch size 32) their epoch bound rises, as
#: 50 epochs of a few batches leave them far from converged (measured in docs/fine-tune.md)
STUDENT_MIN_STEPS = 2000
#: on periodic data a student's energies, which set its equation of state (lattice constant, bulk
#: modulus), still fall long after its forces have converged: students keep the shared epoch bound
#: (early stopping ends them), measured in docs/periodic.md
PERIODIC_STUDENT_TRAIN = {k: v for k, v in STUDENT_TRAIN.items() if k != "epochs"}

#: TrainConfig fields that a run sets elsewhere: a value in a run's train section would be ignored
_SET_ELSEWHERE = {
    "val_fraction": "data.val_fraction",
    "test_fraction": "data.test_fraction",
    "seed": "teachers.seed and student.seed",
    "init_from": "teachers.init_from (published or saved models) or warm_start (a previous run directory)",
}
#: teachers' own defaults over the shared ``train`` when they start from existing models
#: (``teachers.init_from``): a lower learning rate keeps what the start models know (docs/fine-tune.md)
FINE_TUNE_TRAIN = {"lr": 1e-4}


class MixedSource(pydantic.BaseModel):
    """Another file trained on beside ``data.path`` (e.g. geometries ``ekd sample`` made), with
    the loss weight of its conformations (energies and forces)."""

    model_config = _STRICT
    path: str
    weight: float = pydantic.Field(1.0, gt=0)


class DataSection(ReadOptions):
    """What to train on (path and how to read it) and how to split it (the test part is never trained on)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=False)
    path: str | None = None  # None: the embedded reference set
    val_fraction: float = pydantic.Field(0.1, gt=0, lt=1)
    test_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    split: Literal["random", "molecule"] = "random"
    seed: int = 0
    # the held-out test set as a file (its reference energies and forces score every model; no
    # test_fraction is cut from path then); None: the file the data name as theirs, if any
    # (embedded:ccsdt's coupled-cluster forces), else the test_fraction cut
    test_path: str | None = None
    # read the data lazily, a batch at a time (an ekd HDF5 file: 'ekd data convert' makes one);
    # the labels then stay on disk too: for data larger than memory (docs/scaling.md)
    stream: bool = False
    weight: float = pydantic.Field(1.0, gt=0, description="loss weight of path's conformations beside the mixed sources")
    # more files trained on beside path, each with its loss weight (a reference set and sampled
    # geometries: docs/sample.md); they join every split part, their conformations by the same seed
    mix: list[MixedSource] = []

    @pydantic.model_validator(mode="after")
    def _check_fractions(self) -> "DataSection":
        if self.mix and self.stream:
            raise ConfigError("data.mix: mixed sources are read into memory; they do not work with data.stream")
        if self.val_fraction + (0.0 if self.test_path else self.test_fraction) >= 1:
            raise ConfigError(f"data.val_fraction + data.test_fraction: {self.val_fraction:g} + {self.test_fraction:g} leaves no training data "
                              "(together they must be below 1)")
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        """(train, validation, test) shares of the conformations (or molecules); no test share
        when the held-out set is a file (``test_path``)."""
        test = 0.0 if self.test_path else self.test_fraction
        return (1 - self.val_fraction - test, self.val_fraction, test)


class TeacherSection(pydantic.BaseModel):
    """The teacher ensemble."""

    model_config = _STRICT
    spec: str = "ani"  # backend[:count][,...], e.g. "ani:4,mace:2"; published: "ani-pretrained:PATH"
    count: int = pydantic.Field(4, ge=1, description="members per backend when the spec gives no count")
    seed: int = 100  # member i uses seed + i
    subset_fraction: float = pydantic.Field(1.0, gt=0, le=1, description="share of the training split each member sees")
    # backend -> list of option sets; the k-th member of a backend gets variations[k % len] merged
    # into its options. None: each backend's own recipe for diverse members (Backend.variations).
    variations: dict[str, list[dict]] | None = None
    options: dict[str, dict] = {}  # backend name -> options
    train: dict = {}  # TrainConfig fields for teachers
    # start every trained teacher from existing models, fine-tuned on this run's energies (their
    # reference energies refit first): a published ensemble (ani-pretrained:PATH; teacher k starts
    # from member k, cycling) or ekd models (a model.pt or a folder of them, e.g. a run's teachers);
    # the teachers keep the start models' architecture. None: random weights (docs/fine-tune.md)
    init_from: str | None = None
    # a trained teacher whose best validation loss exceeds this times the median of its backend's
    # members (at least three) is a failed training, not diversity: the labels leave it out
    outlier_factor: float | None = pydantic.Field(3.0, gt=1)

    def parts(self) -> list[tuple[str, int | None, str | None]]:
        """(backend, count or None, published path or None) of each part of ``spec``."""
        parts = []
        for part in self.spec.split(","):
            published = pretrained_spec(part.strip())
            if published is not None:
                parts.append((published[0], None, published[1]))
                continue
            name, _, rest = part.strip().partition(":")
            if not name or (rest and not rest.isdigit()):
                raise ConfigError(f"teacher spec '{self.spec}': expected backend[:count][,backend[:count]...]")
            if rest and int(rest) < 1:
                raise ConfigError(f"teacher spec '{self.spec}': {name}'s count must be at least 1")
            parts.append((name, int(rest) if rest else None, None))
        return parts


class StudentSection(pydantic.BaseModel):
    """The student and its control, the energy-only baseline."""

    model_config = _STRICT
    backend: str = "ani"
    options: dict = {}
    train: dict = {}  # TrainConfig fields over the shared ones and STUDENT_TRAIN (PERIODIC_STUDENT_TRAIN for periodic data)
    baseline_train: dict = {}  # the energy-only control is trained like a teacher: shared train + this
    weighting: Literal["none", "inverse_spread"] = "none"
    # energies the student learns: the data's reference energies, or the teacher ensemble's
    # mean (for geometries without reference energies); auto: reference when the data has them
    energy_labels: Literal["auto", "reference", "teachers"] = "auto"
    seeds: int = pydantic.Field(3, ge=1, description="students (and baselines) trained with seeds seed..seed+n-1")
    seed: int = 200
    baseline: bool = False


class EvaluateSection(pydantic.BaseModel):
    model_config = _STRICT
    files: list[str] = []  # datasets scored beside the held-out split (e.g. COMP6 S66x8)
    refit_offsets: bool = False
    md: MDSettings | None = None  # MD stability of the ensemble, students and baselines; None: off
    md_models: list[Literal["teacher ensemble", "student", "baseline"]] = ["teacher ensemble", "student", "baseline"]  # which models run MD (the ensemble costs a member's time per member)


class RunConfig(pydantic.BaseModel):
    """The whole run: data, teachers, student, evaluation, shared training defaults.

    Building one checks everything a run will use: each backend named exists and accepts its
    options, each training section is valid for its role.
    """

    model_config = _STRICT
    data: DataSection = DataSection()
    teachers: TeacherSection = TeacherSection()
    student: StudentSection = StudentSection()
    evaluate: EvaluateSection = EvaluateSection()
    train: dict = {}  # TrainConfig fields shared by every model (sections above override)
    jobs: int | None = pydantic.Field(None, ge=1, description="trainings run side by side; None: one per CPU core, or up to two per core where that leaves none idle")
    # model size: small (a backend's CPU size) or upstream (the library's defaults, sized for a
    # GPU); auto: small on a CPU, upstream on CUDA. Your own options win over either.
    size: Literal["auto", "small", "upstream"] = "auto"
    epochs: int | None = pydantic.Field(None, ge=1, description="every model's epoch bound, over the sections (--epochs)")
    # a previous run directory: each teacher, student and baseline starts from the weights of its
    # namesake there (same backend, options and elements), as ekd grow's rounds do
    warm_start: str | None = None

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except pydantic.ValidationError as error:  # (built directly: RunConfig(...) fails as a ConfigError too)
            raise config_error(error, RunConfig, "config") from None

    @pydantic.model_validator(mode="after")
    def _check_what_a_run_uses(self) -> "RunConfig":
        from ekd.backend import validate_options
        from ekd.plugins import get_backend

        sections = {"train": self.train, "teachers.train": self.teachers.train, "student.train": self.student.train, "student.baseline_train": self.student.baseline_train}
        for where, values in sections.items():
            for key in sorted(set(values) & set(_SET_ELSEWHERE)):
                raise ConfigError(f"{where}.{key}: a run sets this with {_SET_ELSEWHERE[key]}")
            for key in ("force_weight", "stress_weight"):
                if where != "student.train" and key in values:
                    raise ConfigError(f"{where}.{key}: teachers and baselines never see forces or stresses; the student's is student.train.{key}")
        for role in ("teachers", "student", "baseline"):
            self.train_config(role)
        trained = {backend for backend, _, path in self.teachers.parts() if path is None}
        for backend in sorted(trained | {self.student.backend}):
            get_backend(backend)  # an unknown backend is the error, not another backend's options
        for backend in sorted(set(self.teachers.options) - trained):
            raise ConfigError(f"teachers.options.{backend}: no '{backend}' teachers in the spec '{self.teachers.spec}' (trained ones: {', '.join(sorted(trained)) or 'none'})")
        for backend in sorted(trained):
            own = self.teachers.options.get(backend, {})
            variations = (self.teachers.variations or {}).get(backend) or [{}]
            for k, variation in enumerate(variations):
                validate_options(get_backend(backend), {**own, **variation}, f"teachers.options.{backend}" if not variation else f"teachers.variations.{backend}[{k}]")
        validate_options(get_backend(self.student.backend), self.student.options, "student.options")
        return self

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: dict | None = None) -> "RunConfig":
        """YAML file (optional) with dotted-key ``overrides`` (``{"student.backend": "mace"}``) on top.

        Relative paths in the file (``data.path``, ``evaluate.files``, published teachers) are
        relative to the file's folder; those in ``overrides`` to the working directory.
        """
        values = _resolve_paths(load_yaml(path), Path(path).parent if path is not None else Path.cwd())
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = values
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return validate(cls, _resolve_paths(values, Path.cwd()), "config")

    def train_config(self, role: Literal["teachers", "student", "baseline"], seed: int = 0, periodic: bool = False,
                     conformations: int | None = None) -> TrainConfig:
        """Training options of one role: shared ``train`` below the role's own ``train``
        (``periodic``: the data hold periodic cells, which changes the students' defaults;
        ``conformations``: the training split's size, which raises the students' own epoch bound
        on small data to :data:`STUDENT_MIN_STEPS` optimizer steps)."""
        student_defaults = PERIODIC_STUDENT_TRAIN if periodic else STUDENT_TRAIN
        teachers = {**FINE_TUNE_TRAIN, **self.teachers.train} if self.teachers.init_from else self.teachers.train
        own = {"teachers": teachers, "student": {**student_defaults, **self.student.train}, "baseline": self.student.baseline_train}[role]
        values = {**self.train, **own, "seed": seed}
        if self.epochs is not None:
            values["epochs"] = self.epochs
        elif role == "student" and not periodic and conformations and "epochs" not in self.student.train:
            batches = math.ceil(conformations / values.get("batch_size", TrainConfig().batch_size))
            values["epochs"] = max(values["epochs"], math.ceil(STUDENT_MIN_STEPS / batches))
        if role != "student":
            values.update(force_weight=0.0, stress_weight=0.0)  # teachers and baselines never see forces or stresses
        return validate(TrainConfig, values, {"teachers": "teachers.train", "student": "student.train", "baseline": "student.baseline_train"}[role])

    def notices(self) -> list[str]:
        """Settings that do not apply where a user may expect them to, one line each (a run prints them)."""
        shared = self.train.get("epochs")
        if self.epochs is None and shared is not None and shared != TrainConfig().epochs and "epochs" not in self.student.train:
            return [f"train.epochs {shared} bounds the teachers and baselines; the students keep their own {STUDENT_TRAIN['epochs']} "
                    f"(student.train.epochs sets theirs, epochs or --epochs every model's)"]
        return []

    def resolved_size(self) -> Literal["small", "upstream"]:
        """``size`` with ``auto`` decided by the device: upstream sizes on CUDA, small on a CPU."""
        if self.size != "auto":
            return self.size
        import torch

        device = self.train.get("device", "auto")
        on_gpu = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
        return "upstream" if on_gpu else "small"

    def sized_options(self, backend: str, options: dict) -> dict:
        """``options`` over the backend's options for :meth:`resolved_size` (its ``small`` on a CPU)."""
        from ekd.backend import Sized
        from ekd.plugins import get_backend

        found = get_backend(backend)
        small = found.small if self.resolved_size() == "small" and isinstance(found, Sized) else {}
        return {**small, **options}

    @property
    def student_options(self) -> dict:
        """The student's (and baseline's) options as trained: sized, then ``student.options``."""
        return self.sized_options(self.student.backend, self.student.options)

    def energy_source(self, has_reference_energies: bool) -> Literal["reference", "teachers"]:
        """Where the student's energies come from for data with or without reference energies."""
        if self.student.energy_labels == "auto":
            return "reference" if has_reference_energies else "teachers"
        return self.student.energy_labels


def _resolve_paths(values: dict, base: Path) -> dict:
    """``values`` with relative ``data.path``, ``data.test_path``, ``data.mix`` paths, ``evaluate.files``, published-teacher and
    ``teachers.init_from`` paths made
    absolute against ``base``."""
    absolute = lambda p: str(p) if Path(str(p)).is_absolute() or str(p).startswith(EMBEDDED_PREFIX) else str((base / str(p)).resolve())  # noqa: E731
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    data, evaluate, teachers = values.get("data"), values.get("evaluate"), values.get("teachers")
    for key in ("path", "test_path"):
        if isinstance(data, dict) and isinstance(data.get(key), str):
            data[key] = absolute(data[key])
    if isinstance(data, dict) and isinstance(data.get("mix"), list):
        data["mix"] = [{**m, "path": absolute(m["path"])} if isinstance(m, dict) and isinstance(m.get("path"), str) else m for m in data["mix"]]
    if isinstance(values.get("warm_start"), str):
        values["warm_start"] = absolute(values["warm_start"])
    if isinstance(evaluate, dict) and isinstance(evaluate.get("files"), list):
        evaluate["files"] = [absolute(p) if isinstance(p, str) else p for p in evaluate["files"]]

    def published(part: str, other: Callable[[str], str]) -> str:
        """``part`` with the path of a published ensemble (``ani-pretrained:PATH``) made absolute; anything else ``other(part)``."""
        name, _, rest = part.strip().partition(":")
        return f"{name}:{absolute(rest)}" if name.endswith(PRETRAINED) and rest else other(part.strip())

    if isinstance(teachers, dict) and isinstance(teachers.get("init_from"), str):
        teachers["init_from"] = published(teachers["init_from"], absolute)  # (else a folder of ekd models)
    if isinstance(teachers, dict) and isinstance(teachers.get("spec"), str):
        teachers["spec"] = ",".join(published(part, lambda p: p) for part in teachers["spec"].split(","))
    return values


@dataclasses.dataclass(frozen=True)
class TeacherMember:
    """One teacher: its index, backend, options and seed, or a member of a published ensemble."""

    index: int
    backend: str
    options: dict
    seed: int | None
    pretrained: str | None = None  # path of the published ensemble
    pretrained_member: int | None = None

    @property
    def name(self) -> str:
        return f"{self.index:02d}-{self.backend}" + ("-pretrained" if self.pretrained else "")


def parse_teacher_spec(section: TeacherSection, published_size: Callable[[str, str], int] | None = None,
                       sized: Callable[[str, dict], dict] = lambda backend, options: options) -> list[TeacherMember]:
    """Members of ``spec`` (``ani``, ``ani:4``, ``ani:2,mace:1``, ``ani-pretrained:PATH``) with
    their options and seeds. ``published_size(backend, path)`` counts a published ensemble's
    members (default: load it); ``sized(backend, options)`` adds the device's model size
    (:meth:`RunConfig.sized_options`)."""
    from ekd.backend import Varied
    from ekd.plugins import get_backend

    if published_size is None:
        from ekd.ensemble import load_pretrained

        published_size = lambda backend, path: len(load_pretrained(backend, path, device="cpu"))  # noqa: E731
    members = []
    for backend, count, path in section.parts():
        if path is not None:
            for k in range(published_size(backend, path)):
                members.append(TeacherMember(len(members), backend, {}, None, path, k))
            continue
        if section.variations is None:
            found = get_backend(backend)
            variations = list(found.variations) if isinstance(found, Varied) else []
        else:
            variations = section.variations.get(backend, [])
        for k in range(count or section.count):
            index = len(members)
            options = {**sized(backend, section.options.get(backend, {})), **(variations[k % len(variations)] if variations else {})}
            members.append(TeacherMember(index, backend, options, section.seed + index))
    return members
