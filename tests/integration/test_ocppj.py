"""The OCPP-J layer end to end over real trio-websocket connections, both directions."""

from __future__ import annotations

import json

import pytest
import trio
import trio.lowlevel
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import RegistrationStatus
from trio_websocket import open_websocket_url, serve_websocket

from ocppj import CallErrorReceived, CallTimeoutError, OcppConnection


class CentralHandlers:
    @on("BootNotification")
    def on_boot(self, charge_point_vendor, charge_point_model, **_):
        return call_result.BootNotification(
            current_time="2026-01-01T00:00:00Z", interval=10, status=RegistrationStatus.accepted
        )

    @on("Heartbeat")
    async def on_heartbeat(self):
        await trio.lowlevel.checkpoint()
        return {"currentTime": "2026-01-01T00:00:00Z"}

    @on("Authorize")
    def on_authorize(self, id_tag):
        raise RuntimeError("boom")


class PointHandlers:
    def __init__(self, answer: bool = True):
        self.answer = answer

    @on("UnlockConnector")
    async def on_unlock(self, connector_id):
        if not self.answer:
            await trio.sleep_forever()
        return call_result.UnlockConnector(status="Unlocked")


@pytest.fixture
async def pair(nursery):
    """A central OcppConnection and a charge-point one, talking over loopback."""
    send, recv = trio.open_memory_channel(1)
    central_box = {}

    async def handler(request):
        ws = await request.accept(subprotocol="ocpp1.6")
        conn = OcppConnection(ws, peer="CP1", handlers=CentralHandlers(), call_timeout=0.3)
        central_box["conn"] = conn
        await send.send(conn)
        await conn.run()

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    port = server.port
    point_handlers = PointHandlers()
    ws_cm = open_websocket_url(f"ws://127.0.0.1:{port}/ocpp/CP1", subprotocols=["ocpp1.6"])
    ws = await ws_cm.__aenter__()
    raw = []
    point = OcppConnection(
        ws, peer="csms", handlers=point_handlers, call_timeout=2, trace=lambda d, t: raw.append((d, t))
    )
    nursery.start_soon(point.run)
    central = await recv.receive()
    yield central, point, ws, point_handlers, raw
    await ws_cm.__aexit__(None, None, None)


async def test_call_both_directions(pair):
    central, point, _ws, _h, raw = pair
    res = await point.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
    assert res.status == "Accepted" and res.interval == 10
    res = await point.call(call.Heartbeat())
    assert res.current_time.startswith("2026")
    res = await central.call(call.UnlockConnector(connector_id=1))
    assert res.status == "Unlocked"
    assert [d for d, _ in raw][:2] == ["out", "in"]


async def test_handler_crash_is_internal_error_and_connection_survives(pair):
    _central, point, *_ = pair
    with pytest.raises(CallErrorReceived) as ei:
        await point.call(call.Authorize(id_tag="X"))
    assert ei.value.code == "InternalError"
    assert (await point.call(call.Heartbeat())).current_time


async def test_unanswered_call_times_out_and_connection_stays_usable(pair):
    central, _point, _ws, handlers, _raw = pair
    handlers.answer = False
    with trio.fail_after(5):
        with pytest.raises(CallTimeoutError, match="did not answer UnlockConnector"):
            await central.call(call.UnlockConnector(connector_id=1))
    handlers.answer = True
    assert (await central.call(call.UnlockConnector(connector_id=2))).status == "Unlocked"


@pytest.mark.parametrize(
    "frame, code, uid",
    [
        ("not json", "FormationViolation", "-1"),
        ('[2,"abc",', "FormationViolation", "abc"),
        ('{"a":1}', "FormationViolation", "-1"),
        ('[2,"u1","Heartbeat"]', "FormationViolation", "u1"),
        ('[9,"u2"]', "ProtocolError", "u2"),
        ('[2,"u3","NoSuchAction",{}]', "NotImplemented", "u3"),
        ('[2,"u4","Reset",{"type":"Hard"}]', "NotSupported", "u4"),
        ('[2,"u5","BootNotification",{"chargePointVendor":5,"chargePointModel":"M"}]', "TypeConstraintViolation", "u5"),
        ('[2,"u6","BootNotification",{"chargePointModel":"M"}]', "OccurenceConstraintViolation", "u6"),
        (
            '[2,"u7","BootNotification",{"chargePointVendor":"V","chargePointModel":"M","x":1}]',
            "FormationViolation",
            "u7",
        ),
    ],
)
async def test_bad_frames_get_the_right_call_error(pair, frame, code, uid):
    _central, _point, ws, *_ = pair
    # Talk raw on the same socket: the point's own loop would eat the answer, so use a fresh socket.
    port = int(ws.remote.port)
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ocpp/CPX", subprotocols=["ocpp1.6"]) as raw:
        await raw.send_message(frame)
        with trio.fail_after(2):
            answer = json.loads(await raw.get_message())
        assert answer[0] == 4 and answer[1] == uid and answer[2] == code, answer
        await raw.send_message('[2,"ok","Heartbeat",{}]')
        with trio.fail_after(2):
            assert json.loads(await raw.get_message())[:2] == [3, "ok"]


async def test_timeout_covers_waiting_behind_an_earlier_call(pair):
    central, _point, _ws, handlers, _raw = pair
    handlers.answer = False
    outcomes = []

    async def one(connector_id):
        started = trio.current_time()
        with pytest.raises(CallTimeoutError):
            await central.call(call.UnlockConnector(connector_id=connector_id), timeout=0.3)
        outcomes.append(trio.current_time() - started)

    async with trio.open_nursery() as n:
        n.start_soon(one, 1)
        n.start_soon(one, 2)
    assert len(outcomes) == 2 and max(outcomes) < 0.5  # the second did not wait 0.3 + 0.3
