"""Unlock must not end a session that is still charging, and the preview is what the unlock then does.

The reproduction: a car charges (status Charging, a meter sample a moment ago), an operator presses
Unlock on that connector, the charger would answer UnlockFailed. Seed 000 force-ended the session
anyway: billing stopped while the charger charged on. Here the transaction has live evidence: the
preview says so in words, the unlock leaves it open (409, the seed's failure shape, a warning saying
why) and sends no UnlockConnector; `forceActive` asks the charger to stop it first, then unlocks.
"""

from __future__ import annotations

import pytest
import trio
from ocpp.routing import on

from tests.support.chargepoint import Answers, connect
from tests.support.db import plant_stuck_session, with_db

UNLOCK = "/api/ChargingSession/unlock-connector"
START = "/api/ChargingSession/start-charging-session"


def _body(cp_id: str, **kw) -> dict:
    return {"chargingStationId": cp_id, "connectorId": 1, **kw}


class _Stops(Answers):
    """A charger that honours RemoteStopTransaction: Accepted, then its own StopTransaction (reason Remote)."""

    def __init__(self) -> None:
        super().__init__()
        self.unlock = "UnlockFailed"
        self.cp = None

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id):
        result = super().on_remote_stop(transaction_id)

        async def stop() -> None:
            await trio.sleep(0.2)
            await self.cp.stop(transaction_id, 6_500, reason="Remote")

        self._nursery.start_soon(stop)
        return result


async def test_a_session_still_charging_is_left_open_unless_forced(csms):
    answers = _Stops()
    async with connect(csms.ocpp, "LIVE1", answers=answers) as cp, csms.client() as admin:
        answers.cp = cp
        await cp.status(1, "Available")
        r = await admin.post(START, json={**_body("LIVE1"), "chargeTagId": "APP001", "chargingTariff": "0.25"})
        session_id = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "APP001", meter_start=1_000)
        await cp.status(1, "Charging")
        await cp.meter(1, tx, 2_200)
        await trio.sleep(0.3)  # samples are queued writes

        preview = (await admin.post(UNLOCK, json=_body("LIVE1", dryRun=True))).json()
        [live] = preview["data"]["liveTransactions"]
        assert (live["transactionId"], live["sessionId"], live["action"]) == (tx, session_id, "left open")
        assert live["evidence"].startswith("still delivering energy: last meter sample ") and live["evidence"].endswith(
            "s ago, +1.20 kWh since its start"
        ), live
        assert preview["data"]["sessionsToEnd"] == [] and preview["data"]["transactionsToClose"] == []
        assert preview["data"]["thenSends"] is None and "stay open" in preview["message"]

        r = await admin.post(UNLOCK, json=_body("LIVE1"))
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["success"] is False and body["message"].startswith(f"Not unlocked: transaction {tx} is "), body
        assert body["data"]["cleanedSessions"] == [], body
        assert [w for w in body["data"]["warnings"] if w.startswith(f"Session {session_id} was left open: still ")]
        assert [a for a, _ in cp.answers.received if a in ("UnlockConnector", "RemoteStopTransaction")] == []
        s = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        assert (s["status"], s["endTime"]) == ("Charging", None)

        forced = (await admin.post(UNLOCK, json=_body("LIVE1", dryRun=True, forceActive=True))).json()["data"]
        assert forced["liveTransactions"][0]["action"] == "RemoteStopTransaction, then force-end"
        assert [x["sessionId"] for x in forced["sessionsToEnd"]] == [session_id]
        assert forced["thenSends"] == "UnlockConnector"

        r = await admin.post(UNLOCK, json=_body("LIVE1", forceActive=True))
        body = r.json()
        # The charger stopped it itself, with its own reading; then it could not unlock (seed: 400).
        assert r.status_code == 400 and body["message"].startswith("UnlockFailed"), body
        assert body["data"]["cleanedSessions"] == [], body
        assert any("asked to stop it first" in w for w in body["data"]["warnings"]), body
        assert [a for a, _ in cp.answers.received if a in ("UnlockConnector", "RemoteStopTransaction")] == [
            "RemoteStopTransaction",
            "UnlockConnector",
        ]
        s = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
    assert (s["status"], s["endReason"], s["energyWh"], s["meterSource"]) == ("Ended", "Remote", 5_500, "meter_stop")


async def test_a_forced_unlock_force_ends_what_the_charger_does_not_stop(csms):
    async with connect(csms.ocpp, "LIVE2") as cp, csms.client() as admin:
        cp.answers.remote_stop = "Rejected"
        await cp.status(1, "Available")
        r = await admin.post(START, json={**_body("LIVE2"), "chargeTagId": "APP002", "chargingTariff": "0.25"})
        session_id = r.json()["data"]["sessionId"]
        tx = await cp.start(1, "APP002", meter_start=0)
        await cp.status(1, "Charging")
        await cp.meter(1, tx, 4_000)
        await trio.sleep(0.3)
        r = await admin.post(UNLOCK, json=_body("LIVE2", forceActive=True))
        body = r.json()
        assert r.status_code == 200 and body["data"]["cleanedSessions"] == [session_id], body
        assert (
            f"Transaction {tx} was still delivering energy; RemoteStopTransaction: Rejected" in body["data"]["warnings"]
        )
        s = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
    assert (s["endReason"], s["energyWh"], s["chargingTotalFee"]) == ("ForceEnded", 4_000, "1.00")


def _done(url: str, cp_id: str, body: dict) -> tuple[list, list, list]:
    """What the unlock did, as the database shows it (and the sessions it says it cleaned)."""
    from sqlalchemy import select

    from csms.db.models import PaymentReservation, Transaction

    def read(s):
        closed = s.scalars(
            select(Transaction.id).where(Transaction.charge_point_id == cp_id, Transaction.stop_reason == "ForceEnded")
        )
        cancelled = s.scalars(
            select(PaymentReservation.id).where(
                PaymentReservation.charge_point_id == cp_id, PaymentReservation.status == "Cancelled"
            )
        )
        return sorted(closed), sorted(cancelled)

    closed, cancelled = with_db(url, read)
    return sorted(body["data"]["cleanedSessions"]), closed, cancelled


def _planned(data: dict) -> tuple[list, list, list]:
    return (
        sorted(x["sessionId"] for x in data["sessionsToEnd"]),
        sorted(x["transactionId"] for x in data["transactionsToClose"]),
        sorted(x["reservationId"] for x in data["reservationsToCancel"]),
    )


@pytest.mark.parametrize("stuck", [1, 2, 0], ids=["seed-test-1", "seed-test-2", "seed-test-3"])
async def test_the_preview_is_what_the_unlock_then_does(csms, stuck):
    """Seed 000's three tests (one stuck session, several, none): the dry run's plan, then the unlock's deeds."""
    cp_id = f"PRV{stuck}"
    async with connect(csms.ocpp, cp_id) as cp, csms.client() as admin:
        await cp.status(1, "Available")
        planted = []
        if stuck == 1:  # a real one: an app start whose StopTransaction was lost
            r = await admin.post(START, json={**_body(cp_id), "chargeTagId": "TAGX", "chargingTariff": "0.30"})
            planted.append(r.json()["data"]["sessionId"])
            tx = await cp.start(1, "TAGX", meter_start=0)
            await cp.meter(1, tx, 3_000)
            await cp.status(1, "Available")  # the car left after its last sample
            await trio.sleep(0.3)
        else:
            planted = [plant_stuck_session(csms.db_url, cp_id, 1)[0] for _ in range(stuck)]
        preview = (await admin.post(UNLOCK, json=_body(cp_id, dryRun=True))).json()["data"]
        done = (await admin.post(UNLOCK, json=_body(cp_id))).json()
    assert _planned(preview) == _done(csms.db_url, cp_id, done), (preview, done)
    assert sorted(planted) == _planned(preview)[0]
