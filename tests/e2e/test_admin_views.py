"""Admin views the scenario harness reads: /api/connectors (detail, prefix) and /api/transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import trio

from csms.db.models import ChargingSession, ConnectorStatus, Transaction
from tests.support.chargepoint import connect
from tests.support.db import with_db

START = "/api/ChargingSession/start-charging-session"
SHORT_KEYS = {"chargePointId", "connectorId", "verdict", "reasons"}
SIGNAL_KEYS = {
    "websocketPresent",
    "liveStatus",
    "persistedStatus",
    "openTransactions",
    "activeReservations",
    "freshnessMinutes",
}
TX_KEYS = {
    "transactionId",
    "stationTransactionId",  # OCPP 2.0.1: the station's own id (null for 1.6)
    "chargePointId",
    "connectorId",
    "idTag",
    "meterStart",
    "meterStop",
    "startTime",
    "stopTime",
    "stopReason",
    "latestMeterWh",
    "latestMeterAt",
    "session",
}
SESSION_KEYS = {
    "sessionId",
    "status",
    "tariff",
    "energyWh",
    "fee",
    "meterSource",
    "reconciled",
    "endReason",
    "review",
    "reviewReason",
    "endTime",
}


async def test_connectors_detail_and_prefix(csms):
    with_db(
        csms.db_url,
        lambda s: s.add(
            ConnectorStatus(charge_point_id="CN_9", connector_id=2, status="Faulted", updated_at=datetime.now(UTC))
        ),
    )
    async with connect(csms.ocpp, "CN_1") as a, connect(csms.ocpp, "CNA1") as b, csms.client() as admin:
        await a.status(1, "Available")
        await b.status(1, "Charging")
        everything = (await admin.get("/api/connectors")).json()["data"]
        assert all(set(r) == SHORT_KEYS for r in everything)  # unchanged without the new parameters
        assert {(r["chargePointId"], r["connectorId"]) for r in everything} >= {("CN_1", 1), ("CNA1", 1), ("CN_9", 2)}

        # '_' is a LIKE wildcard: it must match only itself, in SQL and in the live registry.
        rows = (await admin.get("/api/connectors", params={"chargePointIdPrefix": "CN_"})).json()["data"]
        assert [(r["chargePointId"], r["connectorId"], r["verdict"]) for r in rows] == [
            ("CN_1", 1, "free"),
            ("CN_9", 2, "offline"),
        ]
        assert all(set(r) == SHORT_KEYS for r in rows)

        rows = (
            await admin.get(
                "/api/connectors", params={"chargePointIdPrefix": "CN", "detail": "true", "verdict": "busy"}
            )
        ).json()["data"]
        assert [(r["chargePointId"], r["connectorId"]) for r in rows] == [("CNA1", 1)]
        row = rows[0]
        assert set(row) == SHORT_KEYS | {"signals"} and set(row["signals"]) == SIGNAL_KEYS
        assert row["reasons"] == ["live_status:Charging"] and row["signals"]["liveStatus"]["status"] == "Charging"
        single = (await admin.get("/api/connectors/CNA1/1/occupancy")).json()["data"]
        assert {k: v for k, v in single.items() if k != "chargingStationId"}.keys() == row.keys()
        assert single["signals"]["liveStatus"] == row["signals"]["liveStatus"]

        assert (await admin.get("/api/connectors", params={"chargePointIdPrefix": "NOPE"})).json()["data"] == []
        assert (await admin.get("/api/connectors", params={"detail": "maybe"})).status_code == 400
    async with csms.client("user") as user:
        assert (await user.get("/api/connectors", params={"detail": "true"})).status_code == 403


def _plant_two_sessions_on_one_transaction(url: str) -> tuple[int, str]:
    """A transaction of TXC1 linked by two sessions (a retried start): the newer one is the answer."""
    now = datetime.now(UTC)

    def work(s):
        tx = Transaction(
            charge_point_id="TXC1", connector_id=1, id_tag="T", meter_start=0, start_time=now, opened_at=now
        )
        s.add(tx)
        s.flush()
        for i, (sid, status) in enumerate([("old-session", "Failed"), ("new-session", "Charging")]):
            s.add(
                ChargingSession(
                    id=sid,
                    station_id="TXC1",
                    charge_point_id="TXC1",
                    connector_id=1,
                    id_tag="T",
                    tariff=Decimal("1.5"),
                    status=status,
                    transaction_id=tx.id,
                    created_at=now + timedelta(seconds=i),
                    updated_at=now,
                )
            )
        return tx.id

    return with_db(url, work), "new-session"


async def test_transactions_list_shapes_and_filters(csms):
    async with connect(csms.ocpp, "TX_1") as cp, connect(csms.ocpp, "TXA1") as other, csms.client() as admin:
        await cp.status(1, "Available")
        r = await admin.post(
            START,
            json={"chargingStationId": "TX_1", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.333333"},
        )
        session_id = r.json()["data"]["sessionId"]
        closed = await cp.start(1, "TAG1", meter_start=1000)
        await cp.meter(1, closed, 2200)
        await cp.stop(closed, 2500)
        still_open = await cp.start(2, "TAG2", meter_start=50)
        await cp.meter(2, still_open, 75)
        elsewhere = await other.start(1, "TAG3", meter_start=0)
        planted, newest = _plant_two_sessions_on_one_transaction(csms.db_url)

        async def get(**params):
            r = await admin.get("/api/transactions", params=params)
            assert r.status_code == 200, r.text
            return r.json()["data"]

        with trio.fail_after(5):  # the meter sample is a queued write: wait until it is stored
            while (await get(open="true"))[0]["latestMeterWh"] is None:
                await trio.sleep(0.05)
        rows = await get()
        assert [t["transactionId"] for t in rows] == sorted([closed, still_open, elsewhere, planted])
        assert all(set(t) == TX_KEYS for t in rows)
        by_id = {t["transactionId"]: t for t in rows}
        t = by_id[closed]
        assert {
            k: t[k]
            for k in (
                "chargePointId",
                "connectorId",
                "idTag",
                "meterStart",
                "meterStop",
                "stopReason",
                "latestMeterWh",
                "startTime",
            )
        } == {
            "chargePointId": "TX_1",
            "connectorId": 1,
            "idTag": "TAG1",
            "meterStart": 1000,
            "meterStop": 2500,
            "stopReason": "Local",
            "latestMeterWh": 2200,
            "startTime": "2026-01-01T00:00:00Z",
        }
        assert t["stopTime"] is not None and t["latestMeterAt"].endswith("Z")
        assert t["session"] == {
            "sessionId": session_id,
            "status": "Ended",
            "tariff": "0.333333",
            "energyWh": 1500,
            "fee": "0.50",
            "meterSource": "meter_stop",
            "reconciled": False,
            "endReason": "Local",
            "review": False,
            "reviewReason": None,
            "endTime": t["session"]["endTime"],
        }
        assert t["session"]["endTime"] is not None
        t = by_id[still_open]
        assert (t["meterStop"], t["stopTime"], t["stopReason"], t["session"]) == (None, None, None, None)
        assert t["latestMeterWh"] == 75
        assert set(by_id[planted]["session"]) == SESSION_KEYS
        assert (by_id[planted]["session"]["sessionId"], by_id[planted]["session"]["fee"]) == (newest, None)
        assert by_id[planted]["session"]["tariff"] == "1.5"

        assert [t["transactionId"] for t in await get(open="true")] == sorted([still_open, elsewhere, planted])
        assert [t["transactionId"] for t in await get(open="false")] == [closed]
        assert [t["transactionId"] for t in await get(chargePointIdPrefix="TX_")] == [closed, still_open]
        assert [t["transactionId"] for t in await get(chargePointIdPrefix="TX_", open="true")] == [still_open]
        assert [t["transactionId"] for t in await get(chargePointIdPrefix="TXA")] == [elsewhere]
        assert await get(chargePointIdPrefix="NOPE") == []
        assert [t["transactionId"] for t in await get(limit=2)] == sorted([closed, still_open, elsewhere, planted])[:2]
        for bad in ({"limit": 0}, {"limit": 100_001}, {"open": "perhaps"}):
            r = await admin.get("/api/transactions", params=bad)
            assert r.status_code == 400 and r.json()["success"] is False, (bad, r.text)
        assert (await admin.get("/api/transactions", params={"limit": 100_000})).status_code == 200
    async with csms.client("user") as user:
        assert (await user.get("/api/transactions")).status_code == 403
