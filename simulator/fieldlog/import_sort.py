"""Sorting an import's entries by time in bounded memory.

Why a module of its own: a field log can be bigger than the memory we may use (a night of a busy
site, or a month of one charger), and it is not always in time order (several log files pasted
together, a back end writing rows out of order). Entries arrive as (time, text) pairs in file order;
they are kept in a run of at most `run_bytes` of text, and each full run is sorted and spilled to a
temporary file. At the end the runs are merged with `heapq.merge` (or simply chained when the
input was already in order), so memory holds one run, never the log.

Equal times keep their file order (the sort is stable and the merge takes earlier runs first), so
a CALL and its answer logged in the same millisecond stay in that order.
"""

from __future__ import annotations

import heapq
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["RunSorter"]

RUN_BYTES = 16 << 20
_ENTRY_OVERHEAD = 120  # bytes of Python objects per kept entry besides its text (tuple, int, str header)


class RunSorter:
    """Collects (microseconds, text) entries; `merged()` gives them back sorted by time."""

    def __init__(self, tmp_dir: str | Path | None = None, run_bytes: int = RUN_BYTES) -> None:
        self.run_bytes = run_bytes
        self.out_of_order = 0  # entries earlier than the one before them in the input
        self._tmp_dir = tmp_dir
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._run: list[tuple[int, str]] = []
        self._size = 0
        self._last = -(1 << 62)
        self._files: list[Path] = []

    def add(self, us: int, text: str) -> None:
        """One entry; `text` must not contain a newline (it is one line of a run file)."""
        if us < self._last:
            self.out_of_order += 1
        self._last = us
        self._run.append((us, text))
        self._size += len(text) + _ENTRY_OVERHEAD
        if self._size >= self.run_bytes:
            self._spill()

    @property
    def spilled_runs(self) -> int:
        return len(self._files)

    def _spill(self) -> None:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="unstuck-import-", dir=self._tmp_dir)
        path = Path(self._dir.name) / f"run{len(self._files):05d}.txt"
        self._run.sort(key=_time)
        with open(path, "w", encoding="utf-8", buffering=1 << 16) as f:
            for us, text in self._run:
                f.write(f"{us}\t{text}\n")
        self._files.append(path)
        self._run = []
        self._size = 0

    def merged(self) -> Iterator[tuple[int, str]]:
        """Every entry, sorted by time (file order for equal times)."""
        self._run.sort(key=_time)
        runs: list[Iterator[tuple[int, str]]] = [_read_run(p) for p in self._files]
        runs.append(iter(self._run))
        if self.out_of_order == 0:
            return itertools.chain.from_iterable(runs)
        return heapq.merge(*runs, key=_time)

    def close(self) -> None:
        """Removes the spilled runs."""
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._files = []
        self._run = []

    def __enter__(self) -> RunSorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _time(entry: tuple[int, str]) -> int:
    return entry[0]


def _read_run(path: Path) -> Iterator[tuple[int, str]]:
    f: IO[str]
    with open(path, encoding="utf-8", buffering=1 << 16) as f:
        for line in f:
            us, _, text = line.rstrip("\n").partition("\t")
            yield int(us), text
