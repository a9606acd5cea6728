"""Issue 3 end to end: start/stop flow, occupancy verdicts and their reasons, payments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import trio

from csms.db.models import ChargingSession, ConnectorStatus, PaymentReservation
from tests.support.chargepoint import Answers, connect
from tests.support.db import with_db, writes_held


def _start_body(cp_id: str, connector: int = 1, tariff="0.25", tag="TAG1"):
    return {"chargingStationId": cp_id, "connectorId": connector, "chargeTagId": tag, "chargingTariff": tariff}


async def _occupancy(http, cp_id, connector=1):
    r = await http.get(f"/api/connectors/{cp_id}/{connector}/occupancy")
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def _stored(csms, cp_id, connector=1):
    """Until the connector's status is in the database: what a reconnect probe reads (statuses are written behind)."""
    async with csms.client() as admin:
        with trio.fail_after(10):
            while (await _occupancy(admin, cp_id, connector))["signals"].get("persistedStatus") is None:
                await trio.sleep(0.05)


async def test_free_start_then_busy_then_stop_settles_energy_and_fee(csms):
    async with connect(csms.ocpp, "OC1") as cp, csms.client("user") as user, csms.client() as admin:
        await cp.status(1, "Available")
        r = await user.post("/api/ChargingSession/start-charging-session", json=_start_body("OC1"))
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        assert cp.answers.received[-1] == ("RemoteStartTransaction", {"id_tag": "TAG1", "connector_id": 1})
        assert (await _occupancy(admin, "OC1"))["verdict"] == "free"  # an accept alone does not make it busy

        await cp.status(1, "Preparing")
        tx = await cp.start(1, "TAG1", meter_start=1000)
        await cp.status(1, "Charging")
        occ = await _occupancy(admin, "OC1")
        assert occ["verdict"] == "busy"
        assert occ["reasons"] == ["live_status:Charging", f"open_transaction:{tx}"]
        assert occ["signals"]["openTransactions"][0]["transactionId"] == tx

        r = await user.post("/api/ChargingSession/start-charging-session", json=_start_body("OC1", tag="OTHER"))
        assert r.status_code == 409
        assert r.json()["message"] == "Charging gun is already in use"
        assert r.json()["data"]["code"] == "ConnectorBusy"
        assert f"open_transaction:{tx}" in r.json()["data"]["reasons"]

        r = await user.get(f"/api/ChargingSession/{session_id}")
        assert r.json()["data"]["status"] == "Charging" and r.json()["data"]["transactionId"] == tx

        r = await user.post("/api/ChargingSession/stop-charging-session", json={"sessionId": session_id})
        assert r.status_code == 200 and r.json()["data"]["status"] == "StopRequested"
        assert cp.answers.received[-1] == ("RemoteStopTransaction", {"transaction_id": tx})
        await cp.stop(tx, meter_stop=7400, reason="Remote")
        await cp.status(1, "Available")
        data = (await user.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        assert data["status"] == "Ended"
        assert (data["energyWh"], data["energyKwh"], data["chargingTotalFee"]) == (6400, "6.400", "1.60")
        assert data["meterSource"] == "meter_stop"
        assert (await _occupancy(admin, "OC1"))["verdict"] == "free"
    assert "start.refused code=ConnectorBusy" in csms.log()


async def test_open_transaction_alone_makes_busy(csms):
    async with connect(csms.ocpp, "OC2") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        tx = await cp.start(1)  # StopTransaction will never come
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC2"))
        assert r.status_code == 409 and r.json()["data"]["reasons"] == [f"open_transaction:{tx}"]


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--reconnect-settle-seconds", "0"]])
@pytest.mark.parametrize("age_minutes, verdict", [(10, "busy"), (31, "free")])
async def test_persisted_status_counts_only_while_fresh(csms, age_minutes, verdict):
    at = datetime.now(UTC) - timedelta(minutes=age_minutes)
    async with connect(csms.ocpp, "OC3") as cp, csms.client() as admin:
        await cp.heartbeat()  # online, but never sent a status for connector 1
        with_db(
            csms.db_url,
            lambda s: s.add(
                ConnectorStatus(
                    charge_point_id="OC3", connector_id=1, status="Faulted", error_code="GroundFailure", updated_at=at
                )
            ),
        )
        occ = await _occupancy(admin, "OC3")
        assert occ["verdict"] == verdict
        assert occ["signals"]["liveStatus"] is None
        assert occ["signals"]["persistedStatus"]["status"] == "Faulted"
        if verdict == "busy":
            assert occ["reasons"] == [f"persisted_status:Faulted:age={age_minutes}m"]
        else:
            assert occ["reasons"] == [] and occ["signals"]["persistedStatus"]["fresh"] is False
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC3"))
        assert r.status_code == (409 if verdict == "busy" else 200), r.text


async def test_reconnected_charger_is_not_free_until_it_reports(csms):
    """Back after a drop, a connector it reported before stays not-free (offline, with the reason) until it
    says what it is doing now: it may be replaying a StartTransaction from while it was away."""
    async with connect(csms.ocpp, "OC9") as cp:
        await cp.status(1, "Available")
    async with connect(csms.ocpp, "OC9") as cp, csms.client() as admin:
        occ = await _occupancy(admin, "OC9")
        assert occ["verdict"] == "offline" and occ["reasons"][0].startswith("websocket:reconnected:"), occ
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC9"))
        assert r.status_code != 200, r.text
        await cp.status(1, "Available")
        assert (await _occupancy(admin, "OC9"))["verdict"] == "free"


async def test_live_available_overrides_fresh_persisted_fault(csms):
    async with connect(csms.ocpp, "OC4") as cp, csms.client() as admin:
        with_db(
            csms.db_url,
            lambda s: s.add(
                ConnectorStatus(charge_point_id="OC4", connector_id=1, status="Faulted", updated_at=datetime.now(UTC))
            ),
        )
        await cp.status(1, "Available")
        assert (await _occupancy(admin, "OC4"))["verdict"] == "free"


async def test_lingering_authorized_reservation_makes_busy(csms):
    now = datetime.now(UTC)
    async with connect(csms.ocpp, "OC5") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        with_db(
            csms.db_url,
            lambda s: s.add(
                PaymentReservation(
                    id="res-linger",
                    station_id="OC5",
                    charge_point_id="OC5",
                    connector_id=1,
                    id_tag="T",
                    tariff=Decimal("0.3"),
                    status="Authorized",
                    created_at=now,
                    updated_at=now,
                )
            ),
        )
        occ = await _occupancy(admin, "OC5")
        assert occ["verdict"] == "busy" and occ["reasons"] == ["active_reservation:res-linger:Authorized"]
        assert occ["signals"]["activeReservations"][0]["reservationId"] == "res-linger"
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC5"))
        assert r.status_code == 409


async def test_charger_offline(csms):
    async with connect(csms.ocpp, "OC6") as cp:
        await cp.status(1, "Available")
    async with csms.client() as admin:
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC6"))
        assert r.status_code == 409
        assert r.json()["message"] == "Charger is offline" and r.json()["data"]["code"] == "ChargerOffline"
        occ = await _occupancy(admin, "OC6")
        assert occ["verdict"] == "offline" and occ["reasons"][0] == "websocket:absent"


async def test_remote_start_rejected_fails_session_and_leaves_connector_free(csms):
    async with connect(csms.ocpp, "OC7") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        cp.answers.remote_start = "Rejected"
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC7"))
        assert r.status_code == 409 and r.json()["data"]["code"] == "RemoteStartRejected"
        session_id = r.json()["data"]["sessionId"]
        data = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        assert data["status"] == "Failed" and data["endTime"] is not None
        occ = await _occupancy(admin, "OC7")
        assert occ["verdict"] == "free" and occ["reasons"] == []
        cp.answers.remote_start = "Accepted"
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC7"))
        assert r.status_code == 200


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--call-timeout-seconds", "1"]])
async def test_remote_start_unanswered_times_out_and_leaves_connector_free(csms):
    async with connect(csms.ocpp, "OC8") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        cp.answers.remote_start = None  # never answer
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC8"))
        assert r.status_code == 504 and r.json()["message"] == "Charge point did not respond in time"
        assert (await _occupancy(admin, "OC8"))["verdict"] == "free"


async def test_bad_tariff_rejected_at_start(csms):
    async with csms.client() as admin:
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC9", tariff="cheap"))
        assert r.status_code == 400 and "chargingTariff" in r.json()["message"]
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("OC9", tariff=-1))
        assert r.status_code == 400
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_start_body("nope"))
        assert r.status_code == 404 and r.json()["message"] == "Charging station not found or inactive"


async def test_connector_list_filters_by_verdict(csms):
    async with connect(csms.ocpp, "OCL") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        await cp.status(2, "Faulted")
        r = await admin.get("/api/connectors", params={"verdict": "busy"})
        rows = [row for row in r.json()["data"] if row["chargePointId"] == "OCL"]
        assert rows == [
            {"chargePointId": "OCL", "connectorId": 2, "verdict": "busy", "reasons": ["live_status:Faulted"]}
        ]
        r = await admin.get("/api/connectors", params={"verdict": "nonsense"})
        assert r.status_code == 400


async def test_payment_flow_and_concurrent_creates(csms):
    async with connect(csms.ocpp, "PAY1") as cp, csms.client("user") as user:
        await cp.status(1, "Available")
        body = _start_body("PAY1") | {"amount": "20.00"}
        results = []

        async def create():
            results.append(await user.post("/api/Payments/Create", json=body))

        async with trio.open_nursery() as n:
            n.start_soon(create)
            n.start_soon(create)
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 409)
        assert loser.json()["data"]["code"] == "ConnectorBusy"
        winner = next(r for r in results if r.status_code == 200).json()["data"]
        assert winner["status"] == "PendingPayment" and winner["providerRef"].startswith("sim_")

        r = await user.post("/api/Payments/Confirm", json={"reservationId": winner["reservationId"]})
        assert r.status_code == 200, r.text
        session_id = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "TAG1", 0)
        res_status = with_db(csms.db_url, lambda s: s.get(PaymentReservation, winner["reservationId"]).status)
        assert res_status == "Charging"
        await cp.stop(tx, 2000)
        res_status = with_db(csms.db_url, lambda s: s.get(PaymentReservation, winner["reservationId"]).status)
        assert res_status == "Completed"
        fee = with_db(csms.db_url, lambda s: s.get(ChargingSession, session_id).fee)
        assert fee == Decimal("0.50")


async def test_declined_payment_and_cancel(csms):
    async with connect(csms.ocpp, "PAY2") as cp, csms.client("user") as user:
        await cp.status(1, "Available")
        r = await user.post("/api/Payments/Create", json=_start_body("PAY2"))
        rid = r.json()["data"]["reservationId"]
        r = await user.post("/api/Payments/Confirm", json={"reservationId": rid, "paymentMethod": "declined"})
        assert r.status_code == 402 and r.json()["data"]["code"] == "PaymentDeclined"
        r = await user.post("/api/Payments/Create", json=_start_body("PAY2"))
        assert r.status_code == 200  # the failed one no longer holds the connector
        rid2 = r.json()["data"]["reservationId"]
        r = await user.post("/api/Payments/Cancel", json={"reservationId": rid2})
        assert r.status_code == 200 and r.json()["data"]["status"] == "Cancelled"
        r = await user.post("/api/Payments/Cancel", json={"reservationId": rid2})
        assert r.status_code == 409


async def test_reconnect_probe_asks_known_connectors_and_ends_the_settle_window(csms):
    """A charger back without a word about its connectors is asked at once; its answer makes it free."""
    async with connect(csms.ocpp, "OC10") as cp:
        await cp.status(1, "Available")
        await _stored(csms, "OC10")
    async with csms.client() as admin, connect(csms.ocpp, "OC10", boot=False) as cp:

        async def answer(requested, connector_id):
            await cp.status(connector_id, "Available")

        # Set before the first checkpoint: the connection's reader has not run yet, so the probe (sent at
        # once on connect) cannot be answered before the charger knows to report.
        cp.answers.on_trigger = answer
        asked = ("TriggerMessage", {"requested_message": "StatusNotification", "connector_id": 1})
        with trio.fail_after(10):  # the settle window is 10 s: only the answer can end it before
            # Asked first: until the CSMS has seen the old connection close, it may still say "free" from it.
            while asked not in cp.answers.received:
                await trio.sleep(0.05)
            while (await _occupancy(admin, "OC10"))["verdict"] != "free":
                await trio.sleep(0.1)
    assert "reason='reconnected: what is this connector doing now?'" in csms.log()


async def test_the_reconnect_probe_asks_a_connector_known_only_from_its_transactions(csms):
    """A connector that never sent a status but charged before exists: back on a new connection (a car may have
    started there while the charger was away, its start lost with the queue), it is asked too."""
    async with connect(csms.ocpp, "OC13") as cp:
        await cp.status(1, "Available")
        tx = await cp.start(2, "TAG1", meter_start=0)  # connector 2 never reports a status
        await cp.stop(tx, 100)
    async with connect(csms.ocpp, "OC13", boot=False) as cp:
        with trio.fail_after(10):
            while ("TriggerMessage", {"requested_message": "StatusNotification", "connector_id": 2}) not in (
                cp.answers.received
            ):
                await trio.sleep(0.05)


async def test_a_start_being_stored_is_busy(csms):
    """A StartTransaction received but not yet committed (the database is slow): the car is there already."""
    async with connect(csms.ocpp, "OC11") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        async with trio.open_nursery() as nursery:
            with writes_held(csms.db_url):  # the StartTransaction waits for its commit meanwhile
                nursery.start_soon(cp.start, 1)
                with trio.fail_after(10):
                    while (occ := await _occupancy(admin, "OC11"))["reasons"] != ["start_transaction:being_stored"]:
                        assert occ["verdict"] == "free", occ  # before the frame arrived
                        await trio.sleep(0.05)
                assert occ["verdict"] == "busy"
        occ = await _occupancy(admin, "OC11")  # stored: an open transaction says so from now on
        assert occ["verdict"] == "busy" and occ["reasons"][0].startswith("open_transaction:"), occ


@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--reconnect-settle-seconds", "6"]])
async def test_a_charger_that_refuses_the_reconnect_probe_gets_the_whole_settle_window(csms):
    """TriggerMessage is optional (RemoteTrigger profile): a charger that refuses it may still be replaying,
    so its answer does not end the window early (an Accepted one would, 2 s after it)."""
    async with connect(csms.ocpp, "OC12") as cp:
        await cp.status(1, "Available")
        await _stored(csms, "OC12")
    refusing = Answers()
    refusing.trigger = "Rejected"
    async with connect(csms.ocpp, "OC12", boot=False, answers=refusing), csms.client() as admin:
        with trio.fail_after(10):
            while (
                "TriggerMessage",
                {"requested_message": "StatusNotification", "connector_id": 1},
            ) not in refusing.received:
                await trio.sleep(0.05)
        await trio.sleep(3.0)  # past the answer + 2 s an Accepted probe would have allowed
        occ = await _occupancy(admin, "OC12")
        assert occ["verdict"] == "offline" and occ["reasons"][0].startswith("websocket:reconnected:"), occ
        with trio.fail_after(10):  # ... until the window itself runs out
            while (await _occupancy(admin, "OC12"))["verdict"] != "free":
                await trio.sleep(0.2)
