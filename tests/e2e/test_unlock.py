"""Issue 4 end to end: unlock-connector force-ends stuck sessions and really frees the connector."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent, ChargingSession, PaymentReservation, Transaction
from tests.support.chargepoint import connect
from tests.support.db import plant_stuck_session, with_db

UNLOCK = "/api/ChargingSession/unlock-connector"
START = "/api/ChargingSession/start-charging-session"


def _start(cp_id, tag="TAG1"):
    return {"chargingStationId": cp_id, "connectorId": 1, "chargeTagId": tag, "chargingTariff": "0.25"}


async def _assert_free(admin, cp_id):
    occ = (await admin.get(f"/api/connectors/{cp_id}/1/occupancy")).json()["data"]
    assert occ["verdict"] == "free", occ
    assert occ["signals"]["openTransactions"] == [] and occ["signals"]["activeReservations"] == []


async def test_seed_scenario_1_dropped_stop_then_unlock_then_start_again(csms):
    async with connect(csms.ocpp, "UL1") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post(START, json=_start("UL1"))
        assert r.status_code == 200
        session_id = r.json()["data"]["sessionId"]
        await cp.status(1, "Charging")
        tx = await cp.start(1, "TAG1", meter_start=1000)
        await cp.meter(1, tx, 7400)
        await cp.status(1, "Available")  # the car left; StopTransaction is lost
        r = await admin.post(START, json=_start("UL1"))
        assert r.status_code == 409 and r.json()["message"] == "Charging gun is already in use"

        r = await admin.post(UNLOCK, json={"chargingStationId": "UL1", "connectorId": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"] == "Connector unlocked successfully. 1 stuck session(s) automatically cleared."
        assert body["data"]["cleanedSessions"] == [session_id] and body["data"]["sessionsCleared"] == 1
        assert body["data"]["status"] == "Unlocked" and body["data"]["chargePointId"] == "UL1"
        assert cp.answers.received[-1] == ("UnlockConnector", {"connector_id": 1})
        await _assert_free(admin, "UL1")

        s = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        assert (s["energyWh"], s["energyKwh"], s["chargingTotalFee"], s["meterSource"]) == (
            6400,
            "6.400",
            "1.60",
            "meter_values",
        )
        assert s["endReason"] == "ForceEnded"
        t = with_db(csms.db_url, lambda db: db.get(Transaction, tx))
        assert (t.stop_reason, t.meter_stop) == ("ForceEnded", 7400) and t.stop_time is not None

        r = await admin.post(START, json=_start("UL1", "TAG2"))
        assert r.status_code == 200
    log = csms.log()
    assert "unlock.found_stuck" in log and "unlock.force_ended" in log and "unlock.done" in log


async def test_seed_scenario_2_two_stuck_sessions_both_cleared(csms):
    async with connect(csms.ocpp, "UL2") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        a, _ = plant_stuck_session(csms.db_url, "UL2", 1)
        b, _ = plant_stuck_session(csms.db_url, "UL2", 1)
        r = await admin.post(UNLOCK, json={"chargingStationId": "UL2", "connectorId": 1})
        body = r.json()
        assert sorted(body["data"]["cleanedSessions"]) == sorted([a, b]) and body["data"]["sessionsCleared"] == 2
        assert f"Session {a} was automatically ended" in body["data"]["warnings"]
        assert body["message"].endswith(". 2 stuck session(s) automatically cleared.")
        await _assert_free(admin, "UL2")


async def test_seed_scenario_3_nothing_stuck(csms):
    async with connect(csms.ocpp, "UL3") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post(UNLOCK, json={"chargingStationId": "UL3", "connectorId": 1})
        assert r.status_code == 200
        assert r.json() == {
            "success": True,
            "message": "Connector unlocked successfully",
            "data": {
                "chargingStationId": "UL3",
                "connectorId": 1,
                "chargePointId": "UL3",
                "status": "Unlocked",
                "cleanedSessions": [],
                "sessionsCleared": 0,
                "warnings": [],
            },
        }
        await _assert_free(admin, "UL3")


async def test_no_samples_bills_nothing_and_says_why(csms):
    async with connect(csms.ocpp, "UL4") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        sid, _ = plant_stuck_session(csms.db_url, "UL4", 1, meter_start=1000, latest_wh=None)
        await admin.post(UNLOCK, json={"chargingStationId": "UL4", "connectorId": 1})
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["energyWh"], s["chargingTotalFee"], s["meterSource"]) == (0, "0.00", "meter_start")


async def test_unlock_also_cancels_reservations_and_resets_stale_status(csms):
    async with connect(csms.ocpp, "UL5") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post("/api/Payments/Create", json=_start("UL5"))
        rid = r.json()["data"]["reservationId"]
        r = await admin.post(UNLOCK, json={"chargingStationId": "UL5", "connectorId": 1})
        assert f"Reservation {rid} was cancelled" in r.json()["data"]["warnings"]
        assert with_db(csms.db_url, lambda s: s.get(PaymentReservation, rid).status) == "Cancelled"
        await _assert_free(admin, "UL5")


@pytest.mark.parametrize(
    "answer, message",
    [
        ("UnlockFailed", "UnlockFailed: the charge point could not unlock the connector"),
        ("NotSupported", "NotSupported: the charge point does not support remote unlock"),
        (None, "Charge point did not respond in time"),
    ],
)
@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--call-timeout-seconds", "1"]])
async def test_failed_unlock_still_cleans(csms, answer, message):
    async with connect(csms.ocpp, "UL6") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        sid, _ = plant_stuck_session(csms.db_url, "UL6", 1)
        cp.answers.unlock = answer
        r = await admin.post(UNLOCK, json={"chargingStationId": "UL6", "connectorId": 1})
        assert r.status_code == 400
        assert r.json() == {
            "success": False,
            "message": message,
            "data": {"cleanedSessions": [sid], "warnings": [f"Session {sid} was automatically ended"]},
        }
        await _assert_free(admin, "UL6")
    assert "unlock.failed" in csms.log()


async def test_offline_unlock_still_cleans(csms):
    async with connect(csms.ocpp, "UL7") as cp:
        await cp.status(1, "Available")
    sid, _ = plant_stuck_session(csms.db_url, "UL7", 1)
    async with csms.client() as admin:
        r = await admin.post(UNLOCK, json={"chargingStationId": "UL7", "connectorId": 1})
        assert r.status_code == 400
        assert r.json()["message"] == "Charger is offline" and r.json()["data"]["cleanedSessions"] == [sid]


async def test_unlock_validation_and_roles(csms):
    async with csms.client("user") as user:
        r = await user.post(UNLOCK, json={"chargingStationId": "X", "connectorId": 1})
        assert r.status_code == 403
    async with csms.client() as admin:
        r = await admin.post(UNLOCK, json={"connectorId": "one"})
        assert r.status_code == 400 and r.json()["message"].startswith("Invalid request data")
        r = await admin.post(UNLOCK, json={"chargingStationId": "nope", "connectorId": 1})
        assert r.status_code == 404 and r.json()["message"] == "Charging station not found or inactive"
        await admin.post("/api/stations", json={"id": "orphan-station", "chargePointId": "GHOST"})
        from csms.db.models import ChargePoint

        with_db(csms.db_url, lambda s: s.delete(s.get(ChargePoint, "GHOST")))
        r = await admin.post(UNLOCK, json={"chargingStationId": "orphan-station", "connectorId": 1})
        assert r.status_code == 404 and r.json()["message"] == "Charge point not found"


async def test_twenty_concurrent_unlocks_clear_three_sessions_once(csms):
    async with connect(csms.ocpp, "UL8") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        planted = [plant_stuck_session(csms.db_url, "UL8", 1, meter_start=0, latest_wh=4000 + i)[0] for i in range(3)]
        bodies = []

        async def one():
            bodies.append((await admin.post(UNLOCK, json={"chargingStationId": "UL8", "connectorId": 1})).json())

        async with trio.open_nursery() as n:
            for _ in range(20):
                n.start_soon(one)
        cleared = [sid for b in bodies for sid in b["data"]["cleanedSessions"]]
        assert sorted(cleared) == sorted(planted)
        assert sum(b["data"]["sessionsCleared"] for b in bodies) == 3
        events = with_db(
            csms.db_url,
            lambda s: [
                e.subject for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "session.force_ended"))
            ],
        )
        assert sorted(events) == sorted(planted)
        fees = with_db(csms.db_url, lambda s: sorted(str(s.get(ChargingSession, sid).fee) for sid in planted))
        assert fees == ["1.00", "1.00", "1.00"]  # 4.000-4.002 kWh x 0.25
        unlock_audits = with_db(
            csms.db_url,
            lambda s: len(list(s.scalars(select(AuditEvent).where(AuditEvent.action == "connector.unlock")))),
        )
        assert unlock_audits == 20


# The charger is cut off in this story: its sample of a moment ago is not live evidence (time is compressed).
@pytest.mark.parametrize("csms_args", [["--allow-unknown-chargers", "--live-evidence-seconds", "0"]])
async def test_late_stop_transaction_reconciles_force_ended_session(csms):
    async with connect(csms.ocpp, "UL9") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post(START, json=_start("UL9"))
        sid = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "TAG1", meter_start=1000)
        await cp.meter(1, tx, 5000)
        await admin.post(UNLOCK, json={"chargingStationId": "UL9", "connectorId": 1})
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["chargingTotalFee"], s["reconciled"]) == ("1.00", False)
        # The charge point reconnects and flushes its queue: the real StopTransaction arrives.
        answer = await cp.stop(tx, meter_stop=9000, reason="EVDisconnected")
        assert answer == {"idTagInfo": {"status": "Accepted"}}
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["energyWh"], s["chargingTotalFee"], s["meterSource"], s["reconciled"]) == (
            8000,
            "2.00",
            "meter_stop",
            True,
        )
        assert s["endReason"] == "ForceEnded"
        n_tx = with_db(csms.db_url, lambda db: len(list(db.scalars(select(Transaction)))))
        assert n_tx == 1
        await cp.stop(tx, meter_stop=9000)  # a duplicate changes nothing
        s2 = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert s2 == s
    assert "transaction.reconciled" in csms.log()
    assert Decimal(s["chargingTotalFee"]) == Decimal("2.00")


async def test_a_session_that_fails_to_clean_is_a_warning_and_the_others_proceed(csms):
    from sqlalchemy import text

    async with connect(csms.ocpp, "ULX") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        good, _ = plant_stuck_session(csms.db_url, "ULX", 1)
        bad, _ = plant_stuck_session(csms.db_url, "ULX", 1)
        # Corrupt one row the way a bad migration or manual edit would: its tariff is not a number.
        with_db(
            csms.db_url,
            lambda s: s.execute(text("UPDATE charging_sessions SET tariff = 'n/a' WHERE id = :id"), {"id": bad}),
        )
        r = await admin.post(UNLOCK, json={"chargingStationId": "ULX", "connectorId": 1})
        body = r.json()
        assert body["success"] is True and body["data"]["cleanedSessions"] == [good]
        assert any(w.startswith(f"Failed to clean session {bad}:") for w in body["data"]["warnings"])
    assert "unlock.cleanup_failed" in csms.log()
