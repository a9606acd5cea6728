"""OCPP 2.0.1 stations against `csms serve`: the `ocpp` library's own v201 ChargePoint (tests/interop201/libstation.py),
software we did not write, on the same endpoint, database and REST API as 1.6 chargers.

Each field bug the issue names is reproduced here and shown handled: replayed events after the end
never reopen or rewind a transaction, events without `evse` go to the transaction's EVSE, an Ended
without an idToken is accepted, a two-EVSE station with one in use shows exactly one busy.
"""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal

import httpx
import pytest
import trio
import websockets

from tests.interop201.libstation import LibStation


async def blocking(fn, *args, **kw):
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kw))


async def _until(predicate, timeout: float = 10.0, what: str = "it") -> None:
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def transactions(http: httpx.AsyncClient, prefix: str) -> list[dict]:
    res = await http.get("/api/transactions", params={"chargePointIdPrefix": prefix, "limit": 100})
    assert res.status_code == 200, res.text
    return res.json()["data"]


async def verdict(http: httpx.AsyncClient, cp: str, connector: int) -> str:
    res = await http.get(f"/api/connectors/{cp}/{connector}/occupancy")
    assert res.status_code == 200, res.text
    return res.json()["data"]["verdict"]


def _offer(url: str, offered: list[str]) -> str | None:
    """The subprotocol the CSMS picks from `offered` (websockets, asyncio)."""

    async def go():
        async with websockets.connect(url, subprotocols=offered) as ws:
            return ws.subprotocol

    return asyncio.run(go())


async def test_one_endpoint_both_versions_in_the_chargers_order(csms):
    assert await blocking(_offer, csms.url("NEG1"), ["ocpp2.0.1", "ocpp1.6"]) == "ocpp2.0.1"
    assert await blocking(_offer, csms.url("NEG2"), ["ocpp1.6", "ocpp2.0.1"]) == "ocpp1.6"
    assert await blocking(_offer, csms.url("NEG3"), ["ocpp2.0", "ocpp2.0.1"]) == "ocpp2.0.1"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await blocking(_offer, csms.url("NEG4"), ["ocpp2.0"])
    assert refused.value.response.status_code == 400
    assert b"this CSMS speaks ocpp2.0.1 and ocpp1.6" in refused.value.response.body


async def test_a_transaction_of_a_201_station_is_stored_and_billed_as_a_16_one(csms):
    with LibStation("V201A") as st:
        assert await blocking(st.connect, csms.url("V201A")) == "ocpp2.0.1"
        boot = await blocking(st.boot)
        assert boot.status == "Accepted" and boot.interval == 300
        await blocking(st.status, 1, 1, "Available")
        assert (await blocking(st.authorize, "TAG201")).id_token_info["status"] == "Accepted"
        for answer in (  # acknowledged and logged, nothing more
            await blocking(st.meter_values, 1, 950),
            await blocking(st.notify_event),
            await blocking(st.security_event),
            await blocking(st.firmware_status, "Installed"),
            await blocking(st.log_status, "Idle"),
            await blocking(st.notify_report, 1),
            await blocking(st.heartbeat),
        ):
            assert not hasattr(answer, "code"), answer  # not a CallError
        await blocking(st.status, 1, 1, "Occupied")
        started = await blocking(
            st.transaction_event, "Started", "tx-1", "Authorized", evse_id=1, connector_id=1,
            id_token="TAG201", meter_wh=1000, charging_state="Charging",
        )  # fmt: skip
        assert started.id_token_info["status"] == "Accepted"
        async with csms.client() as http:
            assert await verdict(http, "V201A", 1) == "busy"
            # The EVSE is named only in the first event (EVerest libocpp #580): later ones go to the same one.
            await blocking(st.transaction_event, "Updated", "tx-1", "MeterValuePeriodic", meter_wh=3000)
            # An Ended after EV disconnect carries no idToken (libocpp #577): accepted, not required.
            ended = await blocking(
                st.transaction_event, "Ended", "tx-1", "EVCommunicationLost", meter_wh=5000,
                stopped_reason="EVDisconnected", charging_state="Idle",
            )  # fmt: skip
            assert not hasattr(ended, "code"), ended  # not a CallError
            await blocking(st.status, 1, 1, "Available")
            rows = (await http.get("/api/charge-points")).json()["data"]
            assert next(r for r in rows if r["id"] == "V201A")["ocppVersion"] == "2.0.1"  # the listing says it
            (tx,) = await transactions(http, "V201A")
            assert (tx["connectorId"], tx["idTag"], tx["meterStart"], tx["meterStop"]) == (1, "TAG201", 1000, 5000)
            assert tx["stopReason"] == "EVDisconnected" and tx["stopTime"] is not None
            await _until(lambda: _is(http, "V201A", 1, "free"), what="the EVSE to be free")


async def _is(http, cp, connector, want) -> bool:
    return await verdict(http, cp, connector) == want


async def test_replayed_events_never_reopen_or_rewind_and_two_evses_show_one_busy(csms):
    with LibStation("V201B", connectors=[(1, 1), (2, 1)]) as st:
        await blocking(st.connect, csms.url("V201B"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        await blocking(st.status, 2, 1, "Available")
        await blocking(st.status, 2, 1, "Occupied")
        await blocking(
            st.transaction_event, "Started", "T-9", "CablePluggedIn", evse_id=2, connector_id=1,
            id_token="TAGB", meter_wh=200, charging_state="EVConnected",
        )  # fmt: skip
        await blocking(st.transaction_event, "Updated", "T-9", "ChargingStateChanged", charging_state="Charging")
        async with csms.client() as http:
            # OCPP.Core #97: both connectors of a station shown occupied while only one was in use.
            assert (await verdict(http, "V201B", 1), await verdict(http, "V201B", 2)) == ("free", "busy")
            await blocking(st.transaction_event, "Updated", "T-9", "MeterValuePeriodic", meter_wh=900)
            await blocking(st.transaction_event, "Ended", "T-9", "StopAuthorized", meter_wh=1200,
                           stopped_reason="Local")  # fmt: skip
            # lbbrhzn/ocpp #2141: a queue replayed after a reconnect, offline, old samples: evidence only.
            await blocking(
                st.transaction_event, "Updated", "T-9", "MeterValuePeriodic", seq_no=2, meter_wh=700, offline=True
            )
            await blocking(st.transaction_event, "Started", "T-9", "CablePluggedIn", seq_no=0, evse_id=2,
                           connector_id=1, id_token="TAGB", meter_wh=200, offline=True,
                           timestamp="2020-01-01T00:00:00Z")  # fmt: skip
            (tx,) = await transactions(http, "V201B")
            assert (tx["connectorId"], tx["meterStart"], tx["meterStop"]) == (2, 200, 1200), tx
            assert tx["stopTime"] is not None and tx["stopReason"] == "Local"


async def test_an_app_session_starts_and_stops_through_request_start_and_stop(csms):
    with LibStation("V201C") as st:
        await blocking(st.connect, csms.url("V201C"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        st.meter_wh = 10_000
        async with csms.client() as http:
            res = await http.post(
                "/api/ChargingSession/start-charging-session",
                json={
                    "chargingStationId": "V201C",
                    "connectorId": 1,
                    "chargeTagId": "APP201",
                    "chargingTariff": "0.40",
                },
            )
            assert res.status_code == 200, res.text
            session_id = res.json()["data"]["sessionId"]
            (start,) = st.received("RequestStartTransaction")
            assert start.payload["evseId"] == 1 and start.payload["idToken"]["idToken"] == "APP201"
            assert isinstance(start.payload["remoteStartId"], int)

            async def linked() -> bool:
                s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
                return s.get("transactionId") is not None

            await _until(linked, what="the station's Started to reach the session")
            st.meter_wh = 12_500
            res = await http.post("/api/ChargingSession/stop-charging-session", json={"sessionId": session_id})
            assert res.status_code == 200, res.text
            sent = {e.payload["transactionInfo"]["transactionId"] for e in st.sent("TransactionEvent")}
            assert st.received("RequestStopTransaction")[0].payload["transactionId"] in sent

            async def billed() -> bool:
                s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
                return s.get("endTime") is not None

            await _until(billed, what="the session to end")
            s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
            assert (s["energyWh"], Decimal(str(s["chargingTotalFee"]))) == (2500, Decimal("1.00")), s


@pytest.fixture
def csms_args() -> list[str]:
    # Live evidence off: what keeps a transaction open at an unlock here is what the station answers.
    return ["--allow-unknown-chargers", "--live-evidence-seconds", "0"]


async def test_an_unlock_asks_the_station_first_and_a_queued_ended_is_stored_and_billed(csms):
    """CitrineOS #1053: {ongoingIndicator: false, messagesInQueue: true} marked the transaction inactive and
    dropped the queued Ended. Here the unlock leaves it open, and the Ended that follows bills it."""
    with LibStation("V201D") as st:
        await blocking(st.connect, csms.url("V201D"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        st.meter_wh = 1000
        async with csms.client() as http:
            res = await http.post(
                "/api/ChargingSession/start-charging-session",
                json={"chargingStationId": "V201D", "connectorId": 1, "chargeTagId": "APPQ", "chargingTariff": "0.50"},
            )
            session_id = res.json()["data"]["sessionId"]
            await _until(lambda: _linked(http, session_id), what="the Started")
            (station_tx,) = st.transactions()
            await blocking(st.transaction_event, "Updated", station_tx, "MeterValuePeriodic", meter_wh=2000)

            st.behaviour.ongoing_indicator, st.behaviour.messages_in_queue = False, True
            unlock = {"chargingStationId": "V201D", "connectorId": 1}
            res = await http.post("/api/ChargingSession/unlock-connector", json=unlock)
            assert res.status_code == 409, res.text
            assert "its Ended is on the way" in res.json()["message"]
            assert st.received("GetTransactionStatus")[-1].payload == {"transactionId": station_tx}
            assert not st.received("UnlockConnector")  # nothing unlocked while its transaction ends
            (tx,) = await transactions(http, "V201D")
            assert tx["stopTime"] is None

            await blocking(
                st.transaction_event, "Ended", station_tx, "EVCommunicationLost", meter_wh=3500, offline=True,
                stopped_reason="EVDisconnected",
            )  # fmt: skip
            s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
            assert (s["energyWh"], Decimal(str(s["chargingTotalFee"]))) == (2500, Decimal("1.25")), s
            await blocking(st.status, 1, 1, "Available")

            st.behaviour.messages_in_queue = False
            res = await http.post("/api/ChargingSession/unlock-connector", json=unlock)
            assert res.status_code == 200, res.text
            assert st.received("UnlockConnector")[-1].payload == {"evseId": 1, "connectorId": 1}


async def test_a_station_that_keeps_its_cable_locked_while_charging_says_why(csms):
    with LibStation("V201E") as st:
        await blocking(st.connect, csms.url("V201E"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        st.behaviour.unlock = "OngoingAuthorizedTransaction"
        async with csms.client() as http:
            res = await http.post(
                "/api/ChargingSession/unlock-connector", json={"chargingStationId": "V201E", "connectorId": 1}
            )
        assert res.status_code == 400, res.text
        assert res.json()["message"].startswith("OngoingAuthorizedTransaction: the station is charging on this EVSE")


async def _linked(http, session_id: str) -> bool:
    s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
    return s.get("transactionId") is not None


async def test_an_admin_sends_any_201_call_through_rest_and_the_dashboard_resets_it(csms):
    """GetVariables, SetVariables, Reset, ChangeAvailability and TriggerMessage reach a 2.0.1 station in its
    version (the raw call is validated with the 2.0.1 schemas), and come back with its answer."""
    with LibStation("V201F") as st:
        await blocking(st.connect, csms.url("V201F"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        st.variables[("OCPPCommCtrlr", "HeartbeatInterval")] = "300"
        heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
        calls = [
            ("GetVariables", {"getVariableData": [heartbeat]}),
            ("SetVariables", {"setVariableData": [{**heartbeat, "attributeValue": "60"}]}),
            ("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}),
            ("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}),
            ("Reset", {"type": "OnIdle"}),
        ]
        async with csms.client() as http:
            answers = {}
            for action, payload in calls:
                res = await http.post("/api/charge-points/V201F/call", json={"action": action, "payload": payload})
                assert res.status_code == 200, (action, res.text)
                answers[action] = res.json()["data"]
            bad = await http.post(
                "/api/charge-points/V201F/call", json={"action": "Reset", "payload": {"type": "Hard"}}
            )
        assert answers["GetVariables"]["getVariableResult"][0]["attributeValue"] == "300"
        assert answers["SetVariables"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
        assert st.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "60"
        assert all(answers[a]["status"] == "Accepted" for a in ("ChangeAvailability", "TriggerMessage", "Reset"))
        assert bad.status_code == 400 and "Invalid Reset payload" in bad.json()["message"]  # 1.6's Hard: not 2.0.1
        assert [e.action for e in st.received()][-5:] == [a for a, _ in calls]


async def test_an_ended_below_the_samples_bills_the_evidence_and_asks_for_review(csms):
    """A replaced meter: the Ended's reading (500 Wh) is below the Updated sample the CSMS acknowledged. As with a
    1.6 meterStop, the session bills the evidenced energy and is flagged for review, not 0 Wh."""
    with LibStation("V201M") as st:
        await blocking(st.connect, csms.url("V201M"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        st.meter_wh = 1000
        async with csms.client() as http:
            res = await http.post(
                "/api/ChargingSession/start-charging-session",
                json={"chargingStationId": "V201M", "connectorId": 1, "chargeTagId": "APPM", "chargingTariff": "0.50"},
            )
            session_id = res.json()["data"]["sessionId"]
            await _until(lambda: _linked(http, session_id), what="the Started")
            (station_tx,) = st.transactions()
            await blocking(st.transaction_event, "Updated", station_tx, "MeterValuePeriodic", meter_wh=3000)
            await blocking(st.transaction_event, "Ended", station_tx, "StopAuthorized", meter_wh=500)
            s = (await http.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        assert s["energyWh"] == 2000 and Decimal(str(s["chargingTotalFee"])) == Decimal("1.00"), s
        assert s.get("reviewReason"), s
