"""/api/transactions: OCPP transactions with their linked charging session (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from csms.api.auth import Admin
from csms.api.envelope import ok
from csms.core.times import iso
from csms.db.transaction_store import TransactionRecord, list_transactions

router = APIRouter(prefix="/api/transactions", tags=["transactions"])

MAX_LIMIT = 100_000


def transaction_view(t: TransactionRecord) -> dict[str, Any]:
    cs = t.session
    return {
        "transactionId": t.transaction_id,
        "stationTransactionId": t.station_tx_id,  # OCPP 2.0.1: the station's own id (None for 1.6)
        "chargePointId": t.charge_point_id,
        "connectorId": t.connector_id,
        "idTag": t.id_tag,
        "meterStart": t.meter_start,
        "meterStop": t.meter_stop,
        "startTime": iso(t.start_time),
        "stopTime": iso(t.stop_time),
        "stopReason": t.stop_reason,
        "latestMeterWh": t.latest_meter_wh,
        "latestMeterAt": iso(t.latest_meter_at),
        "session": None
        if cs is None
        else {
            "sessionId": cs.session_id,
            "status": cs.status,
            "tariff": str(cs.tariff),
            "energyWh": cs.energy_wh,
            "fee": None if cs.fee is None else str(cs.fee),
            "meterSource": cs.meter_source,
            "reconciled": cs.reconciled,
            "endReason": cs.end_reason,
            "review": cs.review_reason is not None,
            "reviewReason": cs.review_reason,
            "endTime": iso(cs.end_time),
        },
    }


@router.get("")
async def get_transactions(
    request: Request,
    who: Admin,
    charge_point_id_prefix: Annotated[
        str | None,
        Query(alias="chargePointIdPrefix", max_length=64, description="only charge points whose id starts with this"),
    ] = None,
    open: Annotated[bool | None, Query(description="true: only open transactions; false: only closed ones")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many, lowest ids first")] = 10_000,
):
    ctx = request.app.state.ctx
    rows = await ctx.db.read(
        lambda s: list_transactions(s, charge_point_id_prefix=charge_point_id_prefix, open=open, limit=limit)
    )
    return ok([transaction_view(t) for t in rows])
