"""Interop: the `ocpp` library's own asyncio ChargePoint over `websockets` against `csms serve`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import websockets
from ocpp.v16 import ChargePoint as LibChargePoint
from ocpp.v16 import call
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from csms.db.models import ChargePoint, ConnectorStatus, Station, Transaction


async def _drive(url: str) -> dict:
    async with websockets.connect(url, subprotocols=["ocpp1.6"]) as ws:
        cp = LibChargePoint("LIBCP1", ws)
        runner = asyncio.ensure_future(cp.start())
        try:
            boot = await cp.call(
                call.BootNotification(
                    charge_point_vendor="Lib", charge_point_model="Asyncio", charge_point_serial_number="SN-1"
                )
            )
            await cp.call(
                call.StatusNotification(
                    connector_id=1, error_code=ChargePointErrorCode.no_error, status=ChargePointStatus.available
                )
            )
            await cp.call(
                call.StatusNotification(
                    connector_id=1, error_code=ChargePointErrorCode.no_error, status=ChargePointStatus.preparing
                )
            )
            now = datetime.now(UTC).isoformat()
            start = await cp.call(
                call.StartTransaction(connector_id=1, id_tag="LIBTAG", meter_start=1500, timestamp=now)
            )
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=start.transaction_id,
                    meter_value=[
                        {
                            "timestamp": now,
                            "sampledValue": [
                                {"value": "4200", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
                            ],
                        }
                    ],
                )
            )
            stop = await cp.call(
                call.StopTransaction(
                    meter_stop=5000, timestamp=now, transaction_id=start.transaction_id, reason="EVDisconnected"
                )
            )
            await cp.call(
                call.StatusNotification(
                    connector_id=1, error_code=ChargePointErrorCode.no_error, status=ChargePointStatus.available
                )
            )
            hb = await cp.call(call.Heartbeat())
            return {"boot": boot, "start": start, "stop": stop, "hb": hb}
        finally:
            runner.cancel()


def test_ocpp_library_chargepoint_runs_a_transaction(csms):
    out = asyncio.run(_drive(csms.url("LIBCP1")))
    assert out["boot"].status == "Accepted"
    assert out["boot"].interval == 300
    assert out["start"].id_tag_info["status"] == "Accepted"
    assert isinstance(out["start"].transaction_id, int)
    assert out["stop"].id_tag_info["status"] == "Accepted"
    assert out["hb"].current_time

    engine = create_engine(csms.db_url)
    try:
        with Session(engine) as s:
            cp = s.get(ChargePoint, "LIBCP1")
            assert (cp.vendor, cp.model, cp.serial_number) == ("Lib", "Asyncio", "SN-1")
            assert s.get(Station, "LIBCP1").charge_point_id == "LIBCP1"
            tx = s.scalars(select(Transaction)).one()
            assert (tx.id, tx.charge_point_id, tx.connector_id, tx.id_tag) == (
                out["start"].transaction_id,
                "LIBCP1",
                1,
                "LIBTAG",
            )
            assert (tx.meter_start, tx.meter_stop, tx.stop_reason) == (1500, 5000, "EVDisconnected")
            assert tx.stop_time is not None
            assert tx.latest_meter_wh == 4200
    finally:
        engine.dispose()

    # Queued (non-durable) status writes land within moments; stop the server to flush them all.
    assert csms.stop() == 0
    engine = create_engine(csms.db_url)
    try:
        with Session(engine) as s:
            st = s.get(ConnectorStatus, ("LIBCP1", 1))
            assert st.status == "Available"
    finally:
        engine.dispose()
    assert "csms.stopped" in csms.log()
