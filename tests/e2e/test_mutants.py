"""The mutants of `tests.support.mutants`: each puts back one known bug, which mutation tests rely on.

Every mutant is shown twice: the bug happens with it, and does not with the plain `csms`. The
product itself has no switch for any of them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from csms.db.models import ChargingSession, Transaction
from tests.support.chargepoint import connect
from tests.support.db import with_db
from tests.support.mutants import MUTANTS, command
from tests.support.server import start_csms

START = "/api/ChargingSession/start-charging-session"
UNLOCK = "/api/ChargingSession/unlock-connector"
# The unlocks here stand for force-ends of sessions whose car has gone (no live evidence check).
BASE = ["--allow-unknown-chargers", "--live-evidence-seconds", "0"]


def _broken_and_healthy(name: str, *extra: str):
    return pytest.mark.parametrize(
        ("csms_args", "csms_command", "broken"),
        [
            pytest.param([*BASE, *extra], command(name), True, id="broken"),
            pytest.param([*BASE, *extra], None, False, id="healthy"),
        ],
    )


def _start(cp_id: str, tag: str = "TAG1") -> dict:
    return {"chargingStationId": cp_id, "connectorId": 1, "chargeTagId": tag, "chargingTariff": "0.25"}


def test_an_unknown_mutant_is_refused_naming_the_known_ones(sqlite_url):
    out = subprocess.run(
        [*command("unlock_keeps_transaction,nope"), "serve", "--db", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"unknown mutant nope; known: {', '.join(sorted(MUTANTS))}" in out.stderr


def test_the_product_has_no_switch_for_any_of_them(sqlite_url):
    out = subprocess.run([sys.executable, "-m", "csms", "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--quiet-transaction-seconds" in out.stdout
    assert "test-break" not in out.stdout and "test_break" not in out.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "csms", "serve", "--db", sqlite_url, "--test-break", "unlock_keeps_transaction"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "unrecognized arguments: --test-break" in refused.stderr


def test_start_up_says_which_mutants_run(sqlite_url, tmp_path):
    proc = start_csms(sqlite_url, tmp_path, BASE, command=command("registry_never_forgets", "remote_accept_marks_busy"))
    try:
        log = proc.log()
    finally:
        proc.stop()
    assert "mutant.on names=registry_never_forgets,remote_accept_marks_busy" in log


@_broken_and_healthy("unlock_keeps_transaction")
async def test_unlock_keeps_transaction(csms, broken):
    async with connect(csms.ocpp, "TB1") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        session_id = (await admin.post(START, json=_start("TB1"))).json()["data"]["sessionId"]
        await cp.status(1, "Charging")
        tx = await cp.start(1, "TAG1", meter_start=1000)
        await cp.meter(1, tx, 3000)
        await cp.status(1, "Available")  # the car left; StopTransaction is lost
        r = await admin.post(UNLOCK, json={"chargingStationId": "TB1", "connectorId": 1})
        assert r.status_code == 200 and r.json()["data"]["cleanedSessions"] == [session_id]
        session = with_db(csms.db_url, lambda s: s.get(ChargingSession, session_id))
        assert (session.end_reason, session.energy_wh) == ("ForceEnded", 2000)  # the session ends either way
        t = with_db(csms.db_url, lambda s: s.get(Transaction, tx))
        occ = (await admin.get("/api/connectors/TB1/1/occupancy")).json()["data"]
        if broken:
            assert (t.stop_time, t.stop_reason) == (None, None)
            assert occ["verdict"] == "busy" and occ["reasons"] == [f"open_transaction:{tx}"]
            r = await admin.post(START, json=_start("TB1", "TAG2"))
            assert r.status_code == 409 and r.json()["message"] == "Charging gun is already in use"
        else:
            assert t.stop_reason == "ForceEnded" and t.stop_time is not None
            assert occ["verdict"] == "free"
            assert (await admin.post(START, json=_start("TB1", "TAG2"))).status_code == 200


@_broken_and_healthy("registry_never_forgets", "--call-timeout-seconds", "2")
async def test_registry_never_forgets(csms, broken):
    async with csms.client() as admin:
        async with connect(csms.ocpp, "TB2") as cp:
            await cp.status(1, "Available")

        async def online() -> bool:
            rows = (await admin.get("/api/charge-points")).json()["data"]
            return {r["id"]: r["online"] for r in rows}["TB2"]

        # The CSMS has seen the close when a call to the charge point fails.
        with trio.fail_after(10):
            while (
                await admin.post("/api/charge-points/TB2/call", json={"action": "GetConfiguration", "payload": {}})
            ).status_code == 200:
                await trio.sleep(0.1)
            while not broken and await online():
                await trio.sleep(0.1)
        await trio.sleep(0.5)
        occ = (await admin.get("/api/connectors/TB2/1/occupancy")).json()["data"]
        if broken:
            assert await online() is True
            assert occ["verdict"] == "free" and occ["signals"]["websocketPresent"] is True
            assert "charge_point.disconnected charge_point=TB2" not in csms.log()
        else:
            assert await online() is False
            assert occ["verdict"] == "offline" and occ["reasons"] == ["websocket:absent"]
            assert "charge_point.disconnected charge_point=TB2" in csms.log()


@_broken_and_healthy("remote_accept_marks_busy")
async def test_remote_accept_marks_busy(csms, broken):
    async with connect(csms.ocpp, "TB3") as cp, csms.client() as admin:
        # No StatusNotification at all: an accepted remote start that then never starts.
        r = await admin.post(START, json=_start("TB3"))
        assert r.status_code == 200, r.text
        assert cp.answers.received[-1][0] == "RemoteStartTransaction"
        occ = (await admin.get("/api/connectors/TB3/1/occupancy")).json()["data"]
        again = await admin.post(START, json=_start("TB3", "TAG2"))
        if broken:
            assert occ["signals"]["persistedStatus"]["status"] == "Occupied"
            assert occ["verdict"] == "busy" and occ["reasons"][0].startswith("persisted_status:Occupied")
            assert again.status_code == 409 and again.json()["data"]["reasons"] == occ["reasons"]
        else:
            assert occ["signals"]["persistedStatus"] is None and occ["verdict"] == "free"
            assert again.status_code == 200


@_broken_and_healthy("late_stop_ignored")
async def test_late_stop_ignored(csms, broken):
    async with connect(csms.ocpp, "TB4") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        session_id = (await admin.post(START, json=_start("TB4"))).json()["data"]["sessionId"]
        tx = await cp.start(1, "TAG1", meter_start=1000)
        await cp.meter(1, tx, 3000)
        await admin.post(UNLOCK, json={"chargingStationId": "TB4", "connectorId": 1})  # estimate: 2000 Wh
        assert await cp.stop(tx, meter_stop=5000, reason="EVDisconnected") == {"idTagInfo": {"status": "Accepted"}}
        t = with_db(csms.db_url, lambda s: s.get(Transaction, tx))
        s = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        if broken:
            assert (t.meter_stop, t.stop_reason) == (3000, "ForceEnded")
            assert (s["energyWh"], s["reconciled"]) == (2000, False)
        else:
            assert (t.meter_stop, t.stop_reason) == (5000, "EVDisconnected")
            assert (s["energyWh"], s["reconciled"]) == (4000, True)


@_broken_and_healthy("unlock_resets_live_status")
async def test_unlock_resets_live_status(csms, broken):
    async with connect(csms.ocpp, "TB5") as cp, csms.client() as admin:
        await cp.status(1, "Charging")  # a car charges and the gun will not come out
        cp.answers.unlock = "UnlockFailed"
        r = await admin.post(UNLOCK, json={"chargingStationId": "TB5", "connectorId": 1})
        assert r.status_code == 400
        occ = (await admin.get("/api/connectors/TB5/1/occupancy")).json()["data"]
        if broken:
            assert occ["verdict"] == "free" and occ["signals"]["liveStatus"]["status"] == "Available"
        else:
            assert occ["verdict"] == "busy" and occ["reasons"] == ["live_status:Charging"]


@_broken_and_healthy("reservation_not_busy")
async def test_reservation_not_busy(csms, broken):
    async with connect(csms.ocpp, "TB6") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post("/api/Payments/Create", json=_start("TB6"))
        assert r.status_code == 200, r.text
        occ = (await admin.get("/api/connectors/TB6/1/occupancy")).json()["data"]
        second = await admin.post("/api/Payments/Create", json=_start("TB6", "TAG2"))
        assert second.status_code == 409  # the unique index still refuses a second reservation
        if broken:
            assert occ["verdict"] == "free"
            assert second.json()["data"]["reasons"] == ["active_reservation:unique_index_conflict"]
        else:
            assert occ["verdict"] == "busy" and occ["reasons"][0].startswith("active_reservation:")
            assert second.json()["data"]["reasons"] == occ["reasons"]
