"""Seed 000's three unlock scenarios and seed 001's occupancy matrix, for an OCPP 2.0.1 station.

The same REST calls and the same answers as the 1.6 tests (tests/e2e/test_unlock.py,
tests/e2e/test_occupancy_flow.py): above the protocol layer the CSMS does not know the version,
and the seed's rules do not either. The station is the `ocpp` library's v201 ChargePoint
(tests/interop201/libstation.py); its EVSE N is REST connector N.

What "stuck" is for 2.0.1: an app start whose station accepts RequestStartTransaction but never
sends Started, or a transaction whose Ended never reaches the CSMS while the EVSE reports Available.
2.0.1 adds one question the unlock asks first (GetTransactionStatus): a station that says its
transaction is still running is not stuck, so the lost Ended is modelled as the station sees it:
it ended the transaction, so it answers as a station with none open.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio

from csms.db.models import ConnectorStatus, PaymentReservation
from tests.interop201.libstation import LibStation
from tests.support.db import with_db

START = "/api/ChargingSession/start-charging-session"
STOP = "/api/ChargingSession/stop-charging-session"
UNLOCK = "/api/ChargingSession/unlock-connector"
BUSY_201 = ("Occupied", "Reserved", "Unavailable", "Faulted")  # 2.0.1's ConnectorStatusEnumType but Available


async def blocking(fn, *args, **kw):
    """A LibStation call (blocking, it waits for the CSMS's answer) from a trio test."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kw))


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll what the CSMS does on its own time (a station's follow-up, a window closing), with a deadline."""
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@asynccontextmanager
async def station(csms, cp_id: str, evses: int = 1) -> AsyncIterator[LibStation]:
    """A booted 2.0.1 station with `evses` EVSEs of one connector each; closed after the block."""
    st = LibStation(cp_id, connectors=[(e, 1) for e in range(1, evses + 1)])
    try:
        assert await blocking(st.connect, csms.url(cp_id)) == "ocpp2.0.1"
        assert (await blocking(st.boot)).status == "Accepted"
        yield st
    finally:
        await blocking(st.close)
    assert st.errors == [], st.errors  # a follow-up (Started, Ended, a triggered status) the CSMS refused


def start_body(cp_id: str, connector: int = 1, tag: str = "TAG1", tariff: str = "0.25") -> dict:
    return {"chargingStationId": cp_id, "connectorId": connector, "chargeTagId": tag, "chargingTariff": tariff}


async def occupancy(http: httpx.AsyncClient, cp_id: str, connector: int = 1) -> dict:
    r = await http.get(f"/api/connectors/{cp_id}/{connector}/occupancy")
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def session(http: httpx.AsyncClient, session_id: str) -> dict:
    r = await http.get(f"/api/ChargingSession/{session_id}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def transactions(http: httpx.AsyncClient, cp_id: str) -> list[dict]:
    r = await http.get("/api/transactions", params={"chargePointIdPrefix": cp_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def linked(http: httpx.AsyncClient, session_id: str) -> int:
    """The CSMS's transaction id once the station's Started has reached the app session."""

    async def has_tx() -> bool:
        return (await session(http, session_id))["transactionId"] is not None

    await until(has_tx, f"the station's Started to reach session {session_id}")
    return (await session(http, session_id))["transactionId"]


async def assert_free(http: httpx.AsyncClient, cp_id: str, connector: int = 1) -> None:
    occ = await occupancy(http, cp_id, connector)
    assert occ["verdict"] == "free", occ
    assert occ["signals"]["openTransactions"] == [] and occ["signals"]["activeReservations"] == []


def ended_lost(st: LibStation) -> None:
    """The station ended its transaction, but the Ended never reached the CSMS (the seed's lost
    StopTransaction): from now on it answers as a station with no transaction open."""
    st.behaviour.ongoing_indicator = False  # GetTransactionStatus: not running, nothing queued
    st.behaviour.unlock = "Unlocked"
    st.behaviour.request_start = "Accepted"


# ----------------------------------------------------------------- seed 000: the three unlock tests


async def test_seed_scenario_1_lost_ended_then_unlock_then_start_again(csms):
    async with station(csms, "SEED1") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        st.meter_wh = 1000
        r = await admin.post(START, json=start_body("SEED1"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        tx = await linked(admin, session_id)
        (station_tx,) = st.transactions()
        await blocking(st.status, 1, 1, "Occupied")
        await blocking(st.transaction_event, "Updated", station_tx, "MeterValuePeriodic", meter_wh=7400,
                       charging_state="Charging")  # fmt: skip
        await blocking(st.status, 1, 1, "Available")  # the car left; the Ended is lost
        r = await admin.post(START, json=start_body("SEED1"))
        assert r.status_code == 409 and r.json()["message"] == "Charging gun is already in use", r.text
        assert f"open_transaction:{tx}" in r.json()["data"]["reasons"]

        # 2.0.1 only: while the station says the transaction runs, it is not stuck (nothing cleaned, no unlock).
        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED1", "connectorId": 1})
        assert r.status_code == 409, r.text
        assert r.json()["message"].startswith(f"Not unlocked: transaction {tx} is ongoing: the station says")
        assert r.json()["data"]["cleanedSessions"] == [] and not st.received("UnlockConnector")

        ended_lost(st)
        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED1", "connectorId": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"] == "Connector unlocked successfully. 1 stuck session(s) automatically cleared."
        assert body["data"]["cleanedSessions"] == [session_id] and body["data"]["sessionsCleared"] == 1
        assert body["data"]["status"] == "Unlocked" and body["data"]["chargePointId"] == "SEED1"
        assert [(e.action, e.payload) for e in st.received()[-2:]] == [
            ("GetTransactionStatus", {"transactionId": station_tx}),
            ("UnlockConnector", {"evseId": 1, "connectorId": 1}),
        ]
        await assert_free(admin, "SEED1")

        s = await session(admin, session_id)
        assert (s["energyWh"], s["energyKwh"], s["chargingTotalFee"], s["meterSource"]) == (
            6400,
            "6.400",
            "1.60",
            "meter_values",
        )
        assert s["endReason"] == "ForceEnded"
        (t,) = await transactions(admin, "SEED1")
        assert (t["transactionId"], t["stopReason"], t["meterStart"], t["meterStop"]) == (tx, "ForceEnded", 1000, 7400)
        assert t["stopTime"] is not None

        r = await admin.post(START, json=start_body("SEED1", tag="TAG2"))
        assert r.status_code == 200, r.text
        assert await linked(admin, r.json()["data"]["sessionId"]) != tx  # the station's Started for it, a new one
    log = csms.log()
    assert "unlock.found_stuck" in log and "unlock.force_ended" in log and "unlock.done" in log


async def test_seed_scenario_2_two_stuck_sessions_both_cleared(csms):
    """Both kinds of stuck: an accepted start whose Started never came, and a transaction whose Ended is lost."""
    async with station(csms, "SEED2") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        st.behaviour.start_after_accept = False
        r = await admin.post(START, json=start_body("SEED2", tag="TAGA"))
        assert r.status_code == 200, r.text
        a = r.json()["data"]["sessionId"]
        assert (await session(admin, a))["status"] == "Accepted"
        st.behaviour.start_after_accept, st.meter_wh = True, 2000
        r = await admin.post(START, json=start_body("SEED2", tag="TAGB"))  # an accept alone is not busy (seed 001)
        assert r.status_code == 200, r.text
        b = r.json()["data"]["sessionId"]
        await linked(admin, b)
        (station_tx,) = st.transactions()
        await blocking(st.transaction_event, "Updated", station_tx, "MeterValuePeriodic", meter_wh=5000)
        await blocking(st.status, 1, 1, "Available")
        ended_lost(st)

        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED2", "connectorId": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(body["data"]["cleanedSessions"]) == sorted([a, b]) and body["data"]["sessionsCleared"] == 2
        assert f"Session {a} was automatically ended" in body["data"]["warnings"]
        assert f"Session {b} was automatically ended" in body["data"]["warnings"]
        assert body["message"].endswith(". 2 stuck session(s) automatically cleared.")
        await assert_free(admin, "SEED2")
        sa, sb = await session(admin, a), await session(admin, b)
        assert (sa["endReason"], sa["energyWh"], sa["chargingTotalFee"]) == ("ForceEnded", 0, "0.00"), sa
        assert (sb["endReason"], sb["energyWh"], sb["chargingTotalFee"]) == ("ForceEnded", 3000, "0.75"), sb


async def test_seed_scenario_3_nothing_stuck(csms):
    async with station(csms, "SEED3") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED3", "connectorId": 1})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "success": True,
            "message": "Connector unlocked successfully",
            "data": {
                "chargingStationId": "SEED3",
                "connectorId": 1,
                "chargePointId": "SEED3",
                "status": "Unlocked",
                "cleanedSessions": [],
                "sessionsCleared": 0,
                "warnings": [],
            },
        }
        assert [(e.action, e.payload) for e in st.received()] == [("UnlockConnector", {"evseId": 1, "connectorId": 1})]
        await assert_free(admin, "SEED3")


# Live evidence off: what keeps the transaction open at this unlock is what the station answers (not a sample).
@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--live-evidence-seconds", "0"]])
async def test_seed_scenario_1_after_a_network_drop_the_unlock_still_asks_the_station(csms):
    """The seed's first cause of a stuck gun is a network failure. A station back on a new connection, still
    running its transaction (no event for it since), is asked as on the old one, and not force-ended."""
    async with station(csms, "SEED4") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        st.meter_wh = 1000
        r = await admin.post(START, json=start_body("SEED4"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        tx = await linked(admin, session_id)
        (station_tx,) = st.transactions()
        await blocking(st.status, 1, 1, "Occupied")
        await blocking(st.disconnect)  # the network drops; the station charges on
        await blocking(st.connect, csms.url("SEED4"))
        await blocking(st.status, 1, 1, "Occupied")

        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED4", "connectorId": 1})
        assert [e.payload for e in st.received("GetTransactionStatus")] == [{"transactionId": station_tx}]
        assert r.status_code == 409, r.text
        assert r.json()["message"].startswith(f"Not unlocked: transaction {tx} is ongoing: the station says")
        assert r.json()["data"]["cleanedSessions"] == [] and not st.received("UnlockConnector")
        s = await session(admin, session_id)
        assert (s["status"], s["endTime"]) == ("Charging", None)


async def test_seed_scenario_1_with_the_car_still_plugged_keeps_the_stored_status(csms):
    """The stuck session of an accepted start whose Started never came, the car still plugged in (EVSE Occupied):
    the unlock ends the session and leaves the stored status alone, as it does for a 1.6 charger's Preparing."""
    async with station(csms, "SEED5") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        st.behaviour.start_after_accept = False
        r = await admin.post(START, json=start_body("SEED5"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        await blocking(st.status, 1, 1, "Occupied")

        async def stored_occupied() -> bool:
            return with_db(csms.db_url, lambda s: s.get(ConnectorStatus, ("SEED5", 1)).status) == "Occupied"

        await until(stored_occupied, "the Occupied status to be stored")
        r = await admin.post(UNLOCK, json={"chargingStationId": "SEED5", "connectorId": 1})
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "Connector unlocked successfully. 1 stuck session(s) automatically cleared."
        assert r.json()["data"]["warnings"] == [f"Session {session_id} was automatically ended"]
        assert with_db(csms.db_url, lambda s: s.get(ConnectorStatus, ("SEED5", 1)).status) == "Occupied"


# ------------------------------------------------------------- seed 001: the quick decision matrix
# Its rows below the tests, grouped one CSMS per test (each `csms serve` costs seconds).


# No reconnect settle window: a station that has said nothing of an EVSE is judged by its persisted status.
@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--reconnect-settle-seconds", "0"]])
async def test_matrix_live_status_then_persisted_status_while_fresh(csms):
    await live_status_rows(csms)
    await persisted_status_rows(csms)
    assert "start.refused code=ConnectorBusy" in csms.log()


async def test_matrix_open_transaction_or_active_reservation_makes_busy(csms):
    await app_transaction_rows(csms)
    await local_transaction_row(csms)
    await reservation_rows(csms)
    assert "start.refused code=ConnectorBusy" in csms.log()


async def test_matrix_offline_and_a_reconnected_station_not_free_until_it_reports(csms):
    st = LibStation("MXO")
    try:
        await blocking(st.connect, csms.url("MXO"))
        await blocking(st.boot)
        await blocking(st.status, 1, 1, "Available")
        await blocking(st.disconnect)
        async with csms.client() as admin:
            r = await admin.post(START, json=start_body("MXO"))
            assert r.status_code == 409, r.text
            assert r.json()["message"] == "Charger is offline" and r.json()["data"]["code"] == "ChargerOffline"
            occ = await occupancy(admin, "MXO")
            assert occ["verdict"] == "offline" and occ["reasons"][0] == "websocket:absent", occ

            # Back, refusing the status probe (TriggerMessage is optional): not free until it says what it does.
            st.behaviour.trigger = "Rejected"
            await blocking(st.connect, csms.url("MXO"))
            await blocking(st.boot)
            occ = await occupancy(admin, "MXO")
            assert occ["verdict"] == "offline" and occ["reasons"][0].startswith("websocket:reconnected:"), occ
            r = await admin.post(START, json=start_body("MXO"))
            assert r.status_code != 200, r.text
            await blocking(st.status, 1, 1, "Available")
            assert (await occupancy(admin, "MXO"))["verdict"] == "free"

            # Back again, answering the probe per EVSE with its status: free as soon as it has.
            await blocking(st.disconnect)
            st.behaviour.trigger = None
            await blocking(st.connect, csms.url("MXO"))

            async def free() -> bool:
                return (await occupancy(admin, "MXO"))["verdict"] == "free"

            await until(free, "the probed station's status to free the EVSE")
            probe = {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}
            assert probe in [e.payload for e in st.received("TriggerMessage")]
    finally:
        await blocking(st.close)
    assert "reason='reconnected: what is this connector doing now?'" in csms.log()


async def live_status_rows(csms) -> None:
    """Live Occupied/Unavailable/Faulted (and 2.0.1's Reserved) -> ConnectorBusy; live Available -> allowed."""
    async with station(csms, "MXL", evses=1 + len(BUSY_201)) as st, csms.client() as admin:
        st.behaviour.start_after_accept = False
        await blocking(st.status, 1, 1, "Available")
        for evse, status in enumerate(BUSY_201, start=2):
            await blocking(st.status, evse, 1, status)
        for evse, status in enumerate(BUSY_201, start=2):
            occ = await occupancy(admin, "MXL", evse)
            assert (occ["verdict"], occ["reasons"]) == ("busy", [f"live_status:{status}"]), occ
            r = await admin.post(START, json=start_body("MXL", evse))
            assert r.status_code == 409 and r.json()["message"] == "Charging gun is already in use", r.text
            assert r.json()["data"]["code"] == "ConnectorBusy"
        r = await admin.get("/api/connectors", params={"verdict": "busy"})
        assert [row for row in r.json()["data"] if row["chargePointId"] == "MXL"] == [
            {"chargePointId": "MXL", "connectorId": e, "verdict": "busy", "reasons": [f"live_status:{s}"]}
            for e, s in enumerate(BUSY_201, start=2)
        ]
        await assert_free(admin, "MXL", 1)
        r = await admin.post(START, json=start_body("MXL", 1))
        assert r.status_code == 200, r.text
        assert [e.payload["evseId"] for e in st.received("RequestStartTransaction")] == [1]


async def persisted_status_rows(csms) -> None:
    """No live status: a persisted non-Available one is busy while fresh (<= 30 min); a live Available wins."""
    now = datetime.now(UTC)
    rows = {1: ("Faulted", 10), 2: ("Faulted", 31), 3: ("Faulted", 0)}
    async with station(csms, "MXP", evses=3) as st, csms.client() as admin:
        st.behaviour.start_after_accept = False
        await blocking(st.heartbeat)  # online, but not a word about its EVSEs yet
        with_db(
            csms.db_url,
            lambda s: s.add_all(
                ConnectorStatus(
                    charge_point_id="MXP",
                    connector_id=evse,
                    status=status,
                    error_code="GroundFailure",
                    updated_at=now - timedelta(minutes=age),
                )
                for evse, (status, age) in rows.items()
            ),
        )
        occ = await occupancy(admin, "MXP", 1)
        assert (occ["verdict"], occ["reasons"]) == ("busy", ["persisted_status:Faulted:age=10m"]), occ
        assert occ["signals"]["liveStatus"] is None and occ["signals"]["persistedStatus"]["status"] == "Faulted"
        r = await admin.post(START, json=start_body("MXP", 1))
        assert r.status_code == 409 and r.json()["data"]["code"] == "ConnectorBusy", r.text

        occ = await occupancy(admin, "MXP", 2)
        assert (occ["verdict"], occ["reasons"]) == ("free", []), occ
        assert occ["signals"]["persistedStatus"]["fresh"] is False
        r = await admin.post(START, json=start_body("MXP", 2))
        assert r.status_code == 200, r.text

        await blocking(st.status, 3, 1, "Available")  # live Available overrides a fresh persisted fault
        assert (await occupancy(admin, "MXP", 3))["verdict"] == "free"


async def app_transaction_rows(csms) -> None:
    """An accepted app start is free; its Started makes it busy; its Ended bills it and frees the EVSE."""
    async with station(csms, "MXF") as st, csms.client("user") as user, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        st.behaviour.start_after_accept = False
        r = await user.post(START, json=start_body("MXF"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        (request,) = st.received("RequestStartTransaction")
        assert request.payload["evseId"] == 1 and request.payload["idToken"]["idToken"] == "TAG1"
        assert (await occupancy(admin, "MXF"))["verdict"] == "free"  # an accept alone does not make it busy

        # The station's Started names the app's remoteStartId (and an id token of its own type).
        await blocking(st.transaction_event, "Started", "MXF-1", "RemoteStart", evse_id=1, connector_id=1,
                       remote_start_id=request.payload["remoteStartId"], id_token="TAG1", meter_wh=1000,
                       charging_state="EVConnected")  # fmt: skip
        tx = await linked(user, session_id)
        await blocking(st.status, 1, 1, "Occupied")
        occ = await occupancy(admin, "MXF")
        assert occ["verdict"] == "busy" and occ["reasons"] == ["live_status:Occupied", f"open_transaction:{tx}"], occ
        assert occ["signals"]["openTransactions"][0]["transactionId"] == tx

        r = await user.post(START, json=start_body("MXF", tag="OTHER"))
        assert r.status_code == 409 and r.json()["message"] == "Charging gun is already in use"
        assert r.json()["data"]["code"] == "ConnectorBusy" and f"open_transaction:{tx}" in r.json()["data"]["reasons"]
        s = await session(user, session_id)
        assert (s["status"], s["transactionId"]) == ("Charging", tx)

        st.meter_wh = 7400  # what the station's Ended (its answer to RequestStopTransaction) reads
        r = await user.post(STOP, json={"sessionId": session_id})
        assert r.status_code == 200 and r.json()["data"]["status"] == "StopRequested", r.text
        assert st.received("RequestStopTransaction")[-1].payload == {"transactionId": "MXF-1"}

        async def ended() -> bool:
            return (await session(user, session_id))["status"] == "Ended"

        await until(ended, "the station's Ended to end the session")
        await blocking(st.status, 1, 1, "Available")
        s = await session(user, session_id)
        assert (s["energyWh"], s["energyKwh"], s["chargingTotalFee"], s["meterSource"]) == (
            6400,
            "6.400",
            "1.60",
            "meter_stop",
        )
        await assert_free(admin, "MXF")


async def local_transaction_row(csms) -> None:
    """An open transaction alone (its Ended never comes) -> ConnectorBusy."""
    async with station(csms, "MXT") as st, csms.client() as admin:
        await blocking(st.status, 1, 1, "Available")
        # A local start (no charging state: no live status either); its Ended never comes.
        await blocking(st.transaction_event, "Started", "MXT-1", "CablePluggedIn", evse_id=1, connector_id=1,
                       id_token="LOCAL", meter_wh=0)  # fmt: skip
        (t,) = await transactions(admin, "MXT")
        r = await admin.post(START, json=start_body("MXT"))
        assert r.status_code == 409 and r.json()["data"]["reasons"] == [f"open_transaction:{t['transactionId']}"]


async def reservation_rows(csms) -> None:
    """An active reservation -> ConnectorBusy (two concurrent creates: one wins); it charges, then completes."""
    async with station(csms, "MXR") as st, csms.client("user") as user:
        await blocking(st.status, 1, 1, "Available")
        body = start_body("MXR") | {"amount": "20.00"}
        results = []

        async def create():
            results.append(await user.post("/api/Payments/Create", json=body))

        async with trio.open_nursery() as n:
            n.start_soon(create)
            n.start_soon(create)
        assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 409)
        assert loser.json()["data"]["code"] == "ConnectorBusy"
        winner = next(r for r in results if r.status_code == 200).json()["data"]
        rid = winner["reservationId"]
        assert winner["status"] == "PendingPayment"
        async with csms.client() as admin:
            occ = await occupancy(admin, "MXR")
        assert (occ["verdict"], occ["reasons"]) == ("busy", [f"active_reservation:{rid}:PendingPayment"]), occ
        r = await user.post(START, json=start_body("MXR", tag="OTHER"))
        assert r.status_code == 409 and r.json()["data"]["reasons"] == [f"active_reservation:{rid}:PendingPayment"]

        st.meter_wh = 0
        r = await user.post("/api/Payments/Confirm", json={"reservationId": rid})
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        await linked(user, session_id)
        assert with_db(csms.db_url, lambda s: s.get(PaymentReservation, rid).status) == "Charging"
        (station_tx,) = st.transactions()
        await blocking(st.transaction_event, "Ended", station_tx, "EVCommunicationLost", meter_wh=2000,
                       stopped_reason="EVDisconnected")  # fmt: skip
        assert with_db(csms.db_url, lambda s: s.get(PaymentReservation, rid).status) == "Completed"
        assert (await session(user, session_id))["chargingTotalFee"] == "0.50"
