"""The seeded random session driver: plays one connector's car visits, one after another.

Every visit is a `SessionPlan` decided up front from the seed (and written to
the trace), so the same seed gives the same visits whatever the CSMS answers;
only the waiting for a free connector depends on the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import trio

from .errors import TransitionError
from .fleetspec import SessionPlan
from .model import Car, Event, State
from .trace import TraceWriter

__all__ = ["Driven", "drive"]


class Driven(Protocol):
    """The charge point a driver plays cars at (simulator.chargepoint.ChargePoint is one)."""

    id: str
    trace: TraceWriter
    connectors: Mapping[int, Any]  # SimConnector: .model, .tx, .changed
    operative: bool

    async def plug_in(self, connector_id: int, car: Car | None = None) -> None: ...
    async def start_by_tag(self, connector_id: int, tag: str, *, remote: bool = False, wait: bool = True) -> Any: ...
    async def stop(self, connector_id: int, reason: str = "Local") -> None: ...
    async def unplug(self, connector_id: int) -> None: ...


IDLE_POLL = 5.0  # s; availability changes do not wake the driver, so look again now and then


async def _wait_idle(cp: Driven, connector_id: int) -> None:
    plug = cp.connectors[connector_id]
    while not (plug.model.state is State.UNPLUGGED and plug.tx is None and plug.model.operative and cp.operative):
        with trio.move_on_after(IDLE_POLL):
            await plug.changed.wait()


async def drive(cp: Driven, connector_id: int, plans: Iterable[SessionPlan]) -> None:
    plug = cp.connectors[connector_id]
    for plan in plans:
        cp.trace.write(cp.id, "session", **plan.to_mapping())
        await trio.sleep(plan.gap)
        await _wait_idle(cp, connector_id)
        started = trio.current_time()
        await cp.plug_in(connector_id, plan.car)
        try:
            tx = await cp.start_by_tag(connector_id, plan.tag, wait=False)
        except TransitionError:
            tx = None
        stay = plan.duration - (plan.linger if plan.ending == "local" else 0.0)
        await trio.sleep_until(started + max(0.0, stay))
        if plan.ending == "local" and tx is not None and plug.tx is tx:
            await cp.stop(connector_id, "Local")
            await trio.sleep(plan.linger)
        if plug.model.can(Event.UNPLUG):
            await cp.unplug(connector_id)
