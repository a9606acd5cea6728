"""Unlock a connector, force-ending the stuck sessions that keep it "in use".

The plan comes from `csms.core.unlock_plan` (the same one the dry run shows). Order matters:
with `forceActive` the charger is first asked to stop each live transaction; then the
database is made honest (sessions ended with a meter estimate, open transactions closed,
reservations cancelled, a stale busy status reset); then OCPP UnlockConnector is sent,
unless a live transaction was left open. Cleaned sessions stay cleaned whatever the charge
point answers. The answer keeps the seed's shapes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import trio
from sqlalchemy.orm import Session

from csms import metrics
from csms.context import Context
from csms.core.unlock_plan import LiveStatus, UnlockPlan, plan_unlock
from csms.db.cleanup_store import (
    ForcedEnd,
    audit,
    force_end_session,
    read_connector_rows,
    release_connector,
)
from csms.db.models import ChargePoint, Transaction
from csms.errors import NotFoundError
from csms.ocpp.commands import ChargePointCommands201, commands_for
from csms.services.sessions import active_station, commands_naming_transactions
from ocppj import CallErrorReceived, CallTimeoutError, ConnectionClosedError, InvalidResponseError

__all__ = ["UnlockResult", "unlock_connector", "plan_for", "ocpp_outcome", "success_message", "answer_body"]

log = logging.getLogger("csms.unlock")

_OK_MESSAGE = "Connector unlocked successfully"
_STOP_WAIT_S = 10.0  # after an accepted RemoteStopTransaction, how long its StopTransaction may take


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
    if status == "OngoingAuthorizedTransaction":  # OCPP 2.0.1: it keeps the cable locked while it charges
        return False, (
            "OngoingAuthorizedTransaction: the station is charging on this EVSE and keeps it locked; "
            "stop the session first, or repeat with forceActive: true (stops it, then unlocks)"
        )
    if status == "UnknownConnector":  # OCPP 2.0.1
        return False, "UnknownConnector: the station has no such EVSE or connector"
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
    kept_live: bool = False  # not unlocked: a transaction was still delivering energy (no forceActive)


def answer_body(r: UnlockResult) -> dict[str, Any]:
    """The body exactly as the seed answers (the HTTP status is the API's to choose)."""
    if not r.success:
        return {"success": False, "message": r.message, "data": {"cleanedSessions": r.cleaned, "warnings": r.warnings}}
    return {
        "success": True,
        "message": success_message(r.message, len(r.cleaned)),
        "data": {
            "chargingStationId": r.station_id,
            "connectorId": r.connector_id,
            "chargePointId": r.charge_point_id,
            "status": "Unlocked",
            "cleanedSessions": r.cleaned,
            "sessionsCleared": len(r.cleaned),
            "warnings": r.warnings,
        },
    }


async def plan_for(ctx: Context, cp_id: str, connector_id: int, *, force_active: bool) -> UnlockPlan:
    """Read the connector's rows and its live status, and plan the unlock (the dry run stops here)."""
    live = ctx.registry.live_status(cp_id, connector_id)
    status = LiveStatus(
        None if live is None else live.status,
        None if live is None else live.updated_at,
        ctx.registry.is_connected(cp_id),
    )
    rows = await ctx.db.read(lambda s: read_connector_rows(s, cp_id, connector_id))
    open_ids = [tx.id for tx in rows.transactions.values() if tx.open]
    return plan_unlock(
        rows,
        status,
        connector_id=connector_id,
        now=ctx.clock.now(),
        evidence_window=timedelta(seconds=ctx.settings.live_evidence_seconds),
        fee_policy=ctx.settings.force_end_fee,
        force_active=force_active,
        station_says=await _ask_station(ctx, cp_id, open_ids) if open_ids else None,
    )


async def _ask_station(ctx: Context, cp_id: str, transaction_ids: list[int]) -> dict[int, str]:
    """An OCPP 2.0.1 station knows whether its transactions run: GetTransactionStatus before ending one.
    Ongoing is not stuck; ended with messages still queued waits for its Ended (the real reading)."""
    live = ctx.registry.get(cp_id)
    if live is None:
        return {}
    commands = await commands_naming_transactions(ctx, live, timeout=min(5.0, ctx.settings.call_timeout_seconds))
    if not isinstance(commands, ChargePointCommands201):
        return {}
    out: dict[int, str] = {}
    for tx_id in transaction_ids:
        if tx_id not in commands.live.station_tx:
            continue
        try:
            ongoing, queued = await commands.transaction_status(tx_id)
        except (CallTimeoutError, CallErrorReceived, ConnectionClosedError, InvalidResponseError) as exc:
            log.info("unlock.transaction_status charge_point=%s transaction=%s error=%s", cp_id, tx_id, exc)
            continue
        if ongoing:
            out[tx_id] = "ongoing: the station says this transaction is still running (GetTransactionStatus)"
        elif queued:
            out[tx_id] = "ending: the station still holds queued messages for it, its Ended is on the way"
    return out


async def _stop_live_first(ctx: Context, r: UnlockResult, plan: UnlockPlan) -> None:
    """Ask the charger to stop each live transaction, and give its StopTransaction a moment to bring the real
    reading; what it does not stop in time is force-ended with the others."""
    live = await ctx.registry.find(r.charge_point_id)
    for tx_id in plan.remote_stops:
        try:
            commands = await commands_naming_transactions(ctx, live) if live is not None else None
            status = await commands.remote_stop(tx_id) if commands is not None else "Offline"
        except (CallTimeoutError, CallErrorReceived, ConnectionClosedError, InvalidResponseError) as exc:
            status = type(exc).__name__
        log.warning(
            "unlock.remote_stop charge_point=%s connector=%s transaction=%s answer=%s (forceActive)",
            r.charge_point_id,
            r.connector_id,
            tx_id,
            status,
        )
        if status != "Accepted":
            r.warnings.append(f"Transaction {tx_id} was still delivering energy; RemoteStopTransaction: {status}")
            continue

        def stopped(s: Session, t: int = tx_id) -> bool:
            tx = s.get(Transaction, t)
            assert tx is not None, t  # transactions are never deleted
            return tx.stop_time is not None

        with trio.move_on_after(_STOP_WAIT_S):
            while not await ctx.db.read(stopped):
                await trio.sleep(0.2)
        r.warnings.append(f"Transaction {tx_id} was still delivering energy; the charger was asked to stop it first")


async def _clean(ctx: Context, r: UnlockResult, plan: UnlockPlan, actor: str) -> None:
    cp_id, connector_id = r.charge_point_id, r.connector_id
    for kept in plan.kept:
        r.warnings.append(
            f"Session {kept.session_id} was left open: {kept.evidence}"
            if kept.session_id
            else f"Transaction {kept.transaction_id} was left open: {kept.evidence}"
        )
    if plan.sessions:
        metrics.STUCK_FOUND.inc(len(plan.sessions))
        log.warning(
            "unlock.found_stuck station=%s charge_point=%s connector=%s sessions=%d",
            r.station_id,
            cp_id,
            connector_id,
            len(plan.sessions),
        )
    for planned in plan.sessions:

        def end(s: Session, sid: str = planned.session_id) -> ForcedEnd | None:
            return force_end_session(
                s,
                sid,
                now=ctx.clock.now(),
                reason="ForceEnded",
                actor=actor,
                fee_policy=ctx.settings.force_end_fee,
                settle_delay=ctx.settings.estimate_settle(),
            )

        try:
            ended = await ctx.db.write(end)
        except Exception as exc:  # a per-session failure must not stop the others
            metrics.CLEANUP_FAILURES.inc()
            log.error(
                "unlock.cleanup_failed session=%s charge_point=%s connector=%s error=%r",
                planned.session_id,
                cp_id,
                connector_id,
                exc,
            )
            r.warnings.append(f"Failed to clean session {planned.session_id}: {exc}")
            continue
        if ended is None:
            continue  # ended meanwhile (its StopTransaction, a concurrent unlock): not ours to report
        metrics.STUCK_CLEANED.inc()
        log.info(
            "unlock.force_ended session=%s transaction=%s energy_wh=%s fee=%s meter_source=%s",
            planned.session_id,
            ended.transaction_id,
            ended.energy_wh,
            ended.fee,
            ended.meter_source,
        )
        r.cleaned.append(planned.session_id)
        r.warnings.append(f"Session {planned.session_id} was automatically ended")
    try:
        release = await ctx.db.write(
            lambda s: release_connector(
                s,
                cp_id,
                connector_id,
                plan,
                now=ctx.clock.now(),
                reason="ForceEnded",
                actor=actor,
                fee_policy=ctx.settings.force_end_fee,
                settle_delay=ctx.settings.estimate_settle(),
            )
        )
    except Exception as exc:
        metrics.CLEANUP_FAILURES.inc()
        log.error("unlock.release_failed charge_point=%s connector=%s error=%r", cp_id, connector_id, exc)
        r.warnings.append(f"Failed to release connector: {exc}")
        return
    for tx_id in release.closed_transactions:
        r.warnings.append(f"Transaction {tx_id} was force-ended by the CSMS (no StopTransaction had come)")
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
        status = await commands_for(live).unlock(r.connector_id)
    except CallTimeoutError:
        r.success, r.message = ocpp_outcome(None, error="Charge point did not respond in time")
    except CallErrorReceived as exc:
        # 2.0.1 has no NotSupported UnlockStatus: a station that cannot unlock remotely says it as a CallError.
        unsupported = exc.code in ("NotSupported", "NotImplemented")
        error = None if unsupported else f"Charge point could not unlock: {exc}"
        r.success, r.message = ocpp_outcome("NotSupported" if unsupported else None, error=error)
    except (ConnectionClosedError, InvalidResponseError) as exc:
        r.success, r.message = ocpp_outcome(None, error=f"Charge point could not unlock: {exc}")
    else:
        r.success, r.message = ocpp_outcome(status)


def _kept_message(plan: UnlockPlan) -> str:
    first = plan.kept[0]
    what = f"transaction {first.transaction_id}" + ("" if len(plan.kept) == 1 else f" and {len(plan.kept) - 1} more")
    return (
        f"Not unlocked: {what} is {first.evidence}; stop the session first (the charger then sends its own "
        f"reading), or repeat with forceActive: true to end it anyway"
    )


async def unlock_connector(
    ctx: Context, station_id: str, connector_id: int, *, actor: str, force_active: bool = False
) -> UnlockResult:
    station = await active_station(ctx, station_id)
    cp_id = station.charge_point_id
    if not await ctx.db.read(lambda s: s.get(ChargePoint, cp_id) is not None):
        raise NotFoundError("Charge point not found")
    r = UnlockResult(station.id, connector_id, cp_id)
    started = time.perf_counter()
    async with ctx.connector_lock(cp_id, connector_id):
        plan = await plan_for(ctx, cp_id, connector_id, force_active=force_active)
        if plan.remote_stops:
            await _stop_live_first(ctx, r, plan)
            plan = await plan_for(ctx, cp_id, connector_id, force_active=True)  # what the stops left
        await _clean(ctx, r, plan, actor)
    ctx.nudge_payment_cancels()  # reservations it cancelled before they charged: their payments go back
    metrics.CLEANUP_SECONDS.observe(time.perf_counter() - started)
    if plan.kept:
        r.kept_live, r.success, r.message = True, False, _kept_message(plan)
    else:
        await _send_unlock(ctx, r)
    metrics.UNLOCK_CALLS.labels("unlocked" if r.success else "kept_live" if r.kept_live else "failed").inc()
    if r.success:
        log.info(
            "unlock.done station=%s charge_point=%s connector=%s cleaned=%d",
            station.id,
            cp_id,
            connector_id,
            len(r.cleaned),
        )
    else:
        log.log(
            logging.WARNING if r.kept_live else logging.ERROR,
            "unlock.%s station=%s charge_point=%s connector=%s cleaned=%d reason=%r",
            "kept_live" if r.kept_live else "failed",
            station.id,
            cp_id,
            connector_id,
            len(r.cleaned),
            r.message,
        )

    def record(s: Session) -> None:
        audit(
            s,
            actor=actor,
            action="connector.unlock",
            at=ctx.clock.now(),
            charge_point_id=cp_id,
            connector_id=connector_id,
            subject=station.id,
            success=r.success,
            message=r.message,
            cleaned_sessions=r.cleaned,
            force_active=force_active,
            kept_live=[k.transaction_id for k in plan.kept],
        )

    await ctx.db.write(record)  # the audit trail is on disk before the admin gets the answer
    return r
