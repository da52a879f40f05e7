"""The configuration of an EKD run (``ekd run``, ``teach``, ``label``, ``student``): one YAML file.

Every option lives here with its default; ``configs/default.yaml`` is the commented version.
CLI flags override YAML; the effective config is saved as ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pydantic

from ekd.config import load_yaml, validate
from ekd.data import ReadOptions
from ekd.errors import ConfigError
from ekd.evaluate.md import MDSettings
from ekd.provenance import config_hash
from ekd.train import TrainConfig

__all__ = ["RunConfig", "TeacherMember", "parse_teacher_spec", "config_hash"]

_STRICT = pydantic.ConfigDict(extra="forbid")

#: students' own defaults (over the shared ``train``): they learn from the teachers' forces and
#: converge in far fewer epochs than energy-only models (docs/sweep.md)
STUDENT_TRAIN = {"force_weight": 0.1, "epochs": 100}


class DataSection(ReadOptions):
    """What to train on (path and how to read it) and how to split it (the test part is never trained on)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=False)
    path: str | None = None  # None: the embedded reference set
    val_fraction: float = pydantic.Field(0.1, gt=0, lt=1)
    test_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    split: Literal["random", "molecule"] = "random"
    seed: int = 0


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
    # a trained teacher whose best validation loss exceeds this times the median of its backend's
    # members (at least three) is a failed training, not diversity: the labels leave it out
    outlier_factor: float | None = pydantic.Field(3.0, gt=1)


class StudentSection(pydantic.BaseModel):
    """The student and its control, the energy-only baseline."""

    model_config = _STRICT
    backend: str = "ani"
    options: dict = {}
    train: dict = {}  # TrainConfig fields over the shared ones and STUDENT_TRAIN
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
    files: list[str] | None = None  # None: COMP6 S66x8 when ../shared/data has it
    refit_offsets: bool = False
    md: MDSettings | None = None  # MD stability of the ensemble, students and baselines; None: off


class RunConfig(pydantic.BaseModel):
    """The whole run: data, teachers, student, evaluation, shared training defaults."""

    model_config = _STRICT
    data: DataSection = DataSection()
    teachers: TeacherSection = TeacherSection()
    student: StudentSection = StudentSection()
    evaluate: EvaluateSection = EvaluateSection()
    train: dict = {}  # TrainConfig fields shared by every model (sections above override)
    jobs: int | None = pydantic.Field(None, ge=1, description="trainings run side by side; None: one per CPU core")
    epochs: int | None = pydantic.Field(None, ge=1, description="every model's epoch bound, over the sections (--epochs)")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None) -> "RunConfig":
        """YAML file (optional) with dotted-key ``overrides`` (``{"student.backend": "mace"}``) on top."""
        values = load_yaml(path)
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = values
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        config = validate(cls, values, "config")
        config.train_config("teachers")  # fail early on bad training keys
        config.train_config("student")
        config.train_config("baseline")
        return config

    def train_config(self, role: Literal["teachers", "student", "baseline"], seed: int = 0) -> TrainConfig:
        """Training options of one role: shared ``train`` below the role's own ``train``."""
        own = {"teachers": self.teachers.train, "student": {**STUDENT_TRAIN, **self.student.train}, "baseline": self.student.baseline_train}[role]
        values = {**self.train, **own, "seed": seed}
        if self.epochs is not None:
            values["epochs"] = self.epochs
        if role == "teachers" or role == "baseline":
            values["force_weight"] = 0.0  # teachers and baseline never see forces
        return validate(TrainConfig, values, f"{role}.train")


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


def parse_teacher_spec(section: TeacherSection) -> list[TeacherMember]:
    """Members of ``spec`` (``ani``, ``ani:4``, ``ani:2,mace:1``, ``ani-pretrained:PATH``) with
    their options and seeds; a published ensemble is read to count its members."""
    from ekd.ensemble import load_pretrained, pretrained_spec
    from ekd.plugins import get_backend

    members = []
    for part in section.spec.split(","):
        pretrained = pretrained_spec(part.strip())
        if pretrained is not None:
            backend, path = pretrained
            for k in range(len(load_pretrained(backend, path, device="cpu"))):
                members.append(TeacherMember(len(members), backend, {}, None, path, k))
            continue
        backend, _, count = part.strip().partition(":")
        if not backend or (count and not count.isdigit()) or count == "0":
            raise ConfigError(f"teacher spec '{section.spec}': expected backend[:count][,backend[:count]...]")
        if section.variations is None:
            variations = list(getattr(get_backend(backend), "variations", []))
        else:
            variations = section.variations.get(backend, [])
        for k in range(int(count) if count else section.count):
            index = len(members)
            options = {**section.options.get(backend, {}), **(variations[k % len(variations)] if variations else {})}
            members.append(TeacherMember(index, backend, options, section.seed + index))
    return members
