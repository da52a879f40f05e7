"""The label stage: every teacher's forces, energies and (periodic) stresses on every
conformation, in one loop over blocks of conformations for data in memory and streamed alike.

Blocks are whole batches of the ensemble's prediction, so the labels do not depend on the block
size or the number of ranks. With a cache folder each block's predictions are saved there first
(``block-<k>.npz``, with the hash of the data, the teachers' weights and the block size): an
interrupted labelling redoes only the missing blocks, and under ``torchrun`` rank ``r`` predicts
blocks ``r, r + W, …``. Data in memory give a :class:`Labels`; streamed data are written to the
labels file a block at a time, holding one block's member forces.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ekd import distributed
from ekd._io import atomic_path
from ekd.data import Dataset, StreamedDataset, stream
from ekd.data.frames import PerConformation
from ekd.data.labels import Labels, LabelsWriter, TeacherRecord, make_provenance, read_provenance
from ekd.ensemble import Ensemble
from ekd.errors import ConfigError, DataError
from ekd.progress import progress_bar
from ekd.provenance import sha256_file, sha256_json, sha256_source, sha256_weights

__all__ = ["BLOCK", "block_size", "label", "labels_of", "made_by"]

#: most conformations in one block (a block's member forces are held in memory)
BLOCK = 4096
#: conformations per batch of :meth:`Ensemble.predict`: blocks are made of whole batches
_BATCH = 256

Predictions = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def block_size(conformations: int, ranks: int = 1) -> int:
    """Conformations per block: the ranks' shares in whole batches, at most :data:`BLOCK`."""
    share = -(-conformations // max(ranks, 1))
    return max(_BATCH, min(BLOCK, -(-share // _BATCH) * _BATCH))


def label(data: PerConformation, teachers: Ensemble, out: str | os.PathLike | None = None, config: dict | None = None,
          cache: str | os.PathLike | None = None, block: int | None = None, show_progress: bool = True) -> Labels | StreamedDataset:
    """Every member's forces (eV/Å) and energies (eV) on every conformation of ``data``, and
    stresses (eV/Å³) when some conformations are periodic.

    Args:
        data: a :class:`Dataset`, or a streamed one (``ekd.data.stream``: labelled a block at a
            time into ``out``). Its own forces and stresses are never part of the labels.
        teachers: any ensemble; the members a :class:`~ekd.pipeline.teach.Teachers` left out
            are recorded as such.
        out: the labels file to write (required for streamed data).
        config: recorded in the labels' provenance.
        cache: folder for each block's predictions (needed on several ranks; see the module).
        block: conformations per block (default :func:`block_size`).
    Returns the :class:`Labels` of data in memory; for streamed data, ``out`` opened as the
    students' training view (:func:`ekd.data.stream`).
    """
    if not len(data):
        raise DataError(f"{data.metadata.get('source', 'data')}: no conformations to label")
    in_memory = isinstance(data, Dataset)
    if not in_memory and out is None:
        raise ConfigError("label: streamed data are labelled into a file: give out=PATH")
    if cache is None and distributed.world() > 1:
        raise ConfigError("label: labelling on several ranks needs a cache folder (cache=DIR)")
    unlabelled, periodic = data.without_forces(), bool(data.periodic.any())
    size = block or block_size(len(unlabelled), distributed.world())
    saved = _cache_predictions(unlabelled, teachers, periodic, size, Path(cache), show_progress) if cache is not None else None
    blocks = _blocks(unlabelled, teachers, periodic, size, saved, show_progress and saved is None)
    records, provenance = _teacher_records(teachers), make_provenance(data, config)
    left_out = [{"name": name, "reason": reason} for name, reason in getattr(teachers, "left_out", {}).items()]
    labels = None
    if in_memory:
        forces, energies, stresses = zip(*(predicted for _, predicted in blocks))
        labels = Labels(unlabelled, np.concatenate(forces, axis=1), records, np.concatenate(energies, axis=1), left_out, provenance,
                        np.concatenate(stresses, axis=1) if periodic else None, getattr(teachers, "trained_on", None))
        if out is not None and distributed.is_main():
            labels.write(out)
    elif distributed.is_main():
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as handle:
            writer = LabelsWriter(handle)
            for part, (forces, energies, stresses) in blocks:
                written = Labels(part, forces, records, energies, left_out, provenance, stresses)
                writer.append(written)
            writer.finish(written)
    distributed.barrier()  # (every rank has read the blocks, and the file is written)
    if saved is not None and distributed.is_main():
        for file in saved:
            file.unlink()
    return labels if in_memory else stream(out)


def labels_of(path: Path, data: PerConformation, energies: str = "reference") -> Labels | StreamedDataset:
    """The labels file ``path`` made from ``data``: its :class:`Labels` for data in memory, or
    for streamed data the file opened as the students' training view with ``energies``; refused
    (a one-line error naming the file) when it was made from other data."""
    if isinstance(data, Dataset):
        labels = Labels.read(path)
        labels.check_matches(data)
        return labels
    view = stream(path, energies=energies)
    if view.metadata["provenance"].get("source_sha256") != sha256_source(data) or len(view) != len(data):
        raise DataError(f"{path}: labels were made from other data than {data.metadata.get('source')}; run 'ekd label' again")
    return view


def made_by(path: Path, teachers: Ensemble) -> bool:
    """Whether the labels file ``path`` was made by these very teacher checkpoints (the sha256 of
    each member's file, as recorded in its provenance)."""
    try:
        recorded = [t.get("checkpoint_sha256") for t in read_provenance(path)["teachers"]]
    except DataError:  # (unreadable, e.g. truncated: made again)
        return False
    return recorded == [sha256_file(m.path) if m.path else None for m in teachers.models]


def _block(unlabelled: PerConformation, first: int, size: int) -> Dataset:
    return unlabelled.subset(np.arange(first, min(first + size, len(unlabelled)))).load()


def _cache_predictions(unlabelled: PerConformation, ensemble: Ensemble, periodic: bool, size: int, cache: Path, show_progress: bool) -> list[Path]:
    """This rank's blocks' member predictions saved in ``cache/block-<k>.npz`` (those saved with
    the same data, teachers and block size are kept); every block's file, once all ranks are done."""
    ranks, me = distributed.world(), distributed.rank()
    inputs = sha256_json("label-block", unlabelled.sha256(), [sha256_weights(m.module) for m in ensemble.models], size)
    firsts = range(0, len(unlabelled), size)
    files = [cache / f"block-{k}.npz" for k in range(len(firsts))]
    mine = range(me, len(files), ranks)
    with progress_bar("label", sum(min(size, len(unlabelled) - firsts[k]) for k in mine), show_progress and distributed.is_main(),
                      unit="conformation") as bar:
        for k in mine:
            if _saved_inputs(files[k]) != inputs:
                _save_predictions(files[k], inputs, _member_predictions(_block(unlabelled, firsts[k], size), ensemble, periodic))
            bar.update(min(size, len(unlabelled) - firsts[k]))
    distributed.barrier()
    return files


def _blocks(unlabelled: PerConformation, ensemble: Ensemble, periodic: bool, size: int, saved: list[Path] | None, show_progress: bool):
    """(block in memory, its member predictions) in order: read from the ``saved`` files, or predicted here."""
    with progress_bar("label", len(unlabelled), show_progress, unit="conformation") as bar:
        for k, first in enumerate(range(0, len(unlabelled), size)):
            part = unlabelled if size >= len(unlabelled) and isinstance(unlabelled, Dataset) else _block(unlabelled, first, size)
            yield part, (_read_predictions(saved[k], periodic) if saved else _member_predictions(part, ensemble, periodic))
            bar.update(len(part))


def _member_predictions(frames: Dataset, ensemble: Ensemble, periodic: bool) -> Predictions:
    """Every member's forces (M, A, 3), energies (M, N) and, for periodic data, stresses (M, N, 6)."""
    prediction = ensemble.predict(frames, forces=True, stress=periodic, show_progress=False)
    return prediction.member_forces, prediction.member_energy, prediction.member_stress if periodic else None


def _save_predictions(file: Path, inputs: str, predictions: Predictions) -> None:
    """Member forces, energies and (periodic) stresses with the hash of what made them, atomically."""
    arrays = dict(zip(("forces", "energies", "stresses"), predictions))
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, digest=inputs, **{k: v for k, v in arrays.items() if v is not None})


def _saved_inputs(file: Path) -> str | None:
    """The hash of the inputs a saved block of predictions was made from (None: no such file)."""
    if not file.is_file():
        return None
    with np.load(file) as saved:
        return str(saved["digest"])


def _read_predictions(file: Path, periodic: bool) -> Predictions:
    with np.load(file) as saved:
        return saved["forces"], saved["energies"], saved["stresses"] if periodic else None


def _teacher_records(ensemble: Ensemble) -> list[TeacherRecord]:
    return [TeacherRecord(m.backend.name, name, sha256_file(m.path) if m.path else None, (m.info.get("member") or {}).get("seed"), m.info.get("pretrained"))
            for name, m in zip(ensemble.names, ensemble.models)]
