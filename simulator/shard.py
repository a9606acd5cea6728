"""Splitting one seeded fleet over N processes: who runs which charge point, and the sums.

Pure. Every draw a charge point makes is keyed by the seed and its id (see
`rng.py`), and its start moment by its place in the whole fleet, so a process
that builds only its shard of the fleet makes exactly the decisions the one
process would. `ChargePointPlan` is that place; `Fleet.schedule()` lays a
fleet's plans out as plain data so the identity can be checked without sockets.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError
from .fleetspec import FleetSpec, GroupSpec
from .rng import Rng
from .stats import Stats

__all__ = [
    "Shard",
    "ChargePointPlan",
    "plan_fleet",
    "plan_digest",
    "stats_to_mapping",
    "sum_stats",
    "merge_trace_lines",
    "trace_time",
]


@dataclass(frozen=True, slots=True)
class Shard:
    """Process `index` of `count` runs the charge points whose place in the fleet is `index` mod `count`.

    Round robin rather than blocks, so every process ramps up at the same pace.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index} of {self.count}: need 0 <= shard < procs")

    def owns(self, place: int) -> bool:
        return place % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


@dataclass(frozen=True, slots=True)
class ChargePointPlan:
    """What the seed says about one charge point before it runs: its id, group, place and draws."""

    place: int  # 0-based position in the whole fleet (spec order)
    cp_id: str
    group: GroupSpec
    start_at: float  # s of simulation time: `place / ramp`, whichever process runs it
    rng: Rng


def plan_fleet(spec: FleetSpec, shard: Shard | None = None) -> Iterator[ChargePointPlan]:
    """The charge points of the fleet (or of one shard of it), in fleet order."""
    root = Rng(spec.seed)
    for place, (cp_id, group) in enumerate(spec.charge_points()):
        if shard is None or shard.owns(place):
            yield ChargePointPlan(place, cp_id, group, place / spec.ramp, root.child("cp", cp_id))


def plan_digest(plans: Iterable[ChargePointPlan]) -> str:
    """A fingerprint of plans (places, ids, start moments, random streams): the parent checks that each
    child built the shard it planned, so a spec that did not survive the trip cannot go unnoticed."""
    h = hashlib.sha256()
    for p in plans:
        h.update(f"{p.place}:{p.cp_id}:{p.start_at!r}:{p.rng.bits64('probe')}\n".encode())
    return h.hexdigest()


_COUNTERS = tuple(f.name for f in fields(Stats) if f.name not in ("faults", "errors"))


def stats_to_mapping(stats: Stats) -> dict[str, Any]:
    """Stats as JSON-able data (a child process sends these to the parent)."""
    return {**{k: getattr(stats, k) for k in _COUNTERS}, "faults": dict(stats.faults), "errors": dict(stats.errors)}


def sum_stats(parts: Iterable[Mapping[str, Any]]) -> Stats:
    """The fleet's stats from its shards'. `peak_connected` is the sum of the shards' peaks:
    an upper bound of the fleet's (the shards need not peak at the same moment)."""
    total = Stats()
    for part in parts:
        for key in _COUNTERS:
            setattr(total, key, getattr(total, key) + part.get(key, 0))
        total.faults.update(Counter(part.get("faults", {})))
        total.errors.update(Counter(part.get("errors", {})))
    return total


def trace_time(line: str) -> float:
    """The `t` of a trace line. Every line the TraceWriter writes starts `{"t":<number>,`,
    so this reads the prefix instead of parsing a line that may hold a long frame."""
    if not line.startswith('{"t":'):
        raise ValueError("not a trace line")
    return float(line[5 : line.index(",", 5)])


def merge_trace_lines(shards: Iterable[Iterable[str]]) -> Iterator[str]:
    """The records of several shards' traces in time order, headers left out (the caller writes one).

    Each shard's lines are in time order already (one trio thread, a monotonic
    clock), so this is a k-way merge; on equal times the lower shard goes first.
    A cut last line (a process that was killed) is dropped.
    """

    def keyed(k: int, lines: Iterable[str]) -> Iterator[tuple[float, int, str]]:
        for line in lines:
            if not line.endswith("\n"):
                return  # cut short
            try:
                t = trace_time(line)
            except ValueError:
                continue
            if '"cp":null,"kind":"header"' in line[:80]:
                continue
            yield t, k, line

    for _t, _k, line in heapq.merge(*(keyed(k, lines) for k, lines in enumerate(shards))):
        yield line
