"""The trace says who ended each connection (`link closed`, `by`): the oracle's dropped_charger needs it."""

from __future__ import annotations

import json

import trio
from trio_websocket import ConnectionClosed, serve_websocket

from .conftest import eventually, make_spec, start_fleet


async def _kicking_csms(request) -> None:
    """Answers every Call, and closes the connection (4001) after 0.6 s: a CSMS that drops chargers."""
    ws = await request.accept(subprotocol="ocpp1.6")
    try:
        with trio.move_on_after(0.6):
            while True:
                msg = json.loads(await ws.get_message())
                if msg[0] == 2:
                    boot = {"status": "Accepted", "interval": 60, "currentTime": "2026-01-01T00:00:00Z"}
                    await ws.send_message(json.dumps([3, msg[1], boot if msg[2] == "BootNotification" else {}]))
        await ws.aclose(4001, "kicked")
    except ConnectionClosed:
        pass  # the charge point went first (a cut, or the end of the run)


def _closes(fleet) -> list[dict]:
    return [r for r in fleet.trace.records if r["kind"] == "link" and r["event"] == "closed"]


async def test_closed_names_the_csms_a_fault_or_the_charge_point(nursery):
    server = await nursery.start(serve_websocket, _kicking_csms, "127.0.0.1", 0, None)
    url = f"ws://127.0.0.1:{server.port}/ocpp"
    async with trio.open_nursery() as run:
        fleet = await start_fleet(run, url, make_spec())
        await eventually(lambda: len(_closes(fleet)) == 1, what="the CSMS to close the connection")
        assert {k: _closes(fleet)[0][k] for k in ("by", "code")} == {"by": "csms", "code": 4001}

        cp = fleet["CP0001"]
        await eventually(lambda: cp.online, what="the reconnect")
        cp.disconnect(back_after=0.2)  # a fault's cut
        await eventually(lambda: len(_closes(fleet)) == 2, what="the cut")
        assert _closes(fleet)[1]["by"] == "fault"

        await eventually(lambda: cp.online, what="the reconnect after the cut")
        run.cancel_scope.cancel()  # the run ends: the charge point closes in order
    assert {k: _closes(fleet)[2][k] for k in ("by", "code")} == {"by": "charge point", "code": 1001}
