"""Progress: bars on stderr (tqdm: count, rate, ETA, losses) and events for a caller's callback.

A callback (``on_progress``) gets a :class:`ProgressEvent` after every epoch of every model and
at the end of every stage; returning ``False`` cancels the run cleanly (:class:`Cancelled`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterator

from tqdm.auto import tqdm

from ekd.errors import Cancelled

__all__ = ["ProgressCallback", "ProgressEvent", "StageEstimate", "duration", "notify", "progress_bar"]


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """Where a run is.

    Attributes:
        stage: ``teach``, ``label``, ``students``, ``students and baselines``, ``evaluate``, ...
        model: the model being trained (``teachers/00-ani``, ``students/seed-200``) or None.
        epoch: the epoch just finished (1-based), or None for a stage event.
        epochs: that model's epoch bound (early stopping may end it sooner).
        metrics: the epoch's ``train_loss``, ``val_loss`` (training loss units), ``lr``, ``seconds``.
        finished: True when the stage has finished.
    """

    stage: str
    model: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    metrics: dict = dataclasses.field(default_factory=dict)
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], "bool | None"]


def notify(callback: ProgressCallback | None, event: ProgressEvent) -> None:
    """Call ``callback``; raise :class:`Cancelled` when it returns ``False``."""
    if callback is not None and callback(event) is False:
        where = f"{event.model} epoch {event.epoch}" if event.model else f"after {event.stage}"
        raise Cancelled(f"cancelled by the progress callback ({event.stage}: {where}); finished work is kept, run again to resume")


class _Bar:
    def __init__(self, bar: tqdm):
        self._bar = bar

    def advance(self, steps: int) -> None:
        """Move forward without new text (e.g. epochs already done before a resume)."""
        if steps:
            self._bar.update(steps)

    def update(self, advance: int = 0, info: str = "") -> None:
        """Move forward by ``advance`` and show ``info`` (losses, ...) beside the bar."""
        self._bar.set_postfix_str(info, refresh=False)
        self._bar.update(advance)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, unit: str = "epoch") -> Iterator[_Bar]:
    """A bar showing ``description``, done/total, rate, elapsed time and ETA."""
    with tqdm(total=total, desc=description, unit=unit, disable=not enabled, dynamic_ncols=True) as bar:
        yield _Bar(bar)


class StageEstimate:
    """Says once, after the first epochs, how long a stage of trainings will take (an upper
    bound: early stopping usually ends trainings sooner), and how to shorten a long one.

    Args:
        description: the stage (``teach``, ``students and baselines``, ...).
        total_epochs: the epoch bounds of all its trainings, summed.
        workers: trainings side by side.
        after: epochs measured before estimating.
        long_seconds: above this, say which option shortens the stage.
    """

    def __init__(self, description: str, total_epochs: int, workers: int, after: int = 3, long_seconds: float = 3600.0, write=None):
        import sys

        self.description, self.total, self.workers, self.after, self.long = description, total_epochs, max(1, workers), after, long_seconds
        self.seconds: list[float] = []
        self.write = write or (lambda line: tqdm.write(line, file=sys.stderr))  # above the progress bar
        self.said = False

    def epoch_done(self, seconds: float) -> None:
        """Record one finished epoch of any training of the stage (its wall seconds)."""
        self.seconds.append(float(seconds))
        if self.said or len(self.seconds) < self.after:
            return
        self.said = True
        per_epoch = sum(self.seconds) / len(self.seconds)
        left = per_epoch * (self.total - len(self.seconds)) / self.workers
        line = (f"ekd: {self.description}: at most {duration(left)} left ({per_epoch:.2f} s per epoch, {self.total} epochs in all, "
                f"{self.workers} at a time; early stopping usually ends sooner)")
        if left > self.long:
            line += "; --epochs N bounds every model, and a smaller model (its options) trains faster"
        self.write(line)


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``45 s``, ``12 min``, ``2.5 h``."""
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
