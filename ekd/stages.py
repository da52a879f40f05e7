"""Bookkeeping of resumable stages: a stage directory knows which config produced it.

``stage.json`` holds the hash of everything the stage's output depends on, its status and its
cost. A finished stage with the same hash is skipped; a stage whose inputs changed is redone
from scratch; an unfinished one with the same hash is resumed (the trainer continues from its
checkpoint).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ekd._io import atomic_path
from ekd.provenance import sha256_file

__all__ = ["Stage"]


class Stage:
    """One resumable unit of work living in ``directory``, made from inputs whose sha256
    (:mod:`ekd.provenance`) is ``inputs_sha256`` (see module docstring)."""

    def __init__(self, directory: Path, inputs_sha256: str):
        self.directory, self.inputs_sha256 = Path(directory), inputs_sha256
        self.record_path = self.directory / "stage.json"
        self._started = None

    def record(self) -> dict | None:
        if not self.record_path.is_file():
            return None
        return json.loads(self.record_path.read_text())

    @property
    def done(self) -> bool:
        """Finished with the same inputs, and the outputs it recorded are intact."""
        record = self.record()
        return record is not None and record["hash"] == self.inputs_sha256 and record["status"] == "done" and self._intact(record)

    def _intact(self, record: dict) -> bool:
        """Whether each output recorded at :meth:`finish` still has its sha256 (a file truncated or
        replaced since is not the stage's output; records without outputs are taken as they are)."""
        outputs = record.get("outputs", {})
        return all((self.directory / name).is_file() and sha256_file(self.directory / name) == digest for name, digest in outputs.items())

    def start(self) -> None:
        """Clear outputs made from other inputs, or broken since; mark the stage as running."""
        record = self.record()
        broken = record is not None and record["status"] == "done" and not self._intact(record)
        if self.directory.exists() and (record is None or record["hash"] != self.inputs_sha256 or broken):
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write({"hash": self.inputs_sha256, "status": "running", "seconds": (record or {}).get("seconds", 0.0)})
        self._started = time.perf_counter()

    def record_time(self) -> None:
        """Add the time since :meth:`start` (or the last call) to the running stage's record, so
        that an attempt that is killed later keeps what it cost up to here (call it after each
        checkpoint)."""
        self._write({"hash": self.inputs_sha256, "status": "running", "seconds": self._spent()})

    def finish(self, outputs: tuple[str, ...] = (), **extra) -> None:
        """Mark the stage done, adding the time spent in this and earlier (interrupted) attempts;
        ``outputs`` (files in the stage directory) are recorded by sha256 and checked by :attr:`done`."""
        digests = {name: sha256_file(self.directory / name) for name in outputs}
        self._write({"hash": self.inputs_sha256, "status": "done", "seconds": self._spent(), **({"outputs": digests} if digests else {}), **extra})

    def _spent(self) -> float:
        """Seconds recorded so far plus those since the last record (which restarts the count)."""
        now = time.perf_counter()
        spent = (self.record() or {}).get("seconds", 0.0) + now - self._started
        self._started = now
        return round(spent, 2)

    def _write(self, record: dict) -> None:
        with atomic_path(self.record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
