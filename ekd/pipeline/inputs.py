"""A run's inputs, resolved once: the config as it applies to its data, the data (in memory or
streamed), its split, the held-out and evaluation sets, the teacher members and the published
ensembles they come from. Every stage reads from this value; nothing re-reads, re-splits or
re-hashes what it holds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np

from ekd.data import DEFAULT_DATASET, Dataset, Split, StreamedDataset, stream
from ekd.data.embedded import resolve
from ekd.data.energy_units import check_energy_units
from ekd.ensemble import load_pretrained
from ekd.errors import ConfigError, DataError
from ekd.model import Model
from ekd.pipeline.starts import start_models
from ekd.provenance import sha256_source
from ekd.runconfig import DataSection, RunConfig, TeacherMember, parse_teacher_spec

__all__ = ["RunInputs", "resolve_inputs"]


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run works on, resolved from its config and data by :func:`resolve_inputs`.

    Attributes:
        config: the config as it applies: ``data.path`` names the data's file (given data are
            saved as one), ``data.test_path`` the held-out file the data name as theirs.
        data: the conformations (a :class:`Dataset`, or a streamed one with ``data.stream``).
        split_index: increasing conformation indices of (train, validation, test) of ``data``.
        split: those parts; ``test`` is the held-out file's set when there is one.
        energy_only: (train, validation) without forces, stresses or extras: what teachers and
            energy-only baselines see.
        held_out: the held-out test set read from ``data.test_path``, or None.
        evaluation: the evaluation files (``evaluate.files``) by stem.
        members: the teacher ensemble's members.
        published: the published ensembles the members come from, by (backend, path).
        energy_source: ``reference`` (the data's energies) or ``teachers`` (the ensemble's mean).
        notes: what makes a score less than it seems (a held-out or evaluation conformation that
            is also trained on), one line each; the run prints them and the report keeps them.
    """

    config: RunConfig
    data: Dataset | StreamedDataset
    split_index: tuple[np.ndarray, np.ndarray, np.ndarray]
    split: Split
    energy_only: tuple[Dataset | StreamedDataset, Dataset | StreamedDataset]
    held_out: Dataset | None
    evaluation: dict[str, Dataset]
    members: list[TeacherMember]
    published: dict[tuple[str, str], list[Model]]
    energy_source: Literal["reference", "teachers"]
    notes: tuple[str, ...] = ()

    @property
    def data_sha256(self) -> str:
        """sha256 naming the data (its file's, or its arrays' for data built in memory)."""
        return sha256_source(self.data)

    @property
    def streamed(self) -> bool:
        """Whether the data are read lazily (``data.stream``): labels then stay on disk too."""
        return isinstance(self.data, StreamedDataset)


def resolve_inputs(config: RunConfig, data: Dataset | None = None) -> RunInputs:
    """Read the data (or take ``data``, whose ``metadata["source"]`` is the file they are saved
    in), the held-out and evaluation files and the published ensembles, split the data once and
    check what a run would otherwise find late: the data's energies, a held-out set that shares
    conformations with them. Changes neither ``config`` nor ``data``."""
    if data is not None and data.metadata.get("source"):
        same_file = config.data.path and Path(data.metadata["source"]).resolve() == Path(config.data.path).resolve()
        if not same_file:  # saved as ekd HDF5: the reading options of another file do not apply
            kept = config.data.model_dump(include={"val_fraction", "test_fraction", "split", "seed", "test_path", "weight", "mix"})
            config = config.model_copy(update={"data": DataSection(path=str(Path(data.metadata["source"]).resolve()), **kept)})
    given, data = data is not None, data if data is not None else _read(config)
    if given and isinstance(data, Dataset):  # (files are checked when read)
        data.check_coordinates()
        check_energy_units(data)
    data, mix_notes = _mixed(config, data)
    if data.energy is None and config.student.energy_labels == "reference":
        raise DataError(f"{data.metadata.get('source')}: no reference energies (student.energy_labels: teachers labels energies too)")
    own, held_out_notes = data.metadata.get("held_out"), ()
    if own and not config.data.test_path and not given:  # the file the data name as their held-out set (embedded:ccsdt)
        path = Path(config.data.path) if config.data.path else DEFAULT_DATASET
        named = resolve(path).parent / own
        if named.is_file():
            config = config.model_copy(update={"data": config.data.model_copy(update={"test_path": str(named)})})
        else:  # (a part of such data saved elsewhere)
            held_out_notes = (f"{data.metadata.get('source')}: the data name {own} as their held-out set, and it is not beside them; "
                              "the test set is a data.test_fraction cut (data.test_path names the file)",)
    held_out = _held_out(config, data)
    split_index = data.split_indices(config.data.fractions, by=config.data.split, seed=config.data.seed)
    train, validation, test = (data.subset(index) for index in split_index)
    published: dict[tuple[str, str], list[Model]] = {}

    def published_size(backend: str, path: str) -> int:
        published[backend, path] = load_pretrained(backend, path, device="cpu")
        return len(published[backend, path])

    evaluation = {Path(p).stem: Dataset.read(p) for p in config.evaluate.files}
    members = parse_teacher_spec(config.teachers, published_size, config.sized_options)
    for models in start_models(config, published).values():  # (a start model that cannot be is an error now, before any training)
        for model in models:
            data.check_elements(model.species, f"the start model {model.path or model.info['pretrained'].get('name')} (teachers.init_from)")
    return RunInputs(
        config=config,
        data=data,
        split_index=split_index,
        split=Split(train, validation, test if held_out is None else held_out),
        energy_only=(train.without_forces(), validation.without_forces()),
        held_out=held_out,
        evaluation=evaluation,
        members=members,
        published=published,
        energy_source=config.energy_source(data.energy is not None),
        notes=mix_notes + held_out_notes + _overlaps(data, (train, validation), test if held_out is None else None, evaluation),
    )


def _read(config: RunConfig) -> Dataset | StreamedDataset:
    """``config.data.path`` (default: the embedded reference set), in memory or streamed."""
    path = Path(config.data.path) if config.data.path else DEFAULT_DATASET
    if not config.data.stream:
        return Dataset.read(path, config.data.reading_only())
    if config.data.reading_only().given():
        raise ConfigError(f"{path}: reading options ({', '.join(sorted(config.data.reading_only().given()))}) do not apply with "
                          "data.stream (the file is ekd HDF5: convert it with them first, 'ekd data convert')")
    if config.student.weighting == "inverse_spread":
        raise ConfigError("student.weighting: inverse_spread needs the labels in memory; it does not work with data.stream")
    return stream(resolve(path))


def _mixed(config: RunConfig, data: Dataset | StreamedDataset) -> tuple[Dataset | StreamedDataset, tuple[str, ...]]:
    """``data`` joined by the ``data.mix`` files, each conformation carrying its source's loss
    weight (times any weight it had, the spread gate's) in ``atom_data['weight']``; a note when
    the sources' energies are on different levels of theory."""
    if not config.data.mix:
        return data, ()
    sources = [(data, config.data.weight)] + [(Dataset.read(m.path), m.weight) for m in config.data.mix]
    with_energies = [frames.energy is not None for frames, _ in sources]
    if any(with_energies) and not all(with_energies):
        lacking = next(frames for frames, _ in sources if frames.energy is None)
        raise DataError(f"{lacking.metadata.get('source')}: no energies, but the other data.mix sources have them (mix sources with energies, "
                        "or all without: student.energy_labels teachers)")
    parts = []
    for frames, weight in sources:
        own = frames.atom_data.get("weight", np.ones(frames.n_atoms))
        parts.append(dataclasses.replace(frames, atom_data={**frames.atom_data, "weight": own * weight}))
    joined = Dataset.concatenate(parts)
    levels = {frames.metadata.get("level_of_theory") for frames, _ in sources}
    metadata = {k: v for k, v in data.metadata.items() if k != "sha256"}  # (the file's hash does not name the mix)
    metadata.update(level_of_theory=levels.pop() if len(levels) == 1 else None,
                    mixed=[{"source": f.metadata.get("source"), "sha256": sha256_source(f), "weight": w, "conformations": len(f)} for f, w in sources])
    joined = dataclasses.replace(joined, metadata=metadata)
    notes = ()
    if len({frames.metadata.get("level_of_theory") for frames, _ in sources}) > 1:
        found = ", ".join(f"{f.metadata.get('source')}: {f.metadata.get('level_of_theory') or 'not recorded'}" for f, _ in sources)
        notes = (f"data.mix: the sources' energies are on different levels of theory ({found}); a student learns one energy surface, "
                 "so their absolute energies disagree (student.energy_labels: teachers puts every source on the teachers' level)",)
    return joined, notes


def _overlaps(data: Dataset | StreamedDataset, trained: tuple, test: Dataset | None, evaluation: dict[str, Dataset]) -> tuple[str, ...]:
    """Notes on scored conformations that are also trained on or selected with: the test split's
    copies of training ones (a dataset of repeated conformations) and evaluation files' overlap
    with the data (not checked for streamed data, whose positions are not read whole)."""
    if not isinstance(data, Dataset):
        return ()
    seen = set(trained[0].conformation_keys()) | set(trained[1].conformation_keys())
    notes = []
    if test is not None and len(test):
        copies = sum(key in seen for key in test.conformation_keys())
        if copies:
            notes.append(f"{copies} of the {len(test)} held-out test conformations are copies of training or validation ones: "
                         "their scores are not independent of the training")
    for name, frames in evaluation.items():
        shared = sum(key in seen for key in frames.conformation_keys())
        if shared:
            notes.append(f"evaluation file {frames.metadata.get('source', name)}: {shared} of its {len(frames)} conformations are in the "
                         "training or validation split: its scores are not independent of the training")
    return tuple(notes)


def _held_out(config: RunConfig, data: Dataset | StreamedDataset) -> Dataset | None:
    """The held-out test set of ``data.test_path`` (None: a cut of the data), refused when it
    shares a conformation with the data (it would be trained on)."""
    path = config.data.test_path
    if not path:
        return None
    if not resolve(path).is_file():
        raise ConfigError(f"data.test_path: {path} does not exist (the held-out test set's file)")
    held_out = Dataset.read(path)
    if held_out.energy is None and held_out.forces is None:
        raise DataError(f"{path}: the held-out test set has neither reference energies nor forces to score against")
    keys, shared = set(held_out.conformation_keys()), set()
    for _, block in data.blocks():  # (a block at a time: the data may be streamed)
        shared |= keys.intersection(block.conformation_keys())
    if shared:
        raise DataError(f"{path}: {len(shared)} of its {len(held_out)} held-out conformations are also in the training data "
                        f"{data.metadata.get('source')}: a held-out set must not be trained on")
    return held_out
