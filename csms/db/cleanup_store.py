"""Force-ending stuck sessions and releasing a connector: the units of work behind unlock and maintenance.

What an unlock does is planned by `csms.core.unlock_plan` from `read_connector_rows`; these apply it.

Each function is one atomic unit. Every update is conditional on the row
still being open, so two cleanups racing on one connector cannot end a session
twice or bill it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from csms.core.reservations import TERMINAL, ReservationStatus
from csms.core.times import as_utc
from csms.core.unlock_plan import (
    ConnectorRows,
    ReservationRow,
    SessionRow,
    TransactionRow,
    UnlockPlan,
    session_end_settlement,
)
from csms.db.audit import audit
from csms.db.models import ChargingSession, ConnectorStatus, PaymentReservation, Transaction
from csms.db.ocpp_store import close_transaction_estimated
from csms.db.reservation_store import move_reservation
from csms.db.session_end import end_session

__all__ = ["ForcedEnd", "ConnectorRelease", "read_connector_rows", "force_end_session", "release_connector", "audit"]

_TERMINAL = tuple(s.value for s in TERMINAL)


@dataclass(frozen=True)
class ForcedEnd:
    session_id: str
    transaction_id: int | None
    end_meter_wh: int
    energy_wh: int
    fee: str
    meter_source: str


@dataclass(frozen=True)
class ConnectorRelease:
    closed_transactions: tuple[int, ...]
    cancelled_reservations: tuple[str, ...]
    status_reset_from: str | None


def read_connector_rows(s: Session, cp_id: str, connector_id: int) -> ConnectorRows:
    """The rows an unlock of this connector plans from, as plain data (`csms.core.unlock_plan`)."""
    open_txs = list(
        s.scalars(
            select(Transaction).where(
                Transaction.charge_point_id == cp_id,
                Transaction.connector_id == connector_id,
                Transaction.stop_time.is_(None),
            )
        )
    )
    cs = ChargingSession
    # Columns, not ORM rows: one session with a corrupt tariff must not stop the plan for the others.
    sessions = [
        SessionRow(r.id, r.status, r.id_tag, r.transaction_id, r.created_at, _decimal(r.tariff), r.meter_start)
        for r in s.execute(
            select(
                cs.id,
                cs.status,
                cs.id_tag,
                cs.transaction_id,
                cs.created_at,
                type_coerce(cs.tariff, String).label("tariff"),
                cs.meter_start,
            )
            .where(cs.charge_point_id == cp_id, cs.connector_id == connector_id, cs.end_time.is_(None))
            .order_by(cs.created_at, cs.id)
        )
    ]
    txs = {t.id: _tx_row(t) for t in open_txs}
    for row in sessions:
        if row.transaction_id is not None and row.transaction_id not in txs:
            tx = s.get(Transaction, row.transaction_id)
            if tx is not None:
                txs[tx.id] = _tx_row(tx)
    reservations = tuple(
        ReservationRow(r.id, r.status, r.created_at, r.session_id)
        for r in s.scalars(
            select(PaymentReservation)
            .where(
                PaymentReservation.charge_point_id == cp_id,
                PaymentReservation.connector_id == connector_id,
                PaymentReservation.status.not_in(_TERMINAL),
            )
            .order_by(PaymentReservation.created_at)
        )
    )
    status = s.get(ConnectorStatus, (cp_id, connector_id))
    return ConnectorRows(tuple(sessions), txs, reservations, None if status is None else status.status)


def _decimal(text: str | None) -> Decimal | None:
    try:
        return None if text is None else Decimal(text)
    except InvalidOperation:
        return None


def _tx_row(t: Transaction) -> TransactionRow:
    return TransactionRow(
        t.id,
        t.id_tag,
        t.start_time,
        t.meter_start,
        t.meter_stop,
        t.stop_time,
        t.latest_meter_wh,
        None if t.meter_seen_at is None else as_utc(t.meter_seen_at),
    )


def _session_row(cs: ChargingSession) -> SessionRow:
    return SessionRow(cs.id, cs.status, cs.id_tag, cs.transaction_id, cs.created_at, cs.tariff, cs.meter_start)


def force_end_session(
    s: Session,
    session_id: str,
    *,
    now: datetime,
    reason: str,
    actor: str,
    fee_policy: str = "charge",
    settle_delay: timedelta = timedelta(0),
) -> ForcedEnd | None:
    """End one session with the best meter estimate and close its transaction; None if already ended.

    The settlement is `unlock_plan.session_end_settlement`'s, the one the dry run showed.
    """
    session = s.get(ChargingSession, session_id)
    if session is None or session.end_time is not None:
        return None
    tx = None if session.transaction_id is None else s.get(Transaction, session.transaction_id)
    settlement, waived = session_end_settlement(
        _session_row(session), None if tx is None else _tx_row(tx), fee_policy=fee_policy, reason=reason
    )
    # The session first: its conditional end is what makes a racing cleanup back off.
    if not end_session(
        s,
        session_id,
        settlement,
        end_time=now,
        reason=reason,
        now=now,
        actor=actor,
        fee_waived=waived,
        settle_delay=settle_delay,
    ):
        return None  # someone else ended it first
    if tx is not None and tx.stop_time is None:
        close_transaction_estimated(s, tx, now=now, reason=reason, with_session=False)
    audit(
        s,
        actor=actor,
        action="session.force_ended",
        at=now,
        charge_point_id=session.charge_point_id,
        connector_id=session.connector_id,
        subject=session_id,
        reason=reason,
        transaction_id=session.transaction_id,
        energy_wh=settlement.energy_wh,
        fee=str(settlement.fee),
        meter_source=settlement.source.value,
        fee_waived=waived,
    )
    return ForcedEnd(
        session_id,
        session.transaction_id,
        settlement.end_meter_wh,
        settlement.energy_wh,
        str(settlement.fee),
        settlement.source.value,
    )


def release_connector(
    s: Session,
    cp_id: str,
    connector_id: int,
    plan: UnlockPlan,
    *,
    now: datetime,
    reason: str,
    actor: str,
    fee_policy: str = "charge",
    settle_delay: timedelta = timedelta(0),
) -> ConnectorRelease:
    """Do the rest of the plan: close its open transactions, cancel its reservations, reset the stale status.

    Each step only where the row is still as planned (a StopTransaction, another cleanup or a
    new status may have come meanwhile).
    """
    closed = []
    for planned in plan.transactions:
        tx = s.get(Transaction, planned.transaction_id)
        if tx is not None and tx.stop_time is None:
            close_transaction_estimated(
                s, tx, now=now, reason=reason, fee_policy=fee_policy, actor=actor, settle_delay=settle_delay
            )
            closed.append(tx.id)
    cancelled = [r.id for r in plan.reservations if move_reservation(s, r.id, ReservationStatus.CANCELLED, now)]
    reset_from = None
    row = s.get(ConnectorStatus, (cp_id, connector_id))
    if plan.status_reset_from is not None and row is not None and row.status == plan.status_reset_from:
        reset_from, row.status, row.error_code, row.updated_at = row.status, "Available", "NoError", now
    if closed or cancelled or reset_from:
        audit(
            s,
            actor=actor,
            action="connector.released",
            at=now,
            charge_point_id=cp_id,
            connector_id=connector_id,
            reason=reason,
            closed_transactions=closed,
            cancelled_reservations=cancelled,
            status_reset_from=reset_from,
        )
    return ConnectorRelease(tuple(closed), tuple(cancelled), reset_from)
