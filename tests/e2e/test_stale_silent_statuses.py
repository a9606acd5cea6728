"""The stale-silent-status rule end to end: a car left a connector that never says so itself.

The simulator's `silent_connector=1,ignore_trigger=false` never sends a StatusNotification for its
connector on its own, but answers a TriggerMessage with the real status. The CSMS's trigger after
connect came while a car was plugged in, so the live status is Preparing; the car then leaves
without charging, and nothing says so. The CSMS knows the connector never reported by itself, so
it asks again a grace after that Preparing (then after 2, 4, ... graces while the answer stays the
same): the answer is Available, and the connector is free. A connector that reports by itself is
never asked.
"""

from __future__ import annotations

import json

import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent
from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option
from tests.e2e.test_dashboard_http import _csrf, _signed_in
from tests.support.chargepoint import connect
from tests.support.db import with_db

FAST = ["--allow-unknown-chargers", "--maintenance-interval-seconds", "0.5"]
GRACE = 1.0
CP = "SS0001"
ASK = {"requestedMessage": "StatusNotification", "connectorId": 1}


async def _fleet(nursery, csms) -> Fleet:
    spec = FleetSpec(
        seed=1,
        groups=(GroupSpec(prefix="SS", count=1, connectors=1, config={"MeterValueSampleInterval": "1"}),),
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


def _status_times(fleet: Fleet, connector: int = 1) -> list[float]:
    return [t for t, p in _frames(fleet, "out", "StatusNotification") if p["connectorId"] == connector]


async def _met_before(csms) -> None:
    """The CSMS has seen the charger before: a stored status for connector 1, so its trigger after the
    next connect asks for that connector (a silent connector on a charger never seen is not asked)."""
    async with connect(csms.ocpp, CP) as cp:
        await cp.status(1, "Available")


async def _occupancy(admin, cp_id: str = CP, connector: int = 1) -> dict:
    return (await admin.get(f"/api/connectors/{cp_id}/{connector}/occupancy")).json()["data"]


async def _live_status(admin, cp_id: str = CP, connector: int = 1) -> str | None:
    live = (await _occupancy(admin, cp_id, connector))["signals"]["liveStatus"]
    return None if live is None else live["status"]


async def _wait_live(admin, status: str, n_statuses: int, fleet: Fleet, *, within: float = 5) -> None:
    """Until the CSMS's live status is `status` and the charger has sent `n_statuses` statuses in all."""
    with trio.fail_after(within):
        while await _live_status(admin) != status or len(_statuses_sent(fleet)) < n_statuses:
            await trio.sleep(0.05)


def _audits(csms) -> list[tuple]:
    return with_db(
        csms.db_url,
        lambda s: [
            (e.charge_point_id, e.connector_id, e.subject, (e.details or {}).get("answer"))
            for e in s.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "maintenance.probe_stale_silent_status")
                .order_by(AuditEvent.id)
            )
        ],
    )


@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", str(GRACE)]])
async def test_a_car_that_left_unseen_is_asked_about_and_the_connector_becomes_free(csms, nursery):
    await _met_before(csms)
    fleet = await _fleet(nursery, csms)
    cp = fleet[CP]
    await cp.plug_in(1)  # before the CSMS's trigger after connect (a grace after it)
    async with csms.client() as admin:
        await _wait_live(admin, "Preparing", 1, fleet)
        occ = await _occupancy(admin)
        assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Preparing"])
        [(_t, connect_trigger)] = _triggers(fleet)  # the silent-connector trigger: Preparing only because asked
        assert connect_trigger == ASK
        await cp.unplug(1)  # no transaction, no status: the CSMS still says Preparing
        await cp.flush()
        left_at = trio.current_time()
        assert cp.connector_truth(1).state == "unplugged"
        with trio.fail_after(GRACE + 4):
            while (await _occupancy(admin))["verdict"] != "free":
                await trio.sleep(0.1)
        assert trio.current_time() - left_at < GRACE + 2
        assert await _live_status(admin) == "Available"
        await trio.sleep(3 * GRACE)  # answered Available: nothing stale, nothing more is asked
        metrics = (await admin.get("/metrics")).text
    [_, (_asked_at, probe)] = _triggers(fleet)
    assert probe == ASK
    assert _statuses_sent(fleet) == ["Preparing", "Available"]
    assert 'csms_maintenance_actions_total{kind="probe_stale_silent_status"} 1.0' in metrics
    log = csms.log()
    assert f"maintenance.probe_stale_silent_status applied charge_point={CP} connector=1 subject=Preparing" in log
    assert (
        "connector sends no status of its own (each one answered our TriggerMessage); live Preparing "
        "with no open transaction" in log
    )
    assert f"maintenance.probe_stale_silent_status answer=Accepted charge_point={CP} connector=1" in log
    assert _audits(csms) == [(CP, 1, "Preparing", "Accepted")]


@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", str(GRACE)]])
async def test_finishing_while_the_car_stays_is_asked_with_back_off(csms, nursery):
    """A transaction ends with the cable still in: the contradicted-status rule's ask learns Finishing.
    While the car stays the answers keep saying Finishing, and the asks come 1, 2, 4 graces apart;
    the car leaves, the next ask answers Available."""
    fleet = await _fleet(nursery, csms)
    cp = fleet[CP]
    async with csms.client() as admin:
        tx = await cp.start_by_tag(1, "TAG1")
        assert tx is not None and tx.transaction_id is not None
        await _wait_live(admin, "Charging", 1, fleet)  # the trigger after connect
        await cp.stop(1, "Local")  # Finishing, said to nobody
        await cp.flush()
        await _wait_live(admin, "Finishing", 2, fleet)  # the contradicted-status rule asked
        await _wait_live(admin, "Finishing", 5, fleet, within=GRACE * (1 + 2 + 4) + 4)  # three asks of ours
        occ = await _occupancy(admin)
        assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Finishing"])
        await cp.unplug(1)
        await cp.flush()
        with trio.fail_after(GRACE * 8 + 4):
            while (await _occupancy(admin))["verdict"] != "free":
                await trio.sleep(0.1)
    assert _statuses_sent(fleet) == ["Charging", "Finishing", "Finishing", "Finishing", "Finishing", "Available"]
    times = [t for t, _p in _triggers(fleet)]
    assert [p for _t, p in _triggers(fleet)][2:] == [ASK] * 4  # after the connect and contradicted-status asks
    answers = _status_times(fleet)
    # Each of our asks waits from the previous answer: 1, 2, 4, 8 graces (plus at most a maintenance round).
    waits = [times[i + 2] - answers[i + 1] for i in range(4)]
    for wait, graces in zip(waits, (1, 2, 4, 8), strict=True):
        assert graces * GRACE - 0.05 < wait < graces * GRACE + 1.0, waits  # the charger's clock, not ours
    log = csms.log()
    assert f"maintenance.probe_contradicted_status applied charge_point={CP} connector=1 subject=Charging" in log
    for factor, unchanged in ((1, 0), (2, 1), (4, 2), (8, 3)):
        assert f"x {factor} after {unchanged} unchanged answer(s)" in log
    assert _audits(csms) == [(CP, 1, "Finishing", "Accepted")] * 4


# Without the reconnect probe (which asks every known connector once at connect): this is about the stale rule.
@pytest.mark.parametrize(
    "csms_args", [[*FAST, "--status-grace-seconds", str(GRACE), "--reconnect-settle-seconds", "0"]]
)
async def test_a_connector_that_reports_by_itself_is_not_asked(csms):
    """Connector 2 sends its own Preparing; connector 1's only status answered our trigger after
    connect. Both have a car and no transaction: only connector 1 is asked, again and again."""
    async with connect(csms.ocpp, "SS_MIXED") as cp:  # the first connection: both connectors stored
        await cp.status(1, "Available")
        await cp.status(2, "Available")
    asked: list[int | None] = []
    async with connect(csms.ocpp, "SS_MIXED", boot=False) as cp, csms.client() as admin:

        async def answer(_requested, connector_id):
            asked.append(connector_id)
            await cp.status(connector_id, "Preparing")  # a car is there (a trigger always names connector 1 here)

        cp.answers.on_trigger = answer
        await cp.boot()
        await cp.status(2, "Preparing")  # of its own accord
        with trio.fail_after(GRACE + 3):
            while await _live_status(admin, "SS_MIXED", 1) != "Preparing":
                await trio.sleep(0.05)
        assert asked == [1]  # the trigger after connect, for the connector that said nothing
        await trio.sleep(GRACE * (1 + 2) + 2.5)  # two more asks for connector 1 (the next waits 4 graces); none for 2
        for c in (1, 2):
            occ = await _occupancy(admin, "SS_MIXED", c)
            assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Preparing"])
    assert asked == [1, 1, 1]
    log = csms.log()
    assert "maintenance.probe_stale_silent_status applied charge_point=SS_MIXED connector=1" in log
    assert "maintenance.probe_stale_silent_status applied charge_point=SS_MIXED connector=2" not in log


async def _ask_as_an_admin(csms, admin, via: str) -> None:
    """TriggerMessage StatusNotification for connector 1: a REST raw call, or the dashboard's Ask for status."""
    if via == "rest":
        r = await admin.post(f"/api/charge-points/{CP}/call", json={"action": "TriggerMessage", "payload": ASK})
        assert r.json()["data"] == {"status": "Accepted"}
        return
    client = await _signed_in(csms)
    try:
        page = await client.get(f"/ui/connectors/{CP}/1")
        res = await client.post(f"/ui/connectors/{CP}/1/trigger", data={"csrf": _csrf(page.text)})
        assert res.status_code == 303, res.text
    finally:
        await client.aclose()


@pytest.mark.parametrize("via", ["rest", "dashboard"])
@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", str(GRACE)]])
async def test_an_admins_trigger_is_asked_for_too(csms, nursery, via):
    """A charger never seen before: its connector 0 reported, so the CSMS's trigger after connect asks
    for nothing. An admin's TriggerMessage (REST raw call or dashboard) learns Preparing; that answer is
    not the connector's own report either, so once the car leaves unseen the rule still asks."""
    fleet = await _fleet(nursery, csms)
    cp = fleet[CP]
    await cp.plug_in(1)
    async with csms.client() as admin:
        await trio.sleep(GRACE + 0.5)
        assert _triggers(fleet) == [] and await _live_status(admin) is None
        await _ask_as_an_admin(csms, admin, via)
        await _wait_live(admin, "Preparing", 1, fleet)
        await cp.unplug(1)
        await cp.flush()
        with trio.fail_after(GRACE + 4):
            while (await _occupancy(admin))["verdict"] != "free":
                await trio.sleep(0.1)
    assert [p for _t, p in _triggers(fleet)] == [ASK, ASK]  # the admin's, then the rule's
    assert _statuses_sent(fleet) == ["Preparing", "Available"]
    assert _audits(csms) == [(CP, 1, "Preparing", "Accepted")]


@pytest.mark.parametrize("csms_args", [[*FAST, "--status-grace-seconds", "0"]])
async def test_rule_off_leaves_the_connector_busy(csms, nursery):
    """0 disables the rule, and the trigger after connect with it: the test asks, as an admin could."""
    fleet = await _fleet(nursery, csms)
    cp = fleet[CP]
    await cp.plug_in(1)
    async with csms.client() as admin:
        r = await admin.post(f"/api/charge-points/{CP}/call", json={"action": "TriggerMessage", "payload": ASK})
        assert r.json()["data"] == {"status": "Accepted"}
        await _wait_live(admin, "Preparing", 1, fleet)
        await cp.unplug(1)
        await cp.flush()
        await trio.sleep(4 * GRACE)  # with a grace of 1 s the rule would have asked at ~1.5 s
        occ = await _occupancy(admin)
        assert (occ["verdict"], occ["reasons"]) == ("busy", ["live_status:Preparing"])
    assert len(_triggers(fleet)) == 1  # ours
    assert _statuses_sent(fleet) == ["Preparing"]
    assert "probe_stale_silent_status" not in csms.log()
