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
        record = self.record()
        return record is not None and record["hash"] == self.inputs_sha256 and record["status"] == "done"

    def start(self) -> None:
        """Clear outputs made from other inputs; mark the stage as running."""
        record = self.record()
        if self.directory.exists() and (record is None or record["hash"] != self.inputs_sha256):
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write({"hash": self.inputs_sha256, "status": "running", "seconds": (record or {}).get("seconds", 0.0)})
        self._started = time.perf_counter()

    def record_time(self) -> None:
        """Add the time since :meth:`start` (or the last call) to the running stage's record, so
        that an attempt that is killed later keeps what it cost up to here (call it after each
        checkpoint)."""
        self._write({"hash": self.inputs_sha256, "status": "running", "seconds": self._spent()})

    def finish(self, **extra) -> None:
        """Mark the stage done, adding the time spent in this and earlier (interrupted) attempts."""
        self._write({"hash": self.inputs_sha256, "status": "done", "seconds": self._spent(), **extra})

    def _spent(self) -> float:
        """Seconds recorded so far plus those since the last record (which restarts the count)."""
        now = time.perf_counter()
        spent = (self.record() or {}).get("seconds", 0.0) + now - self._started
        self._started = now
        return round(spent, 2)

    def _write(self, record: dict) -> None:
        with atomic_path(self.record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
