"""Watching a run: sample the CSMS's verdicts on a schedule, stamped with the fleet's clock.

The observer is the only part of the harness that asks the CSMS while the
fleet runs. It keeps plain `Sample`s for the oracle and a small live count for
the progress line; a raw-signal mapping that did not change since the last
sample is shared, not copied, so long runs stay small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from simulator import Fleet

from .adapters.base import BUSY, FREE, CsmsAdapter, Verdict
from .oracle import Sample

__all__ = ["Observer", "LiveCounts"]

log = logging.getLogger("scenarios.observe")


@dataclass(slots=True)
class LiveCounts:
    t: float = 0.0
    free: int = 0
    busy: int = 0
    offline: int = 0
    other: int = 0
    errors: int = 0

    def line(self) -> str:
        return (
            f"t={self.t:6.1f}s  verdicts: free {self.free}  busy {self.busy}  offline {self.offline}"
            + (f"  other {self.other}" if self.other else "")
            + (f"  ask-errors {self.errors}" if self.errors else "")
        )


class Observer:
    """Asks `adapter.verdicts` for every connector of `fleet` every `interval` s while running."""

    def __init__(
        self,
        adapter: CsmsAdapter,
        fleet: Fleet,
        *,
        interval: float = 0.5,
        on_sample: Callable[[LiveCounts], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.fleet = fleet
        self.interval = interval
        self.on_sample = on_sample
        self.samples: list[Sample] = []
        self.counts = LiveCounts()
        self.keys = [(cp.id, c) for cp in fleet for c in cp.connectors]
        self._last: dict[tuple[str, int], Verdict] = {}

    def now(self) -> float:
        clock = self.fleet.clock
        return 0.0 if clock is None else clock.now()

    async def sample_once(self) -> None:
        t = self.now()
        try:
            verdicts = await self.adapter.verdicts(self.keys)
        except Exception as exc:  # a CSMS that cannot answer right now is seen in the counts, not a crash
            self.counts.errors += 1
            if self.counts.errors in (1, 10, 100):
                log.warning("could not ask the CSMS for verdicts (%d times so far): %s", self.counts.errors, exc)
            return
        until = self.now()
        counts = LiveCounts(t=t, errors=self.counts.errors)
        for key, verdict in verdicts.items():
            prev = self._last.get(key)
            if prev is not None and prev == verdict and prev.signals == verdict.signals:
                verdict = prev  # share the unchanged object
            self._last[key] = verdict
            self.samples.append(Sample(t, key[0], key[1], verdict, until))
            if verdict.verdict == FREE:
                counts.free += 1
            elif verdict.verdict == BUSY:
                counts.busy += 1
            elif verdict.verdict == "offline":
                counts.offline += 1
            else:
                counts.other += 1
        self.counts = counts
        if self.on_sample is not None:
            self.on_sample(counts)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample until cancelled; the first sample is taken before `started`."""
        await self.sample_once()
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            await self.sample_once()

    def latest(self, cp: str, connector: int) -> Verdict | None:
        return self._last.get((cp, connector))
