"""How the simulator's WebSockets end, as the independent ocpp-library CSMS sees it.

An orderly end (the run is over, a Reset) sends a close frame (1001, going away) after
what was queued has been answered; a fault's cut drops the TCP connection without one
(the CSMS sees 1006), because a dropped connection is what the fault simulates.
"""

from __future__ import annotations

import json

import pytest
import trio
from ocpp.v16 import call

from .conftest import ask, eventually, make_spec, start_fleet


async def test_end_of_run_closes_every_websocket_with_a_close_frame(central):
    async with trio.open_nursery() as run:
        await start_fleet(run, central.url, make_spec(count=3))
        cancelled_at = trio.current_time()
        run.cancel_scope.cancel()
    took = trio.current_time() - cancelled_at
    await eventually(lambda: len(central.closes) == 3, what="three closed connections")
    assert sorted(central.closes) == [(f"CP000{i}", 1001, "charge point shutting down") for i in (1, 2, 3)]
    assert took < 1.5  # the close handshake completed; nobody waited out the 2 s close timeout


def _frames(records):
    """(index, direction, decoded frame) of every frame in the trace."""
    return [(i, r["kind"], json.loads(r["frame"])) for i, r in enumerate(records) if r["kind"] in ("in", "out")]


async def test_reset_is_answered_then_closed_in_order(nursery, central):
    fleet = await start_fleet(nursery, central.url, make_spec())
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    assert (await ask(central, "CP0001", call.Reset(type="Hard"))).status == "Accepted"
    await eventually(lambda: len(central.received("CP0001", "BootNotification")) == 2, what="the boot after the reset")
    assert central.closes[0] == ("CP0001", 1001, "Hard reset")
    records = fleet.trace.records
    closed = next(i for i, r in enumerate(records) if r["kind"] == "link" and r["event"] == "closed")
    frames = _frames(records)
    sent = {f[1]: (f[2], f[3]) for i, kind, f in frames if kind == "out" and f[0] == 2 and i < closed}
    answered = {f[1] for i, kind, f in frames if kind == "in" and f[0] == 3 and i < closed}
    stop = [uid for uid, (action, p) in sent.items() if action == "StopTransaction"]
    finishing = [
        uid
        for uid, (action, p) in sent.items()
        if action == "StatusNotification" and p["connectorId"] == 1 and p["status"] == "Finishing"
    ]
    assert sent[stop[0]][1]["reason"] == "HardReset" and len(finishing) == 1
    assert {stop[0], finishing[0]} <= answered  # both answered before the WebSocket closed


@pytest.mark.parametrize(
    "fault", ["disconnect_mid_session=1,after=0.2:0.2,back_after=0.5", "reboot=1,after=0.2:0.2,boot_delay=0.5"]
)
async def test_fault_cuts_drop_the_connection_without_a_close_frame(nursery, central, fault):
    fleet = await start_fleet(nursery, central.url, make_spec(faults=[fault]))
    await fleet["CP0001"].start_by_tag(1, "TAG0001")
    await eventually(lambda: central.closes, timeout=3, what="the cut")
    assert central.closes[0][:2] == ("CP0001", 1006)
