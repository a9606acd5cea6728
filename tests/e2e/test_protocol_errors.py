"""Bad input on the OCPP side of a real `csms serve`: clear CallErrors, nothing lost, no hang."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest
import trio
from ocpp.routing import on
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from ocppj import OcppCallError
from tests.support.chargepoint import Answers, connect


@pytest.fixture
def csms_args():
    return ["--allow-unknown-chargers", "--call-timeout-seconds", "1", "--max-frame-bytes", "4096"]


async def _ask(ws, frame: str) -> list:
    await ws.send_message(frame)
    with trio.fail_after(5):
        return json.loads(await ws.get_message())


@pytest.mark.parametrize(
    "frame, code",
    [
        ("this is not json", "FormationViolation"),
        ('[2,"m1","Heartbeat"]', "FormationViolation"),
        ('[2,"m2","BootNotification",{"chargePointVendor":1,"chargePointModel":"M"}]', "TypeConstraintViolation"),
        ('[2,"m3","StartTransaction",{"connectorId":1,"idTag":"T"}]', "OccurenceConstraintViolation"),
        ('[2,"m4","FlyToTheMoon",{}]', "NotImplemented"),
        (
            '[2,"m5","ReserveNow",{"connectorId":1,"expiryDate":"2026-01-01T00:00:00Z","idTag":"T","reservationId":1}]',
            "NotSupported",
        ),
        # PostgreSQL refuses NUL in text: it was an InternalError and a traceback per message.
        ('[2,"m6","Authorize",{"idTag":"A\\u0000B"}]', "PropertyConstraintViolation"),
        (
            '[2,"m7","StartTransaction",{"connectorId":1,"idTag":"A\\u0000B","meterStart":0,'
            '"timestamp":"2026-01-01T00:00:00Z"}]',
            "PropertyConstraintViolation",
        ),
    ],
)
async def test_bad_frame_gets_call_error_and_connection_keeps_serving(csms, frame, code):
    async with open_websocket_url(csms.url("BAD1"), subprotocols=["ocpp1.6"]) as ws:
        answer = await _ask(ws, frame)
        assert answer[0] == 4 and answer[2] == code, answer
        ok = await _ask(ws, '[2,"next","Heartbeat",{}]')
        assert ok[0] == 3 and ok[1] == "next" and "currentTime" in ok[2]
    assert "Traceback" not in csms.log()


async def test_oversized_frame_closes_with_1009_and_server_keeps_serving(csms):
    async with open_websocket_url(csms.url("BIG1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send_message('[2,"big","DataTransfer",{"vendorId":"x","data":"' + "A" * 10000 + '"}]')
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as ei:
            await ws.get_message()
        assert ei.value.reason.code == 1009
    async with connect(csms.ocpp, "BIG1") as cp:
        assert "currentTime" in await cp.heartbeat()


async def test_bad_frames_lose_nothing_already_stored(csms):
    async with connect(csms.ocpp, "KEEP1") as cp:
        tx = await cp.start(1, "TAGK", 100)
        await cp.conn.send_raw("[[[")
        await cp.conn.send_raw('[2,"z","StopTransaction",{"transactionId":"nope"}]')
        await cp.stop(tx, 900)
    async with csms.client() as http:
        r = await http.get("/api/charge-points")
    assert any(row["id"] == "KEEP1" for row in r.json()["data"])


async def test_handshake_offering_only_other_subprotocols_is_refused_and_logged(csms):
    with pytest.raises(ConnectionRejected) as ei:
        async with open_websocket_url(csms.url("OTHERPROTO"), subprotocols=["ocpp2.1", "ocpp2.0"]):
            pass
    assert ei.value.status_code == 400
    assert ei.value.body.decode() == (
        "none of the offered subprotocols (ocpp2.1, ocpp2.0) is spoken here; "
        "this CSMS speaks ocpp2.0.1 and ocpp1.6: offer one of them in Sec-WebSocket-Protocol"
    )
    assert (
        "handshake.refused reason=subprotocol path=/ocpp/OTHERPROTO charge_point=OTHERPROTO "
        "offered=ocpp2.1,ocpp2.0 remote=127.0.0.1:" in csms.log()
    )


@asynccontextmanager
async def _third_party_client(url: str, subprotocols: list[str] | None):
    """The `websockets` library's client (not ours), driven from worker threads."""
    from websockets.sync.client import connect as ws_connect

    ws = await trio.to_thread.run_sync(
        lambda: ws_connect(url, subprotocols=subprotocols, proxy=None, compression=None, open_timeout=5)
    )
    with ws:
        try:
            yield ws
        finally:
            await trio.to_thread.run_sync(ws.close)


async def _boot_over(ws) -> list:
    await trio.to_thread.run_sync(
        ws.send, '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
    )
    return json.loads(await trio.to_thread.run_sync(ws.recv, 5))


async def _online(csms, cp_id: str) -> bool | None:
    async with csms.client() as http:
        rows = (await http.get("/api/charge-points")).json()["data"]
    return {r["id"]: r["online"] for r in rows}.get(cp_id)


async def test_trailing_slash_is_the_same_charge_point(csms):
    async with _third_party_client(csms.url("SLASH1") + "/", ["ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        answer = await _boot_over(ws)
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
        assert await _online(csms, "SLASH1") is True
        assert await _online(csms, "SLASH1/") is None  # no second charge point named with the slash


async def test_handshake_without_subprotocol_is_refused_with_a_reason(csms):
    """OCPP-J 1.6 §3.1.2: the charger must offer its version; refused as SteVe does, but saying why."""
    with pytest.raises(Exception) as ei:
        async with _third_party_client(csms.url("NOPROTO1"), None):
            pass
    response = getattr(ei.value, "response", None)
    assert response is not None and response.status_code == 400, repr(ei.value)
    assert b"no subprotocol offered" in response.body
    assert b"speaks ocpp2.0.1 and ocpp1.6" in response.body and b"Sec-WebSocket-Protocol" in response.body
    assert await _online(csms, "NOPROTO1") is None
    refused = [line for line in csms.log().splitlines() if "handshake.refused reason=subprotocol" in line]
    assert len(refused) == 1 and " WARNING " in refused[0]
    assert "charge_point=NOPROTO1" in refused[0] and "offered=none" in refused[0] and "remote=127.0.0.1:" in refused[0]


@pytest.mark.parametrize("csms_args", [[]])
async def test_handshake_without_subprotocol_from_an_unknown_charge_point_is_still_refused(csms):
    with pytest.raises(ConnectionRejected) as ei:
        async with open_websocket_url(csms.url("STRANGER2")):
            pass
    assert ei.value.status_code == 401  # who it is comes first: an unknown id learns nothing more
    assert "reason=unknown_charge_point" in csms.log() and "reason=subprotocol" not in csms.log()


async def test_unanswered_csms_call_times_out_and_connection_stays_usable(csms):
    async with connect(csms.ocpp, "SLOW1") as cp:
        cp.answers.unlock = None  # never answer UnlockConnector
        async with csms.client() as http:
            with trio.fail_after(10):
                r = await http.post(
                    "/api/charge-points/SLOW1/call", json={"action": "UnlockConnector", "payload": {"connectorId": 1}}
                )
            assert r.status_code == 504
            assert r.json() == {"success": False, "message": "Charge point did not respond in time"}
            cp.answers.unlock = "Unlocked"
            r = await http.post(
                "/api/charge-points/SLOW1/call", json={"action": "UnlockConnector", "payload": {"connectorId": 1}}
            )
            assert r.status_code == 200 and r.json()["data"] == {"status": "Unlocked"}
        assert "currentTime" in await cp.heartbeat()


@pytest.mark.parametrize("csms_args", [[]])
async def test_unknown_charge_point_is_refused_without_allow_unknown(csms):
    with pytest.raises(ConnectionRejected) as ei:
        async with open_websocket_url(csms.url("STRANGER"), subprotocols=["ocpp1.6"]):
            pass
    assert ei.value.status_code == 401
    async with csms.client() as http:
        r = await http.post("/api/stations", json={"chargePointId": "STRANGER", "password": "stranger-password-16"})
        assert r.status_code == 201
    async with connect(csms.ocpp, "STRANGER", password="stranger-password-16") as cp:
        assert "currentTime" in await cp.heartbeat()


class _NulAnswers(Answers):
    """Answers RemoteStartTransaction with a CallError whose description holds NUL (U+0000)."""

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag, **kw):
        raise OcppCallError("GenericError", "refused\u0000here")


async def test_a_charger_error_holding_nul_fails_the_session_without_a_database_error(csms):
    """A charger's CallError description reaches the database (the session's failure reason): with NUL in it,
    PostgreSQL raised an InternalError, a 500 and a traceback instead of a failed session."""
    async with connect(csms.ocpp, "NULERR", answers=_NulAnswers()) as cp, csms.client() as admin:
        await cp.status(1, "Available")
        body = {"chargingStationId": "NULERR", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.25"}
        r = await admin.post("/api/ChargingSession/start-charging-session", json=body)
        assert r.status_code == 502, r.text
        data = (await admin.get(f"/api/ChargingSession/{r.json()['data']['sessionId']}")).json()["data"]
        assert data["status"] == "Failed"
    assert "Traceback" not in csms.log()
