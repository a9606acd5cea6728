"""Unlock a connector, force-ending the stuck sessions that keep it "in use".

Order matters: first the database is made honest (sessions ended with a meter
estimate, open transactions closed, reservations cancelled, a stale busy status
reset), then OCPP UnlockConnector is sent. Cleaned sessions stay cleaned
whatever the charge point answers. The answer has the seed's exact shapes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from . import metrics
from .commands import ChargePointCommands
from .context import Context
from .db.cleanup_store import audit, find_stuck_sessions, force_end_session, release_connector
from .db.models import ChargePoint
from .errors import NotFoundError
from .ocppj import CallErrorReceived, CallTimeoutError, ConnectionClosedError, InvalidResponseError
from .registry import LiveConnector
from .sessions import active_station

__all__ = ["UnlockResult", "unlock_connector", "ocpp_outcome", "success_message", "response_body",
           "LIVE_OCCUPIED"]

log = logging.getLogger("csms.unlock")

# Live statuses in which a car is really there: the persisted status is then left alone.
LIVE_OCCUPIED = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})
_OK_MESSAGE = "Connector unlocked successfully"


def ocpp_outcome(status: str | None, *, error: str | None = None) -> tuple[bool, str]:
    """UnlockConnector's answer (or failure) -> (success, message)."""
    if error is not None:
        return False, error
    if status == "Unlocked":
        return True, _OK_MESSAGE
    if status == "UnlockFailed":
        return False, "UnlockFailed: the charge point could not unlock the connector"
    if status == "NotSupported":
        return False, "NotSupported: the charge point does not support remote unlock"
    return False, f"Unexpected UnlockConnector status {status!r}"


def success_message(message: str, cleared: int) -> str:
    return f"{message}. {cleared} stuck session(s) automatically cleared." if cleared else message


@dataclass
class UnlockResult:
    station_id: str
    connector_id: int
    charge_point_id: str
    success: bool = False
    message: str = ""
    cleaned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def response_body(r: UnlockResult) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) exactly as the seed answers."""
    if not r.success:
        return 400, {"success": False, "message": r.message,
                     "data": {"cleanedSessions": r.cleaned, "warnings": r.warnings}}
    return 200, {"success": True, "message": success_message(r.message, len(r.cleaned)), "data": {
        "chargingStationId": r.station_id, "connectorId": r.connector_id, "chargePointId": r.charge_point_id,
        "status": "Unlocked", "cleanedSessions": r.cleaned, "sessionsCleared": len(r.cleaned),
        "warnings": r.warnings}}


async def _clean(ctx: Context, r: UnlockResult, actor: str) -> None:
    cp_id, connector_id = r.charge_point_id, r.connector_id
    # TEST BREAK unlock_keeps_transaction (mutation testing only): the seed's bug, transactions stay open.
    close_tx = "unlock_keeps_transaction" not in ctx.settings.test_breaks
    stuck = await ctx.db.read(lambda s: find_stuck_sessions(s, cp_id, connector_id))
    if stuck:
        metrics.STUCK_FOUND.inc(len(stuck))
        log.warning("unlock.found_stuck station=%s charge_point=%s connector=%s sessions=%d",
                    r.station_id, cp_id, connector_id, len(stuck))
    for session_id in stuck:
        try:
            ended = await ctx.db.write(
                lambda s, sid=session_id: force_end_session(s, sid, now=ctx.clock.now(), reason="ForceEnded", actor=actor,
                                                            close_transaction=close_tx,
                                                            fee_policy=ctx.settings.force_end_fee))
        except Exception as exc:  # a per-session failure must not stop the others
            metrics.CLEANUP_FAILURES.inc()
            log.error("unlock.cleanup_failed session=%s charge_point=%s connector=%s error=%r",
                      session_id, cp_id, connector_id, exc)
            r.warnings.append(f"Failed to clean session {session_id}: {exc}")
            continue
        if ended is None:
            continue  # a concurrent unlock ended it: not ours to report
        metrics.STUCK_CLEANED.inc()
        log.info("unlock.force_ended session=%s transaction=%s energy_wh=%s fee=%s meter_source=%s",
                 session_id, ended.transaction_id, ended.energy_wh, ended.fee, ended.meter_source)
        r.cleaned.append(session_id)
        r.warnings.append(f"Session {session_id} was automatically ended")
    live = ctx.registry.live_status(cp_id, connector_id)
    occupied = live is not None and live.status in LIVE_OCCUPIED
    if "unlock_resets_live_status" in ctx.settings.test_breaks:
        # TEST BREAK unlock_resets_live_status (mutation testing only): unlock overrides what the charger reported.
        occupied = False
        live_cp = ctx.registry.get(cp_id)
        if live_cp is not None:
            live_cp.connectors[connector_id] = LiveConnector("Available", "NoError", ctx.clock.now())
    try:
        release = await ctx.db.write(lambda s: release_connector(
            s, cp_id, connector_id, now=ctx.clock.now(), reason="ForceEnded", live_occupied=occupied, actor=actor,
            close_transactions=close_tx, fee_policy=ctx.settings.force_end_fee))
    except Exception as exc:
        metrics.CLEANUP_FAILURES.inc()
        log.error("unlock.release_failed charge_point=%s connector=%s error=%r", cp_id, connector_id, exc)
        r.warnings.append(f"Failed to release connector: {exc}")
        return
    for tx_id in release.closed_transactions:
        r.warnings.append(f"Transaction {tx_id} was closed without a StopTransaction")
    for res_id in release.cancelled_reservations:
        r.warnings.append(f"Reservation {res_id} was cancelled")
    if release.status_reset_from:
        r.warnings.append(f"Stored status {release.status_reset_from} was reset to Available")


async def _send_unlock(ctx: Context, r: UnlockResult) -> None:
    live = await ctx.registry.find(r.charge_point_id)
    if live is None:
        r.success, r.message = ocpp_outcome(None, error="Charger is offline")
        return
    try:
        status = await ChargePointCommands(live.connection).unlock(r.connector_id)
    except CallTimeoutError:
        r.success, r.message = ocpp_outcome(None, error="Charge point did not respond in time")
    except (CallErrorReceived, ConnectionClosedError, InvalidResponseError) as exc:
        r.success, r.message = ocpp_outcome(None, error=f"Charge point could not unlock: {exc}")
    else:
        r.success, r.message = ocpp_outcome(status)


async def unlock_connector(ctx: Context, station_id: str, connector_id: int, *, actor: str) -> UnlockResult:
    station = await active_station(ctx, station_id)
    cp_id = station.charge_point_id
    if not await ctx.db.read(lambda s: s.get(ChargePoint, cp_id) is not None):
        raise NotFoundError("Charge point not found")
    r = UnlockResult(station.id, connector_id, cp_id)
    started = time.perf_counter()
    async with ctx.connector_lock(cp_id, connector_id):
        await _clean(ctx, r, actor)
    ctx.nudge_payment_cancels()  # reservations it cancelled before they charged: their payments go back
    metrics.CLEANUP_SECONDS.observe(time.perf_counter() - started)
    await _send_unlock(ctx, r)
    metrics.UNLOCK_CALLS.labels("unlocked" if r.success else "failed").inc()
    if r.success:
        log.info("unlock.done station=%s charge_point=%s connector=%s cleaned=%d",
                 station.id, cp_id, connector_id, len(r.cleaned))
    else:
        log.error("unlock.failed station=%s charge_point=%s connector=%s cleaned=%d reason=%r",
                  station.id, cp_id, connector_id, len(r.cleaned), r.message)

    def record(s: Session) -> None:
        audit(s, actor=actor, action="connector.unlock", at=ctx.clock.now(), charge_point_id=cp_id,
              connector_id=connector_id, subject=station.id, success=r.success, message=r.message,
              cleaned_sessions=r.cleaned)

    await ctx.db.write(record)  # the audit trail is on disk before the admin gets the answer
    return r
