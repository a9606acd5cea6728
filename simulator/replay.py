"""Rebuild a run from its trace: the same fleet, the same car visits, the same faults.

The header gives the fleet spec and seed; `session` records give each
connector's visits; `fault` records say which opportunities fired. Replaying
forces exactly those firings (instead of drawing) so a bug seen once comes back
even if a different CSMS gives the charge points different opportunities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TraceError
from .faults import ForcedKey
from .fleetspec import FleetSpec, SessionPlan
from .trace import read_trace

__all__ = ["ReplayScript", "ScriptedTraceError"]


class ScriptedTraceError(TraceError):
    """A trace with no car visits to rebuild: a scenario scripted its sessions, so a replay would send nothing
    of them. Its frames can be replayed instead, once imported as a frame log."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            f"{path}: this trace's sessions were scripted by a scenario; import it as frames to replay it: "
            f"unstuck-sim import {path} --format trace -o frames.jsonl"
        )


@dataclass
class ReplayScript:
    spec: FleetSpec
    run: dict[str, Any]
    charge_points: frozenset[str]
    sessions: dict[tuple[str, int], list[SessionPlan]] = field(default_factory=dict)
    forced: dict[str, frozenset[ForcedKey]] = field(default_factory=dict)
    end: float = 0.0  # time of the trace's last record

    @classmethod
    def from_trace(cls, path: str | Path, only: Iterable[str] | None = None) -> ReplayScript:
        records = read_trace(path)
        header = next(records)
        try:
            spec = FleetSpec.from_mapping(header["spec"])
        except KeyError:
            raise TraceError(f"{path}: header has no fleet spec") from None
        wanted = frozenset(only) if only else None
        every = frozenset(cp for cp, _group in spec.charge_points())
        if wanted is not None and not wanted <= every:
            raise TraceError(f"{path}: no charge points {sorted(wanted - every)} in this trace")
        sessions: dict[tuple[str, int], list[SessionPlan]] = {}
        forced: dict[str, set[ForcedKey]] = {}
        end = 0.0
        visits = transactions = False
        for r in records:
            end = max(end, float(r.get("t", 0.0)))
            visits = visits or r.get("kind") == "session"
            transactions = transactions or r.get("kind") == "tx"
            cp = r.get("cp")
            if cp is None or (wanted is not None and cp not in wanted):
                continue
            if r["kind"] == "session":
                fields = {k: r[k] for k in SessionPlan.__slots__}
                sessions.setdefault((cp, r["connector"]), []).append(SessionPlan(**fields))
            elif r["kind"] == "fault":
                forced.setdefault(cp, set()).add((r["fault"], r["connector"], r["index"]))
        if not visits and (transactions or "scenario" in header.get("run", {})):
            raise ScriptedTraceError(path)
        return cls(
            spec=spec,
            run=dict(header.get("run", {})),
            charge_points=wanted or every,
            sessions=sessions,
            forced={cp: frozenset(keys) for cp, keys in forced.items()},
            end=end,
        )

    def plans_for(self, cp: str, connectors: Iterable[int]) -> dict[int, list[SessionPlan]]:
        return {cid: self.sessions.get((cp, cid), []) for cid in connectors}
