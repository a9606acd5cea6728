"""What one connected charge point may cost a real `csms serve`: connectors, reconnects, pings.

The server runs with a rate of 5 messages a second (burst 30) and at most 4 connectors per charger,
so every bound is reached in a few dozen frames. Rate bounds are measured: a test allows the burst
plus what the rate refilled during the time it actually took, never a fixed sleep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import trio
import wsproto
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from ocppj import V201, OcppConnection
from ocppj.errors import CallErrorReceived
from tests.support.chargepoint import NOW, connect
from tests.support.server import CsmsProcess, start_csms

RATE, BURST, CONNECTORS = 5, 30, 4


@pytest.fixture(scope="module")
def csms(tmp_path_factory) -> Iterator[CsmsProcess]:
    """One server for the module (each test has its own charge point ids); SQLite: the bounds are in the OCPP layers."""
    workdir = tmp_path_factory.mktemp("abuse")
    args = [
        "--allow-unknown-chargers",
        "--ocpp-messages-per-second",
        str(RATE),
        "--ocpp-message-burst",
        str(BURST),
        "--max-connectors-per-charger",
        str(CONNECTORS),
    ]
    proc = start_csms(f"sqlite:///{workdir / 'csms.db'}", workdir, args)
    try:
        yield proc
    finally:
        proc.stop()


def _allowed(elapsed: float) -> float:
    """Messages one bucket lets through in `elapsed` seconds (and one for rounding)."""
    return BURST + RATE * elapsed + 1


async def _connectors(csms, prefix: str) -> set[int]:
    async with csms.client() as c:
        rows = (await c.get("/api/connectors", params={"chargePointIdPrefix": prefix})).json()["data"]
    return {r["connectorId"] for r in rows if r["chargePointId"] == prefix}


async def _refused(call) -> str:
    with pytest.raises(CallErrorReceived) as refused:
        await call
    assert refused.value.code == "PropertyConstraintViolation", refused.value
    return refused.value.description


async def test_a_16_charger_names_connectors_0_to_the_bound_only(csms):
    async with connect(csms.ocpp, "CONN16") as cp:
        assert await cp.status(CONNECTORS, "Available") == {}
        assert await cp.status(0, "Available") == {}  # the charge point itself
        why = await _refused(cp.status(CONNECTORS + 1, "Available"))
        assert f"connectorId {CONNECTORS + 1} is outside 0..{CONNECTORS}" in why
        assert "--max-connectors-per-charger" in why
        await _refused(cp.status(2**31 - 1, "Available"))
        await _refused(cp.status(-1, "Available"))
        await _refused(cp.start(CONNECTORS + 1))
        await _refused(cp.meter(CONNECTORS + 1, 1, 1000))
        assert "currentTime" in await cp.heartbeat()  # refused calls leave the connection serving
        with trio.fail_after(10):
            while CONNECTORS not in await _connectors(csms, "CONN16"):
                await trio.sleep(0.05)
        assert await _connectors(csms, "CONN16") <= {0, CONNECTORS}
    assert await _metric(csms, "connector_out_of_range") >= 5


async def test_a_201_station_names_evses_and_connectors_0_to_the_bound_only(csms):
    async with open_websocket_url(csms.url("CONN201"), subprotocols=["ocpp2.0.1"]) as ws:
        conn = OcppConnection(ws, peer="csms", call_timeout=10, version=V201)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)
            boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
            assert (await conn.call_raw("BootNotification", boot))["status"] == "Accepted"

            def status(evse: int, connector: int) -> dict:
                return {"timestamp": NOW, "connectorStatus": "Available", "evseId": evse, "connectorId": connector}

            assert await conn.call_raw("StatusNotification", status(CONNECTORS, CONNECTORS)) == {}
            why = await _refused(conn.call_raw("StatusNotification", status(CONNECTORS + 1, 1)))
            assert f"evseId {CONNECTORS + 1} is outside" in why
            await _refused(conn.call_raw("StatusNotification", status(1, CONNECTORS + 1)))
            meter = [{"timestamp": NOW, "sampledValue": [{"value": 1000.0}]}]
            await _refused(conn.call_raw("MeterValues", {"evseId": 2**31 - 1, "meterValue": meter}))
            event = {
                "eventType": "Started",
                "timestamp": NOW,
                "triggerReason": "CablePluggedIn",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "T-ABUSE"},
            }
            for evse in ({"id": CONNECTORS + 1}, {"id": 1, "connectorId": CONNECTORS + 1}):
                why = await _refused(conn.call_raw("TransactionEvent", {**event, "evse": evse}))
                assert "evse." in why
            assert await conn.call_raw("TransactionEvent", {**event, "evse": {"id": 1, "connectorId": 1}}) == {}
            nursery.cancel_scope.cancel()
    assert await _connectors(csms, "CONN201") <= {1, CONNECTORS}


async def test_reconnecting_does_not_refill_the_rate_bucket(csms):
    answered, started = 0, time.monotonic()
    async with open_websocket_url(csms.url("RECONNECT1"), subprotocols=["ocpp1.6"]) as ws:
        for i in range(BURST):  # the whole burst, every one answered
            await ws.send_message(f'[2,"a{i}","Heartbeat",{{}}]')
            await ws.get_message()
            answered += 1
    # Closed cleanly by the charger, reopened at once: the same charge point, the same bucket.
    async with open_websocket_url(csms.url("RECONNECT1"), subprotocols=["ocpp1.6"]) as ws:
        with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            for i in range(BURST * 3):
                await ws.send_message(f'[2,"b{i}","Heartbeat",{{}}]')
                await ws.get_message()
                answered += 1
    elapsed = time.monotonic() - started
    assert closed.value.reason.code == 1008
    assert answered <= _allowed(elapsed), (answered, elapsed)  # not a second burst


async def test_pings_take_from_the_same_bucket_and_a_ping_flood_is_closed_1008(csms):
    host, port = urlsplit(csms.ocpp).hostname, urlsplit(csms.ocpp).port
    started = time.monotonic()
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/ocpp/PINGS1", subprotocols=["ocpp1.6"])))
        answers, pongs, code = 0, 0, None
        sent_messages = BURST // 2
        with trio.fail_after(10):
            while code is None and pongs < BURST * 10:
                data = await stream.receive_some(65536)
                if not data:
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        # Half the burst in messages, then (once all are answered, so the close cannot overtake
                        # an answer) pings: they share one bucket.
                        calls = (f'[2,"m{i}","Heartbeat",{{}}]' for i in range(sent_messages))
                        await stream.send_all(b"".join(ws.send(wsproto.events.Message(data=c)) for c in calls))
                    elif isinstance(event, TextMessage):
                        assert json.loads(event.data)[0] == 3
                        answers += 1
                        if answers == sent_messages:
                            await stream.send_all(b"".join(ws.send(Ping(b"%d" % i)) for i in range(BURST * 10)))
                    elif isinstance(event, Pong):
                        pongs += 1
                    elif isinstance(event, CloseConnection):
                        code = event.code
    elapsed = time.monotonic() - started
    assert code == 1008, (code, answers, pongs)
    assert answers == sent_messages
    assert answers + pongs <= _allowed(elapsed), (answers, pongs, elapsed)
    assert "ocpp.connection_closed peer=PINGS1 code=1008 reason=rate_limited" in csms.log()
    assert csms.log().count("ocpp.connection_closed peer=PINGS1") == 1


async def _metric(csms, kind: str) -> float:
    async with csms.client() as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'csms_ocpp_limit_events_total{{kind="{kind}"}} '):
            return float(line.split()[-1])
    return 0.0
