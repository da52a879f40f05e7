"""Progress bars (tqdm on stderr) with count, rate, ETA and a free-text field for losses."""

from __future__ import annotations

import contextlib
from typing import Iterator

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


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
