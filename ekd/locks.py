"""One process at a time in a run directory: an advisory lock (``.lock``, holding the owner's
pid) taken for the duration of a stage; another process's stage there fails at once with a
one-line error instead of writing over the same files."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ekd.errors import ConfigError

__all__ = ["directory_lock"]

#: locks this process holds: directory → (open lock file, depth), so that a stage inside a stage re-enters
_HELD: dict[Path, tuple[object, int]] = {}


@contextmanager
def directory_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold ``directory``'s lock inside the block (re-entrant within this process)."""
    directory = Path(directory).resolve()
    if directory in _HELD:
        handle, depth = _HELD[directory]
        _HELD[directory] = (handle, depth + 1)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(f"{directory}: another ekd process (pid {owner}) is working in this run directory; "
                              "wait for it to finish, or use another --out") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        _HELD[directory] = (handle, 1)
    try:
        yield
    finally:
        handle, depth = _HELD[directory]
        if depth > 1:
            _HELD[directory] = (handle, depth - 1)
        else:
            del _HELD[directory]
            handle.close()  # (releases the lock)
