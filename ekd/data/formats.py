"""What a data format is: :class:`Reader` (a file layout ekd can read, and how). The format modules
and the registry (:mod:`ekd.data.readers`) share it; how to read is :class:`ekd.data.options.ReadOptions`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

from ekd.data.frames import Dataset
from ekd.data.options import ReadOptions

__all__ = ["BlockReader", "Reader"]

#: ``blocks(path, options, metadata)``: the file as consecutive Dataset blocks (one molecule's
#: conformations, say), filling ``metadata`` in as it goes; joined, they are the whole file
BlockReader = Callable[[Path, ReadOptions, dict], Iterator[Dataset]]


@dataclasses.dataclass(frozen=True)
class Reader:
    """A file layout ekd can read.

    ``detect(path)`` says whether a file has this layout (cheaply, without reading it all);
    ``read(path, options)`` returns Dataset in eV/Å with ``metadata`` filled in;
    ``options`` lists the :class:`ReadOptions` fields it understands; ``blocks``, when the layout
    can be read a block at a time (:data:`BlockReader`), lets :func:`ekd.data.convert` copy a
    file larger than memory.
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], Dataset]
    options: frozenset[str] = frozenset()
    blocks: BlockReader | None = None
