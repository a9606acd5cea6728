"""What the OCPP handlers write: boots, statuses, transactions, meter samples.

Synchronous functions over a Session, one unit of work each, returning plain
values; the handlers hand them to `Database.write/submit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from .. import billing
from ..reservations import ReservationStatus
from .database import BulkWrite
from .hotpath import hot_sql_for
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
    return (update(t).where(t.c.id == bindparam("b_id"), t.c.charge_point_id == bindparam("b_cp"),
                            t.c.stop_time.is_(None))
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
    repeated: bool = False


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
    hot = hot_sql_for(s)
    cur = hot.cursor(s)
    t_start, t_now = hot.time(start_time), hot.time(now)
    open_rows = hot.run(cur, "open_on_connector", {"cp": cp_id, "conn": connector_id}).fetchall()
    for tx_id, tag, meter, started in open_rows:
        if (tag, meter, started) == (id_tag, meter_start, t_start):
            # The same StartTransaction again (its answer was lost): answer it again, change nothing.
            return StartResult(tx_id, None, (), repeated=True)
    open_ids = [row[0] for row in open_rows]
    for old_id in open_ids:
        close_transaction_estimated(s, s.get(Transaction, old_id), now=now, reason="Superseded")
    if open_ids:
        s.flush()
    tx_id = hot.insert_transaction(cur, {"cp": cp_id, "conn": connector_id, "tag": id_tag, "meter": meter_start,
                                         "start": t_start, "now": t_now})
    waiting = hot.run(cur, "waiting_session", {"cp": cp_id, "conn": connector_id, "tag": id_tag}).fetchone()
    session_id = None
    if waiting is not None:
        session_id, reservation_id = waiting
        hot.run(cur, "link_session", {"id": session_id, "tx": tx_id, "start": t_start, "meter": meter_start,
                                      "now": t_now})
        if reservation_id:
            hot.run(cur, "set_reservation", {"id": reservation_id, "status": ReservationStatus.CHARGING.value,
                                             "now": t_now})
    return StartResult(tx_id, session_id, tuple(open_ids))


def record_meter_sample(cp_id: str, tx_id: int, wh: int, at: datetime) -> BulkWrite:
    """Keep the latest Energy.Active.Import.Register of an open transaction (of this charge point only)."""
    return BulkWrite("meter", {"b_id": tx_id, "b_cp": cp_id, "b_wh": wh, "b_at": at})


@dataclass(frozen=True)
class StopResult:
    known: bool
    reconciled: bool
    session_id: str | None
    energy_wh: int | None = None
    fee: str | None = None
    connector_id: int | None = None  # of the transaction, when known


def stop_transaction(
    s: Session,
    tx_id: int,
    *,
    cp_id: str,
    meter_stop: int,
    stop_time: datetime,
    reason: str | None,
    now: datetime,
    reconcile: bool = True,
) -> StopResult:
    """Close a transaction and settle its session; a late stop of a force-ended one reconciles it.

    reconcile=False only for the test break `late_stop_ignored`.
    """
    hot = hot_sql_for(s)
    cur = hot.cursor(s)
    row = hot.run(cur, "tx_for_stop", {"id": tx_id, "cp": cp_id}).fetchone()
    if row is None:
        return StopResult(known=False, reconciled=False, session_id=None)
    meter_start, already_stopped, connector_id = row
    if already_stopped is not None:
        if not reconcile:
            return StopResult(known=True, reconciled=False, session_id=None, connector_id=connector_id)
        return _late_stop(s, tx_id, meter_stop=meter_stop, stop_time=stop_time, reason=reason, now=now)
    reason = reason or "Local"
    t_stop, t_now = hot.time(stop_time), hot.time(now)
    hot.run(cur, "close_tx", {"id": tx_id, "meter": meter_stop, "at": t_stop, "reason": reason})
    cs = hot.run(cur, "open_session_of_tx", {"tx": tx_id}).fetchone()
    if cs is None:
        return StopResult(known=True, reconciled=False, session_id=None, connector_id=connector_id)
    session_id, tariff, reservation_id = cs
    st = billing.settle(meter_start, Decimal(tariff), meter_stop=meter_stop)
    hot.run(cur, "end_session", {"id": session_id, "end": t_stop, "meter": st.end_meter_wh, "energy": st.energy_wh,
                                 "fee": str(st.fee), "source": st.source.value, "reason": reason, "now": t_now})
    if reservation_id:
        hot.run(cur, "set_reservation", {"id": reservation_id, "status": ReservationStatus.COMPLETED.value,
                                         "now": t_now})
    return StopResult(True, False, session_id, st.energy_wh, str(st.fee), connector_id)


def _late_stop(s: Session, tx_id: int, *, meter_stop: int, stop_time: datetime, reason: str | None,
               now: datetime) -> StopResult:
    """A StopTransaction for a transaction we already closed: reconcile an estimate, ignore a duplicate."""
    tx = s.get(Transaction, tx_id)
    session = _session_for(s, tx.id)
    if tx.stop_reason not in ESTIMATED_REASONS:
        return StopResult(known=True, reconciled=False, session_id=session.id if session else None,
                          connector_id=tx.connector_id)
    tx.meter_stop, tx.stop_time, tx.stop_reason = meter_stop, stop_time, reason or "Local"
    if session is None:
        return StopResult(known=True, reconciled=True, session_id=None, connector_id=tx.connector_id)
    # The real figures replace our estimate; the session keeps why it was ended early.
    st = billing.settle(tx.meter_start, session.tariff, meter_stop=meter_stop)
    session.end_time = stop_time
    session.end_meter_wh, session.energy_wh, session.fee = st.end_meter_wh, st.energy_wh, st.fee
    session.meter_source = st.source.value
    session.reconciled = True
    session.updated_at = now
    return StopResult(True, True, session.id, st.energy_wh, str(st.fee), tx.connector_id)


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
