"""What an unlock would do, changing nothing (`"dryRun": true`, the dashboard's preview).

The plan is `csms.core.unlock_plan`'s, read in one transaction by `csms.services.unlock.plan_for`: the very
plan the unlock then carries out if nothing changes meanwhile. This module only says it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from csms.context import Context
from csms.core.times import iso
from csms.core.unlock_plan import UnlockPlan
from csms.db.models import ChargePoint
from csms.errors import NotFoundError
from csms.services.sessions import active_station
from csms.services.unlock import plan_for

__all__ = ["UnlockPreview", "preview_unlock", "preview_body", "preview_message"]


@dataclass(frozen=True)
class UnlockPreview:
    """The plan, with the station and charge point it is for."""

    station_id: str
    charge_point_id: str
    plan: UnlockPlan


async def preview_unlock(
    ctx: Context, station_id: str, connector_id: int, *, force_active: bool = False
) -> UnlockPreview:
    station = await active_station(ctx, station_id)
    cp_id = station.charge_point_id

    def known(s: Session) -> bool:
        return s.get(ChargePoint, cp_id) is not None

    if not await ctx.db.read(known):
        raise NotFoundError("Charge point not found")
    return UnlockPreview(station.id, cp_id, await plan_for(ctx, cp_id, connector_id, force_active=force_active))


def preview_body(p: UnlockPreview) -> dict[str, Any]:
    """The REST answer's data (camelCase, money as exact decimal strings)."""
    plan = p.plan
    return {
        "dryRun": True,
        "chargingStationId": p.station_id,
        "connectorId": plan.connector_id,
        "chargePointId": p.charge_point_id,
        "chargerOnline": plan.charger_online,
        "forceActive": plan.force_active,
        "liveTransactions": [
            {
                "transactionId": x.transaction_id,
                "sessionId": x.session_id,
                "evidence": x.evidence,
                "action": (
                    "RemoteStopTransaction, then force-end"
                    if x.transaction_id in plan.remote_stops
                    else "force-end (the charger is offline)"
                    if plan.force_active
                    else "left open"
                ),
            }
            for x in plan.live
        ],
        "sessionsToEnd": [
            {
                "sessionId": x.session_id,
                "status": x.status,
                "idTag": x.id_tag,
                "transactionId": x.transaction_id,
                "createdAt": iso(x.created_at),
                "energyWh": x.energy_wh,
                "fee": x.fee,
                "meterSource": x.meter_source,
                "feeWaived": x.fee_waived,
            }
            for x in plan.sessions
        ],
        "transactionsToClose": [
            {
                "transactionId": t.transaction_id,
                "idTag": t.id_tag,
                "startTime": iso(t.start_time),
                "meterStart": t.meter_start,
                "closingMeterWh": t.closing_meter_wh,
                "meterSource": t.meter_source,
            }
            for t in plan.transactions
        ],
        "reservationsToCancel": [
            {"reservationId": r.id, "status": r.status, "createdAt": iso(r.created_at)} for r in plan.reservations
        ],
        "statusResetFrom": plan.status_reset_from,
        "thenSends": "UnlockConnector" if plan.sends_unlock else None,
    }


def preview_message(p: UnlockPreview) -> str:
    plan = p.plan
    what = (
        f"force-end {len(plan.sessions)} session(s), close {len(plan.transactions)} transaction(s), cancel "
        f"{len(plan.reservations)} reservation(s)"
        + (f", reset stored status {plan.status_reset_from} to Available" if plan.status_reset_from else "")
    )
    kept = ""
    if plan.kept:
        kept = (
            f"; {len(plan.kept)} transaction(s) still delivering energy stay open and no UnlockConnector is sent "
            f"(forceActive: true stops them first)"
        )
    elif plan.remote_stops:
        kept = (
            f"; {len(plan.remote_stops)} transaction(s) still delivering energy are stopped first "
            f"(RemoteStopTransaction)"
        )
    return f"Dry run: unlock would {what}{kept}; nothing was changed"
