"""Simulation time: trio's clock, so tests can run a fleet under `autojump_clock`.

`now()` is seconds since the fleet started; `iso()` turns it into the wall-clock
timestamp OCPP messages carry, anchored at `epoch` (pass one for
reproducible timestamps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

__all__ = ["SimClock"]


class SimClock:
    __slots__ = ("start", "epoch")

    def __init__(self, epoch: datetime | None = None, start: float | None = None) -> None:
        self.start = trio.current_time() if start is None else start
        self.epoch = epoch or datetime.now(UTC)

    def now(self) -> float:
        return trio.current_time() - self.start

    def iso(self, t: float | None = None) -> str:
        moment = self.epoch + timedelta(seconds=self.now() if t is None else t)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    async def sleep_until(self, t: float) -> None:
        """Sleep until simulation time `t` (no-op if it has passed)."""
        await trio.sleep_until(self.start + t)
