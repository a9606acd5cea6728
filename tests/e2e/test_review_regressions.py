"""Regressions for bugs an independent review found; each test failed before its fix."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import open_websocket_url

from csms.db.models import ChargingSession, PaymentReservation, Transaction
from tests.support.chargepoint import connect
from tests.support.db import with_db


def _body(cp_id, tariff="0.25"):
    return {"chargingStationId": cp_id, "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": tariff}


async def test_deeply_nested_frame_is_a_call_error_not_a_dead_server(csms):
    async with open_websocket_url(csms.url("DEEP1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send_message("[" * 5000)
        with trio.fail_after(5):
            answer = json.loads(await ws.get_message())
        assert answer[0] == 4 and answer[2] == "FormationViolation"
        await ws.send_message('[2,"ok","Heartbeat",{}]')
        with trio.fail_after(5):
            assert json.loads(await ws.get_message())[:2] == [3, "ok"]
    async with csms.client() as http:
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize("tariff", ["1e26", "0.1234567", "0.25000000000000000000000000000000000000000001"])
async def test_unbillable_tariffs_are_refused_at_start(csms, tariff):
    async with csms.client() as admin:
        r = await admin.post("/api/ChargingSession/start-charging-session", json=_body("X", tariff))
        assert r.status_code == 400 and "chargingTariff" in r.json()["message"]


async def test_concurrent_confirms_start_once_and_the_winner_gets_the_transaction(csms):
    async with connect(csms.ocpp, "CONF1") as cp, csms.client("user") as user:
        await cp.status(1, "Available")
        rid = (await user.post("/api/Payments/Create", json=_body("CONF1"))).json()["data"]["reservationId"]
        results = []

        async def confirm():
            results.append(await user.post("/api/Payments/Confirm", json={"reservationId": rid}))

        async with trio.open_nursery() as n:
            n.start_soon(confirm)
            n.start_soon(confirm)
        assert sorted(r.status_code for r in results) == [200, 409]
        winner = next(r for r in results if r.status_code == 200).json()["data"]["sessionId"]
        assert [a for a, _ in cp.answers.received].count("RemoteStartTransaction") == 1
        tx = await cp.start(1, "TAG1", 0)
        await cp.stop(tx, 1000)
        sessions = with_db(csms.db_url, lambda s: [(c.id, c.status) for c in s.query(ChargingSession)])
        assert sessions == [(winner, "Ended")]


@pytest.mark.parametrize(
    "csms_args", [["--allow-unknown-chargers", "--payment-provider", "tests.support.failing_provider:Down"]]
)
async def test_payment_provider_failure_releases_the_connector(csms):
    async with connect(csms.ocpp, "PROV1") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post("/api/Payments/Create", json=_body("PROV1"))
        assert r.status_code == 502 and r.json()["data"]["code"] == "PaymentProviderError"
        statuses = with_db(csms.db_url, lambda s: [p.status for p in s.query(PaymentReservation)])
        assert statuses == ["Failed"]
        occ = (await admin.get("/api/connectors/PROV1/1/occupancy")).json()["data"]
        assert occ["verdict"] == "free"


async def test_meter_registers_beyond_32_bits(csms):
    async with connect(csms.ocpp, "BIG1") as cp:
        tx = await cp.start(1, "TAG1", meter_start=2_500_000_000)
        await cp.meter(1, tx, 2_500_006_400)
        await cp.stop(tx, 2_500_007_000)
    row = with_db(csms.db_url, lambda s: s.get(Transaction, tx))
    assert (row.meter_start, row.meter_stop) == (2_500_000_000, 2_500_007_000)


async def test_a_charge_point_cannot_stop_or_meter_another_ones_transaction(csms):
    async with connect(csms.ocpp, "OWNER") as owner, connect(csms.ocpp, "INTRUDER") as intruder:
        tx = await owner.start(1, "TAG1", 100)
        await intruder.meter(1, tx, 99999)
        assert await intruder.stop(tx, 99999) == {"idTagInfo": {"status": "Accepted"}}  # never fail a charge point
        await owner.heartbeat()
    async with csms.client() as admin:
        occ = (await admin.get("/api/connectors/OWNER/1/occupancy")).json()["data"]
    assert f"open_transaction:{tx}" in occ["reasons"]
    row = with_db(csms.db_url, lambda s: s.get(Transaction, tx))
    assert (row.stop_time, row.latest_meter_wh) == (None, None)
    assert "transaction.stop_unknown charge_point=INTRUDER" in csms.log()


async def test_repeated_start_transaction_gets_the_same_id_and_keeps_the_session(csms):
    async with connect(csms.ocpp, "REP1") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        sid = (await admin.post("/api/ChargingSession/start-charging-session", json=_body("REP1"))).json()["data"][
            "sessionId"
        ]
        first = await cp.start(1, "TAG1", 500)
        again = await cp.start(1, "TAG1", 500)  # its answer was lost: the charge point sends it again
        assert again == first
        await cp.stop(first, 1500)
        s = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert (s["status"], s["transactionId"], s["energyWh"]) == ("Ended", first, 1000)


async def test_out_of_range_values_are_4xx_or_tolerated(csms):
    async with connect(csms.ocpp, "ODD1") as cp, csms.client() as admin:
        tx = (
            await cp.conn.call_raw(
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "0001-01-01T00:00:00+01:00"},
            )
        )["transactionId"]
        assert isinstance(tx, int)
        r = await admin.get("/api/connectors/ODD1/99999999999999999999/occupancy")
        assert r.status_code == 400
