"""Webhooks end to end: `csms serve` posts to real local HTTP receivers.

A receiver here is an ordinary threaded HTTP server in the test process. One fails its
first answers (the CSMS retries with back-off, the same delivery id each time), every
body's HMAC-SHA256 signature is checked with the receiver's secret, and a receiver that
never answers costs only its own bounded queue: OCPP calls are answered as fast as ever
and the other receiver gets every event.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import trio

from csms.core.webhooks import SIGNATURE_HEADER, verify
from tests.support.chargepoint import connect
from tests.support.receiver import Receiver, receiver
from tests.support.server import start_csms

SECRET = "webhook-secret-for-tests-0123"


@contextmanager
def serving(db_url: str, tmp_path, *receivers: tuple[Receiver, str | None], extra: tuple[str, ...] = ()):
    hooks = [a for rec, secret in receivers for a in ("--webhook", rec.url + (f",{secret}" if secret else ""))]
    proc = start_csms(db_url, tmp_path, ["--allow-unknown-chargers", *hooks, *extra])
    try:
        yield proc
    finally:
        proc.stop()


async def _until(predicate, timeout: float, what: str) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


async def test_events_are_signed_retried_and_logged(db_url, tmp_path):
    with (
        receiver(fail_first=2) as flaky,
        serving(
            db_url,
            tmp_path,
            (flaky, SECRET),
            extra=(
                "--webhook-retry-seconds",
                "0.3",
                "--maintenance-interval-seconds",
                "0.5",
                "--orphan-grace-seconds",
                "1",
                "--status-grace-seconds",
                "0",
                "--force-end-fee",
                "waive",
            ),
        ) as csms,
    ):
        async with csms.client() as admin:
            async with connect(csms.ocpp, "WH1") as cp:
                await cp.status(1, "Available")
                await cp.status(2, "Available")
                await _until(lambda: "charge_point.online" in flaky.types(), 10, "online")
                # Connector 1: a session from the app; the car leaves without a stop; an admin unlocks:
                # session.force_ended (fee waived) and connector.freed.
                start = await admin.post(
                    "/api/ChargingSession/start-charging-session",
                    json={
                        "chargingStationId": "WH1",
                        "connectorId": 1,
                        "chargeTagId": "TAG1",
                        "chargingTariff": "0.30",
                    },
                )
                assert start.status_code == 200, start.text
                session_id = start.json()["data"]["sessionId"]
                tx1 = await cp.start(1, "TAG1", meter_start=1000)
                await cp.status(1, "Charging")
                await cp.meter(1, tx1, 6000)
                await cp.status(1, "Finishing")
                # Connector 2: Available came but no StopTransaction: transaction.orphaned.
                tx2 = await cp.start(2, "TAG2", meter_start=0)
                # Busy for longer than a round of the verdict watcher (every 2 s), so one round sees it busy: the
                # orphan rule frees it a grace (1 s) after the Available, which alone may fall between two rounds.
                await trio.sleep(2.3)
                await cp.status(2, "Available")
                # Connector 2 freed by the orphan rule: the verdict watcher has compared a round in which 2 was
                # busy, and 1 (open since before 2's start, Finishing) was busy in that round too.
                await _until(
                    lambda: any(
                        b["type"] == "connector.freed" and b["data"]["connectorId"] == 2 for b in flaky.bodies()
                    ),
                    15,
                    "connector 2 freed",
                )
                await cp.status(1, "Available")
                res = await admin.post(
                    "/api/ChargingSession/unlock-connector", json={"chargingStationId": "WH1", "connectorId": 1}
                )
                assert res.status_code == 200, res.text
                await _until(
                    lambda: (
                        {"transaction.orphaned", "session.force_ended", "session.ended"} <= flaky.types()
                        and any(
                            b["type"] == "connector.freed" and b["data"]["connectorId"] == 1 for b in flaky.bodies()
                        )
                    ),
                    15,
                    "orphan, 1 freed, force-ended",
                )
            await _until(lambda: "charge_point.offline" in flaky.types(), 10, "offline")
            log = (await admin.get("/api/webhooks")).json()["data"]
            session = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]

    # Every delivery is signed with the receiver's secret, over the exact body sent.
    now = int(time.time())
    for r in flaky.requests:
        assert r["headers"]["Content-Type"] == "application/json"
        assert verify(SECRET, r["body"], r["headers"][SIGNATURE_HEADER], now=now), r["headers"]
        assert not verify("another-secret-of-some-length", r["body"], r["headers"][SIGNATURE_HEADER], now=now)
        assert not verify(SECRET, r["body"] + b" ", r["headers"][SIGNATURE_HEADER], now=now)
    # The first event failed twice (500) and was retried with back-off: the same delivery id each time.
    first_id = flaky.requests[0]["headers"]["X-Unstuck-Delivery"]
    first = [r for r in flaky.requests if r["headers"]["X-Unstuck-Delivery"] == first_id]
    assert [r["status"] for r in first] == [500, 500, 200]
    assert first[1]["at"] - first[0]["at"] >= 0.25 and first[2]["at"] - first[1]["at"] >= 0.55  # 0.3 s, then 0.6 s
    bodies = {b["type"]: b for b in flaky.bodies()}
    assert set(bodies) == {
        "charge_point.online",
        "charge_point.offline",
        "transaction.orphaned",
        "connector.freed",
        "session.force_ended",
        "session.ended",
    }
    assert bodies["charge_point.online"]["data"] == {"chargePointId": "WH1"}
    orphaned = bodies["transaction.orphaned"]["data"]
    assert (orphaned["chargePointId"], orphaned["connectorId"], orphaned["transactionId"]) == ("WH1", 2, tx2)
    ended = bodies["session.force_ended"]["data"]
    assert (ended["sessionId"], ended["transactionId"], ended["reason"], ended["actor"]) == (
        session_id,
        tx1,
        "ForceEnded",
        "tests",
    )
    assert ended["energyWh"] == 5000 and ended["fee"] == "0.00" and "waive" in ended["feeWaived"]
    # Every session end is a session.ended, whatever ended it: here the unlock's, with the same figures.
    assert {k: bodies["session.ended"]["data"][k] for k in ("sessionId", "reason", "energyWh", "fee")} == {
        "sessionId": session_id,
        "reason": "ForceEnded",
        "energyWh": 5000,
        "fee": "0.00",
    }
    freed = {b["data"]["connectorId"]: b["data"] for b in flaky.bodies() if b["type"] == "connector.freed"}
    assert set(freed) == {1, 2}  # 1 by the unlock, 2 by the orphan rule
    assert f"open_transaction:{tx1}" in freed[1]["previousReasons"]
    # The session itself records why it costs nothing.
    assert session["chargingTotalFee"] == "0.00" and session["energyWh"] == 5000 and "waive" in session["feeWaived"]
    # The delivery log says the same, without the secret.
    outcomes = [(d["eventType"], d["attempt"], d["outcome"], d["status"]) for d in log["deliveries"]]
    assert ("charge_point.online", 1, "retrying", 500) in outcomes
    assert ("charge_point.online", 3, "delivered", 200) in outcomes
    [hook] = log["receivers"]
    assert hook["signed"] and hook["url"] == flaky.url and hook["failed"] == 0 and SECRET not in json.dumps(log)


async def test_a_hanging_receiver_costs_only_its_own_queue(db_url, tmp_path):
    """It never answers: its queue fills to its bound and drops its oldest; OCPP and the other receiver go on."""
    with (
        receiver(hang=threading.Event()) as dead,
        receiver() as alive,
        serving(db_url, tmp_path, (dead, None), (alive, SECRET), extra=("--webhook-queue-size", "3")) as csms,
    ):
        latencies = []
        for n in range(8):  # 16 presence events
            async with connect(csms.ocpp, f"HANG{n}") as cp:
                started = time.monotonic()
                await cp.status(1, "Available")
                tx = await cp.start(1, "TAG1")
                await cp.stop(tx, 1500)
                latencies.append(time.monotonic() - started)
                await trio.sleep(1.2)  # the watcher looks once a second
            await trio.sleep(1.2)
        await _until(lambda: len(alive.bodies()) == 16, 10, "every event at the live receiver")
        async with csms.client() as admin:
            hooks = (await admin.get("/api/webhooks")).json()["data"]
        answered_by_dead = len(dead.requests)  # it holds every request: none answered so far
    state = {r["url"]: r for r in hooks["receivers"]}
    assert max(latencies) < 1.0, latencies  # three OCPP round trips each, unaffected by the hang
    assert [b["data"]["chargePointId"] for b in alive.bodies()] == [f"HANG{n}" for n in range(8) for _ in (0, 1)]
    stuck = state[dead.url]
    assert answered_by_dead == 0 and stuck["inFlight"] is not None  # still trying its first event
    assert ("charge_point.online", "retrying", "no answer within 10 s") in [
        (d["eventType"], d["outcome"], d["error"]) for d in hooks["deliveries"] if d["receiver"] == dead.url
    ]
    assert stuck["queued"] == 3 and stuck["dropped"] == 16 - 1 - 3 and stuck["delivered"] == 0
    assert state[alive.url]["delivered"] == 16
