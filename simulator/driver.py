"""The seeded random session driver: plays one connector's car visits, one after another.

Every visit is a `SessionPlan` decided up front from the seed (and written to
the trace), so the same seed gives the same visits whatever the CSMS answers;
only the waiting for a free connector depends on the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from .errors import TransitionError
from .fleetspec import SessionPlan
from .model import Event, State

if TYPE_CHECKING:
    from .chargepoint import ChargePoint

__all__ = ["drive"]

IDLE_POLL = 5.0  # s; availability changes do not wake the driver, so look again now and then


async def _wait_idle(cp: ChargePoint, connector_id: int) -> None:
    plug = cp.connectors[connector_id]
    while not (plug.model.state is State.UNPLUGGED and plug.tx is None and plug.model.operative and cp.operative):
        with trio.move_on_after(IDLE_POLL):
            await plug.changed.wait()


async def drive(cp: ChargePoint, connector_id: int, plans: Iterable[SessionPlan]) -> None:
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
