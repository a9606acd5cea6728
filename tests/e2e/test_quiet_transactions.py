"""The quiet-transaction rule end to end: a charger drops its StopTransaction and then says nothing.

The simulator's `drop_stop_transaction=1,available=false`: the car leaves, no StopTransaction,
no StatusNotification; asked with TriggerMessage it answers its real status (Available). The
CSMS asks once the connector has been quiet for --quiet-transaction-seconds, and the orphan
rule then closes the transaction.
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

FAST = ["--allow-unknown-chargers", "--orphan-grace-seconds", "1", "--maintenance-interval-seconds", "0.5"]


async def _fleet(nursery, csms) -> Fleet:
    spec = FleetSpec(
        seed=1,
        groups=(GroupSpec(prefix="QT", count=1, connectors=1, config={"MeterValueSampleInterval": "1"}),),
        faults=(parse_fault_option("drop_stop_transaction=1,available=false"),),
        driver=None,
        ramp=1000.0,
        call_timeout=3.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(10):
        await fleet.wait_online()
        await fleet["QT0001"].flush()
    return fleet


def _triggers(fleet: Fleet) -> list[dict]:
    return [r for r in fleet.trace.records if r["kind"] == "in" and '"TriggerMessage"' in r["frame"]]


async def _transaction(admin, tx_id: int, prefix: str = "QT") -> dict:
    rows = (await admin.get("/api/transactions", params={"chargePointIdPrefix": prefix})).json()["data"]
    return {t["transactionId"]: t for t in rows}[tx_id]


async def _verdict(admin) -> str:
    rows = (await admin.get("/api/connectors", params={"chargePointIdPrefix": "QT"})).json()["data"]
    return {(r["chargePointId"], r["connectorId"]): r["verdict"] for r in rows}[("QT0001", 1)]


async def _charge_then_leave(fleet: Fleet, admin) -> int:
    """A transaction whose meter values flow for 3 s (longer than the quiet period), then the car leaves."""
    cp = fleet["QT0001"]
    tx = await cp.start_by_tag(1, "TAG1")
    assert tx is not None and tx.transaction_id is not None
    await trio.sleep(3)
    assert _triggers(fleet) == []  # meter values every second: never quiet while charging
    assert (await _transaction(admin, tx.transaction_id))["stopTime"] is None
    await cp.unplug(1)
    assert cp.connector_truth(1).state == "unplugged"
    return tx.transaction_id


@pytest.mark.parametrize("csms_args", [[*FAST, "--quiet-transaction-seconds", "2"]])
async def test_quiet_transaction_is_probed_then_closed_as_orphaned(csms, nursery):
    fleet = await _fleet(nursery, csms)
    async with csms.client() as admin:
        tx_id = await _charge_then_leave(fleet, admin)
        with trio.fail_after(10):
            while (t := await _transaction(admin, tx_id))["stopTime"] is None:
                await trio.sleep(0.2)
        assert t["stopReason"] == "Orphaned"
        assert await _verdict(admin) == "free"
        metrics = (await admin.get("/metrics")).text
    # Asked once: its answer (Available) is fresh activity, and the transaction closes within the grace.
    assert [json.loads(r["frame"])[2:] for r in _triggers(fleet)] == [
        ["TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}]
    ]
    assert not [r for r in fleet.trace.records if r["kind"] == "out" and '"StopTransaction"' in r["frame"]]
    assert 'csms_maintenance_actions_total{kind="probe_quiet_transaction"}' in metrics
    log = csms.log()
    assert f"maintenance.probe_quiet_transaction applied charge_point=QT0001 connector=1 subject={tx_id}" in log
    assert "asking for the connector's status" in log and "maintenance.close_orphaned applied" in log
    audits = with_db(
        csms.db_url,
        lambda s: [
            (e.action, e.connector_id, e.subject, (e.details or {}).get("answer"))
            for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ],
    )
    assert ("maintenance.probe_quiet_transaction", 1, str(tx_id), "Accepted") in audits
    assert ("maintenance.close_orphaned", 1, str(tx_id), None) in audits


@pytest.mark.parametrize("csms_args", [[*FAST, "--quiet-transaction-seconds", "0"]])
async def test_quiet_transaction_rule_off_leaves_it_open(csms, nursery):
    fleet = await _fleet(nursery, csms)
    async with csms.client() as admin:
        tx_id = await _charge_then_leave(fleet, admin)
        await trio.sleep(6)  # the rule would have probed at ~2 s and the orphan rule closed at ~3.5 s
        assert (await _transaction(admin, tx_id))["stopTime"] is None
        assert await _verdict(admin) == "busy"
    assert _triggers(fleet) == []
    assert "probe_quiet_transaction" not in csms.log()


@pytest.mark.parametrize("csms_args", [[*FAST, "--quiet-transaction-seconds", "2"]])
async def test_charger_that_ignores_the_trigger_is_asked_once_per_quiet_period(csms):
    """The trigger is Accepted and nothing follows: asked again only a quiet period later, never in a loop."""
    async with connect(csms.ocpp, "QT_IGNORE") as cp, csms.client() as admin:
        await cp.status(2, "Available")
        tx = await cp.start(2, "TAG1")
        await cp.status(2, "Charging")
        dry = (await admin.post("/api/maintenance/run", json={"dryRun": True})).json()["data"]["actions"]
        assert [a for a in dry if a["kind"] == "probe_quiet_transaction"] == []  # not quiet yet

        def triggers():
            return [kw for action, kw in cp.answers.received if action == "TriggerMessage"]

        with trio.fail_after(5):
            while not triggers():
                await trio.sleep(0.05)
        assert triggers() == [{"requested_message": "StatusNotification", "connector_id": 2}]
        await trio.sleep(1.5)
        assert len(triggers()) == 1  # within the quiet period after the first probe
        dry = (await admin.post("/api/maintenance/run", json={"dryRun": True})).json()["data"]["actions"]
        assert [a for a in dry if a["kind"] == "probe_quiet_transaction"] == []
        with trio.fail_after(3):
            while len(triggers()) < 2:
                await trio.sleep(0.05)
        await trio.sleep(1.5)
        await cp.meter(2, tx, 1500)  # activity: quiet for another full period before the next probe
        await trio.sleep(1.5)  # 3 s after the second probe, 1.5 s after the meter value
        assert len(triggers()) == 2
        assert (await _transaction(admin, tx, prefix="QT_"))["stopTime"] is None  # asking closes nothing
