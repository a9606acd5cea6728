"""The contradicted-status rule end to end: a live Charging outlives its transaction.

The simulator's `silent_connector=1,ignore_trigger=false` never sends a StatusNotification
for its connector on its own, but answers a TriggerMessage with the real status. The CSMS's
trigger after connect came while a car was charging, so the live status is Charging; the
transaction then ends normally (StopTransaction) and the car leaves, and nothing says so.
Charging with no open transaction is a contradiction: --status-grace-seconds after the close
the CSMS asks again, the answer is Available, and the connector is free.
"""

from __future__ import annotations

import json

import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent
from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option
from tests.support.chargepoint import connect
from tests.support.db import with_db

FAST = ["--allow-unknown-chargers", "--maintenance-interval-seconds", "0.5"]
GRACE = 1.0
CP = "CT0001"


async def _fleet(nursery, csms) -> Fleet:
    spec = FleetSpec(
        seed=1,
        groups=(GroupSpec(prefix="CT", count=1, connectors=1, config={"MeterValueSampleInterval": "1"}),),
        faults=(parse_fault_option("silent_connector=1,ignore_trigger=false"),),
        driver=None,
        ramp=1000.0,
        call_timeout=3.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(10):
        await fleet.wait_online()
    return fleet


def _frames(fleet: Fleet, kind: str, action: str) -> list[tuple[float, dict]]:
    """(simulation time, payload) of every CALL `action` the charge point received ("in") or sent ("out")."""
    out = []
    for r in fleet.trace.records:
        if r["kind"] == kind and f'"{action}"' in r["frame"]:
            frame = json.loads(r["frame"])
            if frame[0] == 2 and frame[2] == action:
                out.append((r["t"], frame[3]))
    return out


def _triggers(fleet: Fleet) -> list[tuple[float, dict]]:
    return _frames(fleet, "in", "TriggerMessage")


def _statuses_sent(fleet: Fleet, connector: int = 1) -> list[str]:
    return [p["status"] for _t, p in _frames(fleet, "out", "StatusNotification") if p["connectorId"] == connector]


async def _occupancy(admin, cp_id: str = CP, connector: int = 1) -> dict:
    return (await admin.get(f"/api/connectors/{cp_id}/{connector}/occupancy")).json()["data"]


async def _live_status(admin) -> str | None:
    live = (await _occupancy(admin))["signals"]["liveStatus"]
    return None if live is None else live["status"]


async def _start_charging(fleet: Fleet, admin, ask=None) -> int:
    """A transaction starts; the CSMS learns Charging only from a TriggerMessage (its own, or `ask`)."""
    tx = await fleet[CP].start_by_tag(1, "TAG1")
    assert tx is not None and tx.transaction_id is not None
    if ask is not None:
        await ask()
    with trio.fail_after(5):
        while await _live_status(admin) != "Charging":
            await trio.sleep(0.1)
    assert _statuses_sent(fleet) == ["Charging"]  # only because it was asked
    return tx.transaction_id


async def _stop_and_leave(fleet: Fleet, admin, tx_id: int) -> None:
    """Longer than the grace after that Charging, the transaction stops and the car leaves, without a status."""
    await trio.sleep(GRACE + 0.5)  # the Charging is now older than the grace; the open transaction holds it
    occ = await _occupancy(admin)
    assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Charging", f"open_transaction:{tx_id}"])
    cp = fleet[CP]
    await cp.stop(1, "Local")
    await cp.unplug(1)
    await cp.flush()
    assert cp.connector_truth(1).state == "unplugged"
    rows = (await admin.get("/api/transactions", params={"chargePointIdPrefix": "CT"})).json()["data"]
    assert [(t["transactionId"], t["stopReason"]) for t in rows] == [(tx_id, "Local")]


@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", str(GRACE)]])
async def test_charging_without_a_transaction_is_asked_again_and_becomes_free(csms, nursery):
    fleet = await _fleet(nursery, csms)
    async with csms.client() as admin:
        tx_id = await _start_charging(fleet, admin)
        [(_t, connect_trigger)] = _triggers(fleet)  # the silent-connector trigger, a grace after connect
        assert connect_trigger == {"requestedMessage": "StatusNotification", "connectorId": 1}
        await _stop_and_leave(fleet, admin, tx_id)
        [(stop_at, _payload)] = _frames(fleet, "out", "StopTransaction")
        with trio.fail_after(5):
            while (await _occupancy(admin))["verdict"] != "free":
                await trio.sleep(0.1)
        assert await _live_status(admin) == "Available"
        await trio.sleep(3 * GRACE)  # answered Available: nothing contradicts, nothing more is asked
        metrics = (await admin.get("/metrics")).text
    [_, (asked_at, probe)] = _triggers(fleet)
    assert probe == {"requestedMessage": "StatusNotification", "connectorId": 1}
    assert GRACE < asked_at - stop_at < GRACE + 2  # a grace after the StopTransaction, not after the old Charging
    assert _statuses_sent(fleet) == ["Charging", "Available"]
    assert 'csms_maintenance_actions_total{kind="probe_contradicted_status"} 1.0' in metrics
    log = csms.log()
    assert f"maintenance.probe_contradicted_status applied charge_point={CP} connector=1 subject=Charging" in log
    assert "live status Charging says a transaction is ongoing but none is open" in log
    assert "since: transaction closed" in log
    audits = with_db(
        csms.db_url,
        lambda s: [
            (e.charge_point_id, e.connector_id, e.subject, (e.details or {}).get("answer"))
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "maintenance.probe_contradicted_status"))
        ],
    )
    assert audits == [(CP, 1, "Charging", "Accepted")]


@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", "0"]])
async def test_rule_off_leaves_the_connector_busy(csms, nursery):
    """0 disables the rule, and the trigger after connect with it: the test asks, as an admin could."""
    fleet = await _fleet(nursery, csms)
    async with csms.client() as admin:

        async def ask() -> None:
            r = await admin.post(
                f"/api/charge-points/{CP}/call",
                json={
                    "action": "TriggerMessage",
                    "payload": {"requestedMessage": "StatusNotification", "connectorId": 1},
                },
            )
            assert r.json()["data"] == {"status": "Accepted"}

        tx_id = await _start_charging(fleet, admin, ask)
        await _stop_and_leave(fleet, admin, tx_id)
        await trio.sleep(4 * GRACE)  # with a grace of 1 s the rule would have asked at ~1.5 s
        occ = await _occupancy(admin)
        assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Charging"])
    assert len(_triggers(fleet)) == 1  # ours
    assert "probe_contradicted_status" not in csms.log()


# The operator force-ends here: the Charging of a moment ago is no live evidence in this story.
@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", str(GRACE), "--live-evidence-seconds", "0"]])
async def test_force_ended_transaction_and_a_charger_that_ignores_the_trigger(csms):
    """Unlock force-ends the transaction while the charger says Charging: asked a grace after that close.
    The trigger is Accepted and nothing follows: asked again only a grace later, never in a loop."""
    async with connect(csms.ocpp, "CT_IGNORE") as cp, csms.client() as admin:
        asked: list[float] = []

        async def record(_requested, _connector_id):
            asked.append(trio.current_time())

        cp.answers.on_trigger = record
        await cp.status(2, "Charging")
        await cp.start(2, "TAG1")
        await trio.sleep(GRACE + 0.5)  # the Charging is older than the grace, but the transaction is open
        assert asked == []
        r = await admin.post(
            "/api/ChargingSession/unlock-connector", json={"chargingStationId": "CT_IGNORE", "connectorId": 2}
        )
        assert r.status_code == 200, r.text
        closed_at = trio.current_time()
        assert (await _occupancy(admin, "CT_IGNORE", 2))["reasons"] == ["live_status:Charging"]  # the charger says so
        with trio.fail_after(GRACE + 3):
            while not asked:
                await trio.sleep(0.02)
        # A grace after the force-end (closed_at is when its answer reached us, a little after the CSMS closed it).
        assert GRACE - 0.2 < asked[0] - closed_at < GRACE + 2
        await trio.sleep(GRACE * 0.7)
        assert len(asked) == 1  # within a grace of the first ask
        with trio.fail_after(GRACE + 3):
            while len(asked) < 2:
                await trio.sleep(0.02)
        assert asked[1] - asked[0] > GRACE - 0.2  # our own ask restarts the grace
        await cp.status(2, "Available")  # it finally says so: free, and asked no more
        await trio.sleep(2 * GRACE + 0.5)
        assert len(asked) == 2
        assert (await _occupancy(admin, "CT_IGNORE", 2))["verdict"] == "free"
    assert [kw for action, kw in cp.answers.received if action == "TriggerMessage"] == [
        {"requested_message": "StatusNotification", "connector_id": 2}
    ] * 2
    log = csms.log()
    assert "maintenance.probe_contradicted_status applied charge_point=CT_IGNORE connector=2 subject=Charging" in log
    assert "since: our last TriggerMessage" in log
