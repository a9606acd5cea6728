"""What the OCPP handlers write: boots, statuses, transactions, meter samples.

Synchronous functions over a Session, one unit of work each, returning plain
values; the handlers hand them to `Database.write/submit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import billing
from ..reservations import ReservationStatus
from .models import (
    ChargePoint,
    ChargingSession,
    ConnectorStatus,
    PaymentReservation,
    Station,
    Transaction,
)

__all__ = [
    "record_boot",
    "touch_seen",
    "upsert_status",
    "start_transaction",
    "record_meter_sample",
    "stop_transaction",
    "StartResult",
    "StopResult",
    "close_session_with_settlement",
    "close_transaction_estimated",
    "ESTIMATED_REASONS",
]


def record_boot(
    s: Session,
    cp_id: str,
    *,
    vendor: str | None,
    model: str | None,
    serial: str | None,
    firmware: str | None,
    now: datetime,
    register: bool,
) -> bool:
    """Store boot details; with `register`, a first boot creates the charge point and its station.

    Returns True when the charge point was registered just now.
    """
    cp = s.get(ChargePoint, cp_id)
    created = False
    if cp is None:
        if not register:
            return False
        cp = ChargePoint(id=cp_id, registered_at=now)
        s.add(cp)
        created = True
        if s.get(Station, cp_id) is None:
            s.add(Station(id=cp_id, charge_point_id=cp_id, active=True, created_at=now))
    cp.vendor, cp.model, cp.serial_number, cp.firmware_version = vendor, model, serial, firmware
    cp.last_boot_at = now
    cp.last_seen_at = now
    return created


def touch_seen(cp_id: str, now: datetime):
    def work(s: Session) -> None:
        s.execute(update(ChargePoint).where(ChargePoint.id == cp_id).values(last_seen_at=now))

    return work


def upsert_status(cp_id: str, connector_id: int, status: str, error_code: str | None, at: datetime):
    def work(s: Session) -> None:
        row = s.get(ConnectorStatus, (cp_id, connector_id))
        if row is None:
            s.add(ConnectorStatus(charge_point_id=cp_id, connector_id=connector_id, status=status,
                                  error_code=error_code, updated_at=at))
        else:
            row.status, row.error_code, row.updated_at = status, error_code, at

    return work


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    session_id: str | None
    superseded: tuple[int, ...]


def start_transaction(
    s: Session,
    cp_id: str,
    connector_id: int,
    id_tag: str,
    meter_start: int,
    start_time: datetime,
    now: datetime,
) -> StartResult:
    """Open a transaction and link it to the charging session waiting for it (same connector and tag).

    Older transactions still open on the same connector are closed as
    `Superseded`: a connector runs one transaction at a time, so their
    StopTransaction was lost.
    """
    superseded = []
    for old in s.scalars(
        select(Transaction).where(
            Transaction.charge_point_id == cp_id,
            Transaction.connector_id == connector_id,
            Transaction.stop_time.is_(None),
        )
    ):
        close_transaction_estimated(s, old, now=now, reason="Superseded")
        superseded.append(old.id)
    tx = Transaction(
        charge_point_id=cp_id,
        connector_id=connector_id,
        id_tag=id_tag,
        meter_start=meter_start,
        start_time=start_time,
        opened_at=now,
    )
    s.add(tx)
    s.flush()
    session = s.scalars(
        select(ChargingSession)
        .where(
            ChargingSession.charge_point_id == cp_id,
            ChargingSession.connector_id == connector_id,
            ChargingSession.id_tag == id_tag,
            ChargingSession.transaction_id.is_(None),
            ChargingSession.end_time.is_(None),
            ChargingSession.status.in_(("Requested", "Accepted")),
        )
        .order_by(ChargingSession.created_at.desc())
        .limit(1)
    ).first()
    session_id = None
    if session is not None:
        session.transaction_id = tx.id
        session.status = "Charging"
        session.start_time = start_time
        session.meter_start = meter_start
        session.updated_at = now
        session_id = session.id
        if session.reservation_id:
            _move_reservation(s, session.reservation_id, ReservationStatus.CHARGING, now)
    return StartResult(tx.id, session_id, tuple(superseded))


def record_meter_sample(tx_id: int, wh: int, at: datetime):
    """Keep the latest Energy.Active.Import.Register of an open transaction."""

    def work(s: Session) -> None:
        s.execute(
            update(Transaction)
            .where(Transaction.id == tx_id, Transaction.stop_time.is_(None))
            .values(latest_meter_wh=wh, latest_meter_at=at)
        )

    return work


@dataclass(frozen=True)
class StopResult:
    known: bool
    reconciled: bool
    session_id: str | None
    energy_wh: int | None = None
    fee: str | None = None


def stop_transaction(
    s: Session,
    tx_id: int,
    *,
    meter_stop: int,
    stop_time: datetime,
    reason: str | None,
    now: datetime,
) -> StopResult:
    """Close a transaction and settle its session; a late stop of a force-ended one reconciles it."""
    tx = s.get(Transaction, tx_id)
    if tx is None:
        return StopResult(known=False, reconciled=False, session_id=None)
    late = tx.stop_time is not None
    if late and tx.meter_stop is not None and tx.stop_reason not in ESTIMATED_REASONS:
        # A duplicate of a StopTransaction we already have: nothing to change.
        session = _session_for(s, tx.id)
        return StopResult(known=True, reconciled=False, session_id=session.id if session else None)
    tx.meter_stop = meter_stop
    tx.stop_time = stop_time
    tx.stop_reason = reason or "Local"
    session = _session_for(s, tx.id)
    if session is None:
        return StopResult(known=True, reconciled=late, session_id=None)
    settlement = billing.settle(tx.meter_start, session.tariff, meter_stop=meter_stop)
    if late:
        # The real figures replace our estimate; the session keeps why it was ended early.
        session.end_time = stop_time
        session.end_meter_wh, session.energy_wh, session.fee = settlement.end_meter_wh, settlement.energy_wh, settlement.fee
        session.meter_source = settlement.source.value
        session.reconciled = True
        session.updated_at = now
    else:
        close_session_with_settlement(s, session, settlement, end_time=stop_time, reason=tx.stop_reason, now=now)
    return StopResult(True, late, session.id, settlement.energy_wh, str(settlement.fee))


# Stop reasons we write ourselves when a StopTransaction never came.
ESTIMATED_REASONS = frozenset({"ForceEnded", "Orphaned", "Superseded", "IdleTimeout"})


def close_transaction_estimated(s: Session, tx: Transaction, *, now: datetime, reason: str) -> billing.Settlement | None:
    """Close an open transaction whose StopTransaction never came, with the best meter estimate.

    Ends its charging session too; returns the session's settlement, if any.
    """
    assert reason in ESTIMATED_REASONS, reason
    end_wh, _source = billing.choose_end_meter(tx.meter_start, latest_sample_wh=tx.latest_meter_wh, meter_stop=tx.meter_stop)
    tx.meter_stop = end_wh
    tx.stop_time = now
    tx.stop_reason = reason
    session = _session_for(s, tx.id)
    if session is None or session.end_time is not None:
        return None
    settlement = billing.settle(tx.meter_start, session.tariff, latest_sample_wh=tx.latest_meter_wh)
    close_session_with_settlement(s, session, settlement, end_time=now, reason=reason, now=now)
    return settlement


def close_session_with_settlement(
    s: Session,
    session: ChargingSession,
    settlement: billing.Settlement,
    *,
    end_time: datetime,
    reason: str,
    now: datetime,
) -> None:
    session.end_time = end_time
    session.end_meter_wh = settlement.end_meter_wh
    session.energy_wh = settlement.energy_wh
    session.fee = settlement.fee
    session.meter_source = settlement.source.value
    session.end_reason = reason
    session.status = "Ended"
    session.updated_at = now
    if session.reservation_id:
        final = ReservationStatus.CANCELLED if reason in ESTIMATED_REASONS else ReservationStatus.COMPLETED
        _move_reservation(s, session.reservation_id, final, now)


def _session_for(s: Session, tx_id: int) -> ChargingSession | None:
    return s.scalars(select(ChargingSession).where(ChargingSession.transaction_id == tx_id).limit(1)).first()


def _move_reservation(s: Session, reservation_id: str, status: ReservationStatus, now: datetime) -> None:
    res = s.get(PaymentReservation, reservation_id)
    if res is None or res.status in ("Completed", "Cancelled", "Failed"):
        return
    res.status = status.value
    res.updated_at = now
