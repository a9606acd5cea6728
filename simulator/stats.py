"""Fleet-wide counters for the progress line and the summary table.

Plain integers bumped from the one trio thread; no locks needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Stats"]


@dataclass
class Stats:
    charge_points: int = 0
    connected: int = 0
    peak_connected: int = 0
    connects: int = 0
    connect_failures: int = 0
    boots: int = 0
    sessions: int = 0  # transactions started
    sessions_done: int = 0  # transactions ended (whatever the CSMS heard)
    energy_wh: float = 0.0
    sent: int = 0
    received: int = 0
    queued_lost: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def active(self) -> int:
        return self.sessions - self.sessions_done

    def line(self, t: float) -> str:
        errors = sum(self.errors.values())
        return (
            f"[{t:7.1f}s] connected {self.connected}/{self.charge_points}  "
            f"sessions {self.sessions} (active {self.active})  "
            f"faults {sum(self.faults.values())}  errors {errors}"
        )
