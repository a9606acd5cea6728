"""Issue 5 end to end: stale state heals itself at start-up and while running."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import trio
from sqlalchemy import create_engine, select

from csms.db.models import AuditEvent, ConnectorStatus, PaymentReservation, Transaction
from csms.db.schema import prepare
from tests.support.chargepoint import connect
from tests.support.db import plant_stuck_session, with_db
from tests.support.server import start_csms


def _prepare(url: str) -> None:
    engine = create_engine(url)
    prepare(engine)
    engine.dispose()


def _plant_stale_rows(url: str) -> tuple[str, int]:
    """A stale Authorized reservation, a 5 h old Faulted with no tx, a 5 h old Faulted with an open tx."""
    _prepare(url)
    old = datetime.now(UTC) - timedelta(hours=5)

    def work(s):
        s.add(
            PaymentReservation(
                id="stale-res",
                station_id="M1",
                charge_point_id="M1",
                connector_id=1,
                id_tag="T",
                tariff=Decimal("0.2"),
                status="Authorized",
                created_at=old,
                updated_at=old,
            )
        )
        s.add(ConnectorStatus(charge_point_id="M1", connector_id=2, status="Faulted", updated_at=old))
        s.add(ConnectorStatus(charge_point_id="M1", connector_id=3, status="Faulted", updated_at=old))

    with_db(url, work)
    _, tx = plant_stuck_session(url, "M1", 3)
    return "stale-res", tx


def _statuses(url):
    return with_db(
        url,
        lambda s: {
            "res": s.get(PaymentReservation, "stale-res").status,
            "c2": s.get(ConnectorStatus, ("M1", 2)).status,
            "c3": s.get(ConnectorStatus, ("M1", 3)).status,
        },
    )


async def test_startup_cancels_stale_reservation_and_releases_only_unheld_status(db_url, tmp_path):
    _plant_stale_rows(db_url)
    proc = start_csms(db_url, tmp_path, ["--allow-unknown-chargers"])
    try:
        assert _statuses(db_url) == {"res": "Cancelled", "c2": "Available", "c3": "Faulted"}
        actions = with_db(db_url, lambda s: sorted(e.action for e in s.scalars(select(AuditEvent))))
        assert actions == ["maintenance.cancel_reservation", "maintenance.release_status"]
        assert "maintenance.cancel_reservation applied" in proc.log()
    finally:
        proc.stop()


async def test_disabled_thresholds_do_nothing(db_url, tmp_path):
    _plant_stale_rows(db_url)
    proc = start_csms(db_url, tmp_path, ["--reservation-timeout-minutes", "0", "--status-release-minutes", "-1"])
    try:
        assert _statuses(db_url) == {"res": "Authorized", "c2": "Faulted", "c3": "Faulted"}
    finally:
        proc.stop()


def test_cli_dry_run_prints_actions_and_changes_nothing(db_url):
    _plant_stale_rows(db_url)
    out = subprocess.run(
        [sys.executable, "-m", "csms", "maintenance", "--db", db_url, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "cancel_reservation" in out.stdout and "stale-res" in out.stdout
    assert "release_status" in out.stdout and "M1" in out.stdout
    assert "2 action(s) would apply (dry run: nothing changed)." in out.stdout
    assert _statuses(db_url) == {"res": "Authorized", "c2": "Faulted", "c3": "Faulted"}
    out = subprocess.run(
        [sys.executable, "-m", "csms", "maintenance", "--db", db_url], capture_output=True, text=True, timeout=60
    )
    assert "2 action(s) applied." in out.stdout
    assert _statuses(db_url) == {"res": "Cancelled", "c2": "Available", "c3": "Faulted"}


async def test_admin_endpoint_dry_run(csms):
    old = datetime.now(UTC) - timedelta(hours=3)
    with_db(
        csms.db_url,
        lambda s: s.add(
            PaymentReservation(
                id="r-api",
                station_id="X",
                charge_point_id="X",
                connector_id=1,
                id_tag="T",
                tariff=Decimal("1"),
                status="PendingPayment",
                created_at=old,
                updated_at=old,
            )
        ),
    )
    async with csms.client() as admin:
        r = await admin.post("/api/maintenance/run", json={"dryRun": True})
        assert r.status_code == 200
        assert [a["subject"] for a in r.json()["data"]["actions"]] == ["r-api"]
        assert with_db(csms.db_url, lambda s: s.get(PaymentReservation, "r-api").status) == "PendingPayment"
        r = await admin.post("/api/maintenance/run", json={})
        assert r.json()["message"] == "Maintenance applied 1 action(s)"
        assert with_db(csms.db_url, lambda s: s.get(PaymentReservation, "r-api").status) == "Cancelled"
    async with csms.client("user") as user:
        assert (await user.post("/api/maintenance/run", json={})).status_code == 403


LIVENESS_ARGS = [
    "--allow-unknown-chargers",
    "--heartbeat-interval",
    "1",
    "--heartbeat-timeout-factor",
    "2",
    "--maintenance-interval-seconds",
    "0.3",
]


async def _online(admin, cp_id: str) -> bool | None:
    rows = (await admin.get("/api/charge-points")).json()["data"]
    return {r["id"]: r["online"] for r in rows}.get(cp_id)


async def _stays_online(admin, cp_id: str, seconds: float) -> None:
    """Online at once (boot answered), and at every look for `seconds`: here 2 s is one timeout (2 x 1 s)."""
    with trio.fail_after(5):
        while not await _online(admin, cp_id):
            await trio.sleep(0.1)
    with trio.move_on_after(seconds):
        while True:
            assert await _online(admin, cp_id), f"{cp_id} was dropped although its WebSocket was alive"
            await trio.sleep(0.2)


@pytest.mark.parametrize("csms_args", [LIVENESS_ARGS])
async def test_charge_point_that_falls_silent_goes_offline(csms):
    """No OCPP message, no ping, no pong (it reads nothing): offline after 2 x the heartbeat interval."""
    stream, _ = await _raw_ocpp_client(
        csms.url("HB1"), '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'
    )
    try:
        async with csms.client() as admin:
            with trio.fail_after(5):
                while not await _online(admin, "HB1"):
                    await trio.sleep(0.1)
            with trio.fail_after(10):
                while await _online(admin, "HB1"):
                    await trio.sleep(0.2)
            occ = (await admin.get("/api/connectors/HB1/1/occupancy")).json()["data"]
            assert occ["verdict"] == "offline" and occ["signals"]["liveStatus"] is None
        assert "charge_point.offline charge_point=HB1 reason='nothing received for" in csms.log()
    finally:
        await stream.aclose()


@pytest.mark.parametrize("csms_args", [LIVENESS_ARGS])
async def test_charge_point_that_only_answers_pings_stays_online(csms):
    """OCPP-J lets a charger keep its connection alive with WebSocket pings/pongs and no Heartbeat:
    the CSMS pings it when it falls silent, and each pong counts as hearing from it."""
    from wsproto.events import Ping

    stream, ws = await _raw_ocpp_client(csms.url("PONGS1"))
    pings = []

    async def answer_pings():
        while data := await stream.receive_some(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Ping):
                    pings.append(event.payload)
                    await stream.send_all(ws.send(event.response()))

    try:
        async with trio.open_nursery() as nursery, csms.client() as admin:
            nursery.start_soon(answer_pings)
            await _stays_online(admin, "PONGS1", 7)
            nursery.cancel_scope.cancel()
        assert len(pings) >= 2, "the CSMS never pinged the silent charger: nothing was tested"
        assert "charge_point.offline charge_point=PONGS1" not in csms.log()
    finally:
        await stream.aclose()


@pytest.mark.parametrize("csms_args", [LIVENESS_ARGS])
async def test_charge_point_that_only_sends_pings_stays_online(csms):
    """A charger's own WebSocket pings are frames received too (it reads nothing, so it would fail our pings)."""
    from wsproto.events import Ping

    stream, ws = await _raw_ocpp_client(csms.url("PINGS1"))

    async def send_pings():
        while True:
            await stream.send_all(ws.send(Ping(b"still here")))
            await trio.sleep(0.4)

    try:
        async with trio.open_nursery() as nursery, csms.client() as admin:
            nursery.start_soon(send_pings)
            await _stays_online(admin, "PINGS1", 7)
            nursery.cancel_scope.cancel()
        assert "charge_point.offline charge_point=PINGS1" not in csms.log()
    finally:
        await stream.aclose()


@pytest.mark.parametrize(
    "csms_args", [["--allow-unknown-chargers", "--status-grace-seconds", "0.5", "--reconnect-settle-seconds", "0"]]
)
async def test_silent_connector_gets_trigger_and_becomes_free(csms):
    """The silent-connector watch alone (the reconnect probe, which would ask at once, is off)."""
    _ = csms
    with_db(
        csms.db_url,
        lambda s: s.add(
            ConnectorStatus(charge_point_id="SIL1", connector_id=1, status="Faulted", updated_at=datetime.now(UTC))
        ),
    )
    async with connect(csms.ocpp, "SIL1", boot=False) as cp, csms.client() as admin:

        async def answer(requested, connector_id):
            assert requested == "StatusNotification"
            await cp.status(connector_id, "Available")

        cp.answers.on_trigger = answer
        await cp.boot()
        occ = (await admin.get("/api/connectors/SIL1/1/occupancy")).json()["data"]
        assert occ["verdict"] == "busy" and occ["reasons"][0].startswith("persisted_status:Faulted")
        with trio.fail_after(10):
            while (
                "TriggerMessage",
                {"requested_message": "StatusNotification", "connector_id": 1},
            ) not in cp.answers.received:
                await trio.sleep(0.1)
            while (await admin.get("/api/connectors/SIL1/1/occupancy")).json()["data"]["verdict"] != "free":
                await trio.sleep(0.1)
    assert "maintenance.trigger_status charge_point=SIL1 connector=1" in csms.log()


@pytest.mark.parametrize(
    "csms_args", [["--allow-unknown-chargers", "--orphan-grace-seconds", "1", "--maintenance-interval-seconds", "0.3"]]
)
async def test_dropped_stop_with_available_is_closed_as_orphaned(csms):
    async with connect(csms.ocpp, "ORP1") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post(
            "/api/ChargingSession/start-charging-session",
            json={"chargingStationId": "ORP1", "connectorId": 1, "chargeTagId": "T", "chargingTariff": "0.5"},
        )
        sid = r.json()["data"]["sessionId"]
        await cp.status(1, "Charging")
        tx = await cp.start(1, "T", meter_start=0)
        await cp.meter(1, tx, 3000)
        await cp.status(1, "Available")  # StopTransaction dropped
        with trio.fail_after(10):
            while with_db(csms.db_url, lambda s: s.get(Transaction, tx).stop_time) is None:
                await trio.sleep(0.2)
        t = with_db(csms.db_url, lambda s: s.get(Transaction, tx))
        assert (t.stop_reason, t.meter_stop) == ("Orphaned", 3000)
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["endReason"], s["energyWh"], s["chargingTotalFee"], s["meterSource"]) == (
            "Orphaned",
            3000,
            "1.50",
            "meter_values",
        )
        assert (await admin.get("/api/connectors/ORP1/1/occupancy")).json()["data"]["verdict"] == "free"
        await cp.stop(tx, 3500)  # the late StopTransaction reconciles
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["energyWh"], s["reconciled"]) == (3500, True)


async def _raw_ocpp_client(url: str, *frames: str):
    """A bare wsproto client: handshake, BootNotification and `frames`; from then on it does only
    what the test does with the (stream, connection) it returns (by default: nothing, no pongs)."""
    from urllib.parse import urlsplit

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    u = urlsplit(url)
    stream = await trio.open_tcp_stream(u.hostname, u.port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=u.netloc, target=u.path, subprotocols=["ocpp1.6"])))
    accepted = False
    while not accepted:
        ws.receive_data(await stream.receive_some(65536))
        accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
    for frame in ('[2,"b1","BootNotification",{"chargePointVendor":"Raw","chargePointModel":"NoPong"}]', *frames):
        await stream.send_all(ws.send(TextMessage(frame)))
    return stream, ws


@pytest.mark.parametrize(
    "csms_args",
    [
        [
            "--allow-unknown-chargers",
            "--heartbeat-interval",
            "1",
            "--heartbeat-timeout-factor",
            "1000",
            "--call-timeout-seconds",
            "1",
            "--maintenance-interval-seconds",
            "0.5",
        ]
    ],
)
async def test_charge_point_that_fails_ping_pong_goes_offline(csms):
    stream, _ = await _raw_ocpp_client(csms.url("PONG1"))
    try:
        async with csms.client() as admin:
            with trio.fail_after(30):
                while True:
                    rows = (await admin.get("/api/charge-points")).json()["data"]
                    state = {r["id"]: r["online"] for r in rows}.get("PONG1")
                    if state is False:
                        break
                    await trio.sleep(0.3)
        assert "reason='WebSocket ping got no pong'" in csms.log()
    finally:
        await stream.aclose()
