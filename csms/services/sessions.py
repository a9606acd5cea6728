"""Starting and stopping charging sessions: checks, the session row, the remote call.

A session is created `Requested`; the charge point's answer to
RemoteStartTransaction moves it to `Accepted` or `Failed`; its own
StartTransaction links it (`Charging`) and StopTransaction ends it. Nothing
here marks the connector busy: only the charge point's own messages do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from csms import metrics
from csms.context import Context
from csms.core import linking
from csms.core.occupancy import Verdict
from csms.core.reservations import ReservationStatus
from csms.core.times import iso
from csms.db.audit import audit
from csms.db.database import rowcount
from csms.db.event_store import open_station_transactions
from csms.db.models import ChargingSession, new_id
from csms.db.occupancy_store import StationRef, find_station
from csms.db.reservation_store import move_reservation
from csms.errors import (
    ChargePointError,
    ChargePointTimeoutError,
    ChargerOfflineError,
    ConflictError,
    ConnectorBusyError,
    NotFoundError,
)
from csms.ocpp.commands import ChargePointCommands, ChargePointCommands201, commands_for
from csms.ocpp.registry import LiveChargePoint, RemoteChargePoint
from csms.services.occupancy import evaluate
from csms.services.tariffs import price_for_start
from ocppj import CallErrorReceived, CallTimeoutError, ConnectionClosedError, InvalidResponseError

__all__ = [
    "start_session",
    "stop_session",
    "get_session",
    "session_view",
    "active_station",
    "check_connector_free",
    "remote_start",
]

log = logging.getLogger("csms.sessions")


async def active_station(ctx: Context, station_id: str) -> StationRef:
    station = await ctx.db.read(lambda s: find_station(s, station_id))
    if station is None or not station.active:
        raise NotFoundError("Charging station not found or inactive")
    return station


async def check_connector_free(
    ctx: Context, station: StationRef, connector_id: int, *, action: str, exclude_reservation_id: str | None = None
) -> LiveChargePoint | RemoteChargePoint:
    """Raise ChargerOffline / ConnectorBusy (logging which predicates fired); return the live charge point."""
    cp_id = station.charge_point_id
    live = await ctx.registry.find(cp_id)
    if live is None:
        metrics.START_REFUSED.labels("ChargerOffline").inc()
        log.warning(
            "%s.refused code=ChargerOffline station=%s charge_point=%s connector=%s",
            action,
            station.id,
            cp_id,
            connector_id,
        )
        raise ChargerOfflineError()
    ev = await evaluate(ctx, cp_id, connector_id, exclude_reservation_id=exclude_reservation_id)
    if ev.decision.verdict is Verdict.OFFLINE:
        metrics.START_REFUSED.labels("ChargerOffline").inc()
        raise ChargerOfflineError()
    if ev.decision.busy:
        metrics.START_REFUSED.labels("ConnectorBusy").inc()
        log.warning(
            "%s.refused code=ConnectorBusy station=%s charge_point=%s connector=%s reasons=%s",
            action,
            station.id,
            cp_id,
            connector_id,
            ",".join(ev.decision.reasons),
        )
        raise ConnectorBusyError(list(ev.decision.reasons))
    return live


def _create_session(
    station: StationRef,
    connector_id: int,
    id_tag: str,
    tariff: Decimal,
    now: datetime,
    reservation_id: str | None = None,
):
    """The new session, superseding (ending `StartSuperseded`) the ones of the same tag still waiting
    for their start there.

    An accepted remote start does not make a connector busy (seed 001), so a second start may
    come while the first waits. With the same tag the newer one wins, explicitly, so the older
    cannot wait on to capture that tag's next transaction at its tariff (csms.core.linking says when
    it may still be revived). Sessions of other tags cannot capture each other's transactions
    (a StartTransaction links by tag); the start timeout ends whichever never starts.
    """

    def work(s: Session) -> str:
        session_id = new_id()
        pending = list(
            s.scalars(
                select(ChargingSession).where(
                    ChargingSession.charge_point_id == station.charge_point_id,
                    ChargingSession.connector_id == connector_id,
                    ChargingSession.id_tag == id_tag,
                    ChargingSession.end_time.is_(None),
                    ChargingSession.transaction_id.is_(None),
                    ChargingSession.status.in_(sorted(linking.PENDING_STATUSES)),
                )
            )
        )
        for old in pending:
            old.status, old.end_time, old.end_reason, old.updated_at = "Failed", now, linking.START_SUPERSEDED, now
            old.failure_reason = f"superseded by session {session_id} before its StartTransaction came"
            if old.reservation_id:
                move_reservation(s, old.reservation_id, ReservationStatus.FAILED, now)
            audit(
                s,
                actor="system:sessions",
                action="session.superseded",
                at=now,
                charge_point_id=station.charge_point_id,
                connector_id=connector_id,
                subject=old.id,
                by_session=session_id,
                id_tag=old.id_tag,
                tariff=str(old.tariff),
            )
            log.warning(
                "session.superseded session=%s by=%s charge_point=%s connector=%s",
                old.id,
                session_id,
                station.charge_point_id,
                connector_id,
            )
        row = ChargingSession(
            id=session_id,
            station_id=station.id,
            charge_point_id=station.charge_point_id,
            connector_id=connector_id,
            id_tag=id_tag,
            tariff=tariff,
            status="Requested",
            reservation_id=reservation_id,
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        s.flush()
        return row.id

    return work


def _mark(session_id: str, status: str, now: datetime, reason: str | None = None, *, timed_out: bool = False):
    """Move a still-`Requested` session on; a StartTransaction that came first wins.

    A start that failed only because the answer did not come in time ends `StartTimedOut`: the
    charger may have started anyway, and its StartTransaction then revives it (csms.core.linking).
    """

    def work(s: Session) -> bool:
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status == "Failed":
            values |= {
                "failure_reason": reason,
                "end_time": now,
                "end_reason": linking.START_TIMED_OUT if timed_out else "StartFailed",
            }
        res = s.execute(
            update(ChargingSession)
            .where(ChargingSession.id == session_id, ChargingSession.status == "Requested")
            .values(**values)
        )
        return rowcount(res) == 1

    return work


async def remote_start(
    ctx: Context, live: LiveChargePoint | RemoteChargePoint, session_id: str, connector_id: int, id_tag: str
) -> None:
    """Send RemoteStartTransaction; on anything but Accepted the session is failed and the error raised."""
    commands = commands_for(live)
    cp_id = live.id
    try:
        status = await commands.remote_start(connector_id, id_tag)
    except CallTimeoutError:
        await ctx.db.write(
            _mark(session_id, "Failed", ctx.clock.now(), "RemoteStartTransaction timed out", timed_out=True)
        )
        log.warning(
            "session.start_failed session=%s charge_point=%s connector=%s why=timeout", session_id, cp_id, connector_id
        )
        raise ChargePointTimeoutError(sessionId=session_id) from None
    except (CallErrorReceived, ConnectionClosedError, InvalidResponseError) as exc:
        await ctx.db.write(_mark(session_id, "Failed", ctx.clock.now(), str(exc)))
        log.warning(
            "session.start_failed session=%s charge_point=%s connector=%s why=%r",
            session_id,
            cp_id,
            connector_id,
            str(exc),
        )
        raise ChargePointError(f"Charge point could not start: {exc}", sessionId=session_id) from None
    if status != "Accepted":
        await ctx.db.write(_mark(session_id, "Failed", ctx.clock.now(), f"RemoteStartTransaction {status}"))
        log.warning(
            "session.start_rejected session=%s charge_point=%s connector=%s status=%s",
            session_id,
            cp_id,
            connector_id,
            status,
        )
        raise ConflictError("Charge point rejected the remote start", code="RemoteStartRejected", sessionId=session_id)
    await ctx.db.write(_mark(session_id, "Accepted", ctx.clock.now()))


@dataclass(frozen=True)
class Started:
    session_id: str
    charge_point_id: str
    tariff: Decimal  # what the session bills per kWh (the site's, unless an admin set another)


async def start_session(
    ctx: Context, *, station_id: str, connector_id: int, id_tag: str, tariff: Decimal | None, may_set_price: bool
) -> Started:
    """`tariff` is the price the caller asks (None: the site's); it must be the site's unless `may_set_price`."""
    station = await active_station(ctx, station_id)
    tariff = await price_for_start(ctx, station, connector_id, tariff, may_set_price=may_set_price)
    async with ctx.connector_lock(station.charge_point_id, connector_id):
        live = await check_connector_free(ctx, station, connector_id, action="start")
        session_id = await ctx.db.write(_create_session(station, connector_id, id_tag, tariff, ctx.clock.now()))
        log.info(
            "session.requested session=%s station=%s charge_point=%s connector=%s id_tag=%s",
            session_id,
            station.id,
            station.charge_point_id,
            connector_id,
            id_tag,
        )
        await remote_start(ctx, live, session_id, connector_id, id_tag)
    return Started(session_id, station.charge_point_id, tariff)


def _load(session_id: str):
    def work(s: Session) -> dict[str, Any] | None:
        row = s.get(ChargingSession, session_id)
        return None if row is None else session_view(row)

    return work


def session_view(row: ChargingSession) -> dict[str, Any]:
    return {
        "sessionId": row.id,
        "chargingStationId": row.station_id,
        "chargePointId": row.charge_point_id,
        "connectorId": row.connector_id,
        "chargeTagId": row.id_tag,
        "chargingTariff": str(row.tariff),
        "status": row.status,
        "transactionId": row.transaction_id,
        "reservationId": row.reservation_id,
        "createdAt": iso(row.created_at),
        "startTime": iso(row.start_time),
        "endTime": iso(row.end_time),
        "meterStart": row.meter_start,
        "endMeterReading": row.end_meter_wh,
        "energyWh": row.energy_wh,
        "energyKwh": None if row.energy_wh is None else str((Decimal(row.energy_wh) / 1000).quantize(Decimal("0.001"))),
        "chargingTotalFee": None if row.fee is None else str(row.fee),
        "meterSource": row.meter_source,
        "endReason": row.end_reason,
        "failureReason": row.failure_reason,
        "reconciled": bool(row.reconciled),
        "review": row.review_reason is not None,
        "reviewReason": row.review_reason,
        "feeWaived": row.fee_waived_reason,
    }


async def get_session(ctx: Context, session_id: str) -> dict[str, Any]:
    view = await ctx.db.read(_load(session_id))
    if view is None:
        raise NotFoundError("Charging session not found")
    return view


async def commands_naming_transactions(
    ctx: Context, live: LiveChargePoint | RemoteChargePoint, *, timeout: float | None = None
) -> ChargePointCommands:
    """The commands for `live`; for a 2.0.1 station with its open transactions' own ids read from the database
    first: this node's view may not have them yet (a Started stored a moment ago, or by another cluster node)."""
    commands = commands_for(live, timeout=timeout)
    if isinstance(commands, ChargePointCommands201):
        live.station_tx.update(await ctx.db.read(lambda s: open_station_transactions(s, live.id)))
    return commands


async def stop_session(ctx: Context, session_id: str) -> dict[str, Any]:
    """Ask the charge point to stop; the session ends when its StopTransaction arrives."""
    view = await get_session(ctx, session_id)
    if view["endTime"] is not None:
        raise ConflictError("Charging session already ended", code="SessionEnded")
    if view["transactionId"] is None:
        raise ConflictError("Charging session has no transaction yet", code="NoTransaction", status=view["status"])
    live = await ctx.registry.find(view["chargePointId"])
    if live is None:
        raise ChargerOfflineError()
    try:
        status = await (await commands_naming_transactions(ctx, live)).remote_stop(view["transactionId"])
    except CallTimeoutError:
        raise ChargePointTimeoutError(sessionId=session_id) from None
    except (CallErrorReceived, ConnectionClosedError, InvalidResponseError) as exc:
        raise ChargePointError(f"Charge point could not stop: {exc}") from None
    if status != "Accepted":
        raise ConflictError("Charge point rejected the remote stop", code="RemoteStopRejected")
    log.info("session.stop_requested session=%s transaction=%s", session_id, view["transactionId"])
    return {"sessionId": session_id, "transactionId": view["transactionId"], "status": "StopRequested"}
