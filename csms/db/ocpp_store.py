"""What the OCPP handlers write: boots, statuses, transactions, meter samples.

Synchronous functions over a Session, one unit of work each, returning plain
values; the handlers hand them to `Database.write/submit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from .. import billing
from ..reservations import ReservationStatus
from .database import BulkWrite
from .models import (
    ChargePoint,
    ChargingSession,
    ConnectorStatus,
    PaymentReservation,
    Station,
    Transaction,
)

__all__ = [
    "BULK_STATEMENTS",
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


def touch_seen(cp_id: str, now: datetime) -> BulkWrite:
    return BulkWrite("seen", {"b_id": cp_id, "b_at": now})


def upsert_status(cp_id: str, connector_id: int, status: str, error_code: str | None, at: datetime) -> BulkWrite:
    return BulkWrite("status", {"charge_point_id": cp_id, "connector_id": connector_id, "status": status,
                                "error_code": error_code, "updated_at": at})


def _seen_statement(_dialect: str):
    t = ChargePoint.__table__
    return update(t).where(t.c.id == bindparam("b_id")).values(last_seen_at=bindparam("b_at"))


def _meter_statement(_dialect: str):
    t = Transaction.__table__
    return (update(t).where(t.c.id == bindparam("b_id"), t.c.stop_time.is_(None))
            .values(latest_meter_wh=bindparam("b_wh"), latest_meter_at=bindparam("b_at")))


def _status_statement(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"no status upsert for {dialect}")
    t = ConnectorStatus.__table__
    ins = insert(t)
    return ins.on_conflict_do_update(
        index_elements=[t.c.charge_point_id, t.c.connector_id],
        set_={"status": ins.excluded.status, "error_code": ins.excluded.error_code,
              "updated_at": ins.excluded.updated_at})


# The many small "latest value" writes, each kind one executemany per commit.
BULK_STATEMENTS = {"status": _status_statement, "meter": _meter_statement, "seen": _seen_statement}


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    session_id: str | None
    superseded: tuple[int, ...]


def _connection(s: Session):
    """The batch's connection for plain-SQL statements, after flushing earlier ORM work of the batch."""
    if s.new or s.dirty or s.deleted:
        s.flush()
    return s.connection()


_TX = Transaction.__table__
_CS = ChargingSession.__table__
_RES = PaymentReservation.__table__
_FINAL = ("Completed", "Cancelled", "Failed")

# Hot-path statements, built once (building a statement costs more than running it).
_OPEN_ON_CONNECTOR = select(_TX.c.id).where(
    _TX.c.charge_point_id == bindparam("cp"), _TX.c.connector_id == bindparam("conn"), _TX.c.stop_time.is_(None))
_INSERT_TX = insert(_TX)
_WAITING_SESSION = (
    select(_CS.c.id, _CS.c.reservation_id)
    .where(_CS.c.charge_point_id == bindparam("cp"), _CS.c.connector_id == bindparam("conn"),
           _CS.c.id_tag == bindparam("tag"), _CS.c.transaction_id.is_(None), _CS.c.end_time.is_(None),
           _CS.c.status.in_(("Requested", "Accepted")))
    .order_by(_CS.c.created_at.desc()).limit(1))
_LINK_SESSION = update(_CS).where(_CS.c.id == bindparam("b_id")).values(
    transaction_id=bindparam("b_tx"), status="Charging", start_time=bindparam("b_start"),
    meter_start=bindparam("b_meter"), updated_at=bindparam("b_now"))
_SET_RESERVATION = update(_RES).where(_RES.c.id == bindparam("b_id"), _RES.c.status.not_in(_FINAL)).values(
    status=bindparam("b_status"), updated_at=bindparam("b_now"))
_TX_FOR_STOP = select(_TX.c.meter_start, _TX.c.stop_time).where(_TX.c.id == bindparam("id"))
_CLOSE_TX = update(_TX).where(_TX.c.id == bindparam("b_id")).values(
    meter_stop=bindparam("b_meter"), stop_time=bindparam("b_at"), stop_reason=bindparam("b_reason"))
_OPEN_SESSION_OF_TX = select(_CS.c.id, _CS.c.tariff, _CS.c.reservation_id).where(
    _CS.c.transaction_id == bindparam("tx"), _CS.c.end_time.is_(None)).limit(1)
_END_SESSION = update(_CS).where(_CS.c.id == bindparam("b_id")).values(
    end_time=bindparam("b_end"), end_meter_wh=bindparam("b_meter"), energy_wh=bindparam("b_energy"),
    fee=bindparam("b_fee"), meter_source=bindparam("b_source"), end_reason=bindparam("b_reason"), status="Ended",
    updated_at=bindparam("b_now"))


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
    StopTransaction was lost. Plain SQL on the hot path; the ORM only for that rare case.
    """
    conn = _connection(s)
    open_ids = conn.execute(_OPEN_ON_CONNECTOR, {"cp": cp_id, "conn": connector_id}).scalars().all()
    for old_id in open_ids:
        close_transaction_estimated(s, s.get(Transaction, old_id), now=now, reason="Superseded")
    if open_ids:
        s.flush()
    tx_id = conn.execute(_INSERT_TX, {
        "charge_point_id": cp_id, "connector_id": connector_id, "id_tag": id_tag, "meter_start": meter_start,
        "start_time": start_time, "opened_at": now}).inserted_primary_key[0]
    waiting = conn.execute(_WAITING_SESSION, {"cp": cp_id, "conn": connector_id, "tag": id_tag}).first()
    session_id = None
    if waiting is not None:
        session_id = waiting.id
        conn.execute(_LINK_SESSION, {"b_id": session_id, "b_tx": tx_id, "b_start": start_time,
                                     "b_meter": meter_start, "b_now": now})
        if waiting.reservation_id:
            _set_reservation(conn, waiting.reservation_id, ReservationStatus.CHARGING, now)
    return StartResult(tx_id, session_id, tuple(open_ids))


def _set_reservation(conn, reservation_id: str, status: ReservationStatus, now: datetime) -> None:
    conn.execute(_SET_RESERVATION, {"b_id": reservation_id, "b_status": status.value, "b_now": now})


def record_meter_sample(tx_id: int, wh: int, at: datetime) -> BulkWrite:
    """Keep the latest Energy.Active.Import.Register of an open transaction."""
    return BulkWrite("meter", {"b_id": tx_id, "b_wh": wh, "b_at": at})


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
    conn = _connection(s)
    row = conn.execute(_TX_FOR_STOP, {"id": tx_id}).first()
    if row is None:
        return StopResult(known=False, reconciled=False, session_id=None)
    if row.stop_time is not None:
        return _late_stop(s, tx_id, meter_stop=meter_stop, stop_time=stop_time, reason=reason, now=now)
    reason = reason or "Local"
    conn.execute(_CLOSE_TX, {"b_id": tx_id, "b_meter": meter_stop, "b_at": stop_time, "b_reason": reason})
    cs = conn.execute(_OPEN_SESSION_OF_TX, {"tx": tx_id}).first()
    if cs is None:
        return StopResult(known=True, reconciled=False, session_id=None)
    st = billing.settle(row.meter_start, cs.tariff, meter_stop=meter_stop)
    conn.execute(_END_SESSION, {"b_id": cs.id, "b_end": stop_time, "b_meter": st.end_meter_wh,
                                "b_energy": st.energy_wh, "b_fee": st.fee, "b_source": st.source.value,
                                "b_reason": reason, "b_now": now})
    if cs.reservation_id:
        _set_reservation(conn, cs.reservation_id, ReservationStatus.COMPLETED, now)
    return StopResult(True, False, cs.id, st.energy_wh, str(st.fee))


def _late_stop(s: Session, tx_id: int, *, meter_stop: int, stop_time: datetime, reason: str | None,
               now: datetime) -> StopResult:
    """A StopTransaction for a transaction we already closed: reconcile an estimate, ignore a duplicate."""
    tx = s.get(Transaction, tx_id)
    session = _session_for(s, tx.id)
    if tx.stop_reason not in ESTIMATED_REASONS:
        return StopResult(known=True, reconciled=False, session_id=session.id if session else None)
    tx.meter_stop, tx.stop_time, tx.stop_reason = meter_stop, stop_time, reason or "Local"
    if session is None:
        return StopResult(known=True, reconciled=True, session_id=None)
    # The real figures replace our estimate; the session keeps why it was ended early.
    st = billing.settle(tx.meter_start, session.tariff, meter_stop=meter_stop)
    session.end_time = stop_time
    session.end_meter_wh, session.energy_wh, session.fee = st.end_meter_wh, st.energy_wh, st.fee
    session.meter_source = st.source.value
    session.reconciled = True
    session.updated_at = now
    return StopResult(True, True, session.id, st.energy_wh, str(st.fee))


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
