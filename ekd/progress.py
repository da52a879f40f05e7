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

__all__ = ["ProgressCallback", "ProgressEvent", "notify", "progress_bar"]


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
