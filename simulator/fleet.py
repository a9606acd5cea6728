"""A fleet of simulated charge points: build from a spec, run in a nursery, script, query.

    async with trio.open_nursery() as nursery:
        fleet = Fleet(FleetSpec(seed=7, groups=(GroupSpec(count=10),), driver=None), csms_url)
        await nursery.start(fleet.run)          # returns when every charge point is started
        await fleet.wait_online()
        await fleet["CP0001"].plug_in(1)
        tx = await fleet["CP0001"].start_by_tag(1, "TAG0001")
        await fleet["CP0001"].unplug(1)
        print(fleet.truth())
        nursery.cancel_scope.cancel()

Charge points are started `spec.ramp` per second (a real fleet does not
reconnect all at once either). All of their tasks live under `run`.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from .chargepoint import ChargePoint
from .clock import SimClock
from .faults import FaultBook
from .fleetspec import FleetSpec, SessionPlan, session_plan, session_plans
from .identity import make_identity
from .replay import ReplayScript
from .shard import ChargePointPlan, Shard, plan_fleet
from .stats import Stats
from .trace import TRACE_VERSION, TraceWriter
from .truth import ChargePointTruth

__all__ = ["Fleet"]


class Fleet:
    def __init__(
        self,
        spec: FleetSpec,
        csms: str,
        *,
        trace: TraceWriter | None = None,
        replay: ReplayScript | None = None,
        epoch: datetime | None = None,
        run_info: dict[str, Any] | None = None,
        password: str | Callable[[str], str | None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        shard: Shard | None = None,
    ) -> None:
        """password: every charge point's HTTP Basic password, or a function of its id (per group,
        per charge point); ssl_context: for a wss:// CSMS whose CA the system does not trust.
        Neither is part of the spec, so neither lands in a trace.

        shard: build and run only this process's share of the fleet (`unstuck-sim run --procs N`);
        each charge point starts at its place in the whole fleet, and time 0 is `epoch` on the
        wall clock, so the shards of N processes keep the one schedule."""
        self.spec = spec
        self.csms = csms.rstrip("/")
        self.trace = trace or TraceWriter()
        self.stats = Stats()
        self.epoch = epoch
        self.run_info = dict(run_info or {})
        self.clock: SimClock | None = None
        self.elapsed = 0.0  # simulation seconds the last run lasted
        self.shard = shard
        self._cps: dict[str, ChargePoint] = {}
        self._places: dict[str, ChargePointPlan] = {}
        for plan in plan_fleet(spec, shard):
            cp_id, group, rng = plan.cp_id, plan.group, plan.rng
            if replay is not None and cp_id not in replay.charge_points:
                continue
            self._places[cp_id] = plan
            connectors = range(1, group.connectors + 1)
            book = FaultBook(
                cp_id,
                connectors,
                group.faults + spec.faults,
                rng.child("faults"),
                forced=replay.forced.get(cp_id, frozenset()) if replay is not None else None,
            )
            plans: dict[int, Iterable[SessionPlan]] | None = None
            if replay is not None:
                plans = dict(replay.plans_for(cp_id, connectors))
            elif spec.driver is not None and group.driven:
                driver_rng = rng.child("driver")
                plans = {cid: session_plans(driver_rng, spec.driver, group, cid) for cid in connectors}
            self._cps[cp_id] = ChargePoint(
                cp_id,
                url=self.csms,
                group=group,
                spec=spec,
                rng=rng,
                book=book,
                identity=make_identity(rng.bits64("identity")),
                trace=self.trace,
                stats=self.stats,
                plans=plans,
                password=password(cp_id) if callable(password) else password,
                ssl_context=ssl_context,
            )
        self.stats.charge_points = len(self._cps)

    def __getitem__(self, cp_id: str) -> ChargePoint:
        return self._cps[cp_id]

    def __iter__(self) -> Iterator[ChargePoint]:
        return iter(self._cps.values())

    def __len__(self) -> int:
        return len(self._cps)

    @property
    def ids(self) -> list[str]:
        return list(self._cps)

    @property
    def plans(self) -> list[ChargePointPlan]:
        """Each charge point's place in the whole fleet, start moment and random stream."""
        return list(self._places.values())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every charge point (staggered), report started, run until cancelled."""
        if self.shard is not None:
            await self._run_shard(task_status=task_status)
            return
        clock = self.clock = SimClock(self.epoch)
        self.trace.now = clock.now
        self.trace.write(
            None,
            "header",
            version=TRACE_VERSION,
            epoch=clock.iso(0.0),
            csms=self.csms,
            spec=self.spec.to_mapping(),
            run=self.run_info,
        )
        try:
            async with trio.open_nursery() as nursery:
                for i, cp in enumerate(self._cps.values()):
                    await nursery.start(partial(cp.run, clock=clock))
                    await clock.sleep_until((i + 1) / self.spec.ramp)
                task_status.started()
        finally:
            self.elapsed = clock.now()
            self.trace.now = lambda: self.elapsed
            self.trace.flush()

    async def _run_shard(self, *, task_status: trio.TaskStatus[None]) -> None:
        """One shard: time 0 is the epoch on the wall clock (shared by every process of the run), and
        each charge point starts at `place / ramp` as in the whole fleet. No header: the parent writes it."""
        epoch = self.epoch or datetime.now(UTC)
        start = trio.current_time() + (epoch.timestamp() - time.time())
        clock = self.clock = SimClock(epoch, start=start)
        self.trace.now = clock.now
        try:
            async with trio.open_nursery() as nursery:
                for cp_id, cp in self._cps.items():
                    await clock.sleep_until(self._places[cp_id].start_at)
                    await nursery.start(partial(cp.run, clock=clock))
                task_status.started()
        finally:
            self.elapsed = max(0.0, clock.now())
            self.trace.now = lambda: self.elapsed
            self.trace.flush()

    def schedule(self, sessions: int = 3) -> dict[str, dict[str, Any]]:
        """What the seed decided for each charge point, as plain data: place and start moment,
        identity, the faults that apply and the timed ones' moments, the first `sessions` car visits
        per connector, and a probe of its random stream (equal probes: equal draws everywhere).
        Reads nothing that running changes, so it is the same before, during and after a run."""
        out: dict[str, dict[str, Any]] = {}
        for cp_id, cp in self._cps.items():
            plan = self._places[cp_id]
            driver_rng = cp.rng.child("driver")
            out[cp_id] = {
                "place": plan.place,
                "start_at": plan.start_at,
                "group": plan.group.prefix,
                "connectors": sorted(cp.connectors),
                "identity": dataclasses.asdict(cp.identity),
                "rng_probe": cp.rng.bits64("probe"),
                "faults": [f.to_mapping() for f in cp.book.specs],
                "timed_faults": [(f.name, f.connector, f.index, f.at) for f in cp.book.timed()],
                "sessions": {
                    cid: [
                        session_plan(driver_rng, self.spec.driver, plan.group, cid, n).to_mapping()
                        for n in range(sessions)
                    ]
                    for cid in cp.connectors
                }
                if self.spec.driver is not None and plan.group.driven
                else {},
            }
        return out

    async def wait_online(self, ids: Iterable[str] | None = None) -> None:
        """Until the given (default: all) charge points are connected and booted."""
        for cp_id in ids or self._cps:
            await self._cps[cp_id].wait_online()

    async def stop_driving(self) -> None:
        """Every charge point's traffic ends: cars finish and leave, no new ones come."""
        for cp in self._cps.values():
            await cp.stop_driving()

    def truth(self) -> list[ChargePointTruth]:
        return [cp.truth() for cp in self._cps.values()]
