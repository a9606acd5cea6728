"""Force-ending stuck sessions and releasing a connector: the units of work behind unlock and maintenance.

Each function is one atomic unit. Every update is conditional on the row
still being open, so two cleanups racing on one connector cannot end a session
twice or bill it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import billing
from ..fee_policy import apply_waiver
from ..reservations import TERMINAL, ReservationStatus
from .audit import audit
from .models import ChargingSession, ConnectorStatus, PaymentReservation, Transaction
from .ocpp_store import billing_start, close_transaction_estimated
from .reservation_store import move_reservation
from .session_end import end_session

__all__ = ["ForcedEnd", "ConnectorRelease", "find_stuck_sessions", "force_end_session", "release_connector",
           "audit"]

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


def find_stuck_sessions(s: Session, cp_id: str, connector_id: int) -> list[str]:
    """Sessions on the connector that have not ended (whatever state they claim)."""
    return list(s.scalars(select(ChargingSession.id).where(
        ChargingSession.charge_point_id == cp_id, ChargingSession.connector_id == connector_id,
        ChargingSession.end_time.is_(None)).order_by(ChargingSession.created_at)))


def force_end_session(s: Session, session_id: str, *, now: datetime, reason: str, actor: str,
                      close_transaction: bool = True, fee_policy: str = "charge") -> ForcedEnd | None:
    """End one session with the best meter estimate and close its transaction; None if already ended.

    `fee_policy` (csms.fee_policy) may waive its fee. close_transaction=False only for the test
    break `unlock_keeps_transaction` (the seed's bug).
    """
    session = s.get(ChargingSession, session_id)
    if session is None or session.end_time is not None:
        return None
    tx = None if session.transaction_id is None else s.get(Transaction, session.transaction_id)
    open_tx = tx is not None and tx.stop_time is None
    meter_start = billing_start(session, tx) if tx is not None else (session.meter_start or 0)
    settlement = billing.settle(meter_start, session.tariff, latest_sample_wh=tx.latest_meter_wh if open_tx else None,
                                meter_stop=None if tx is None or open_tx else tx.meter_stop)
    settlement, waived = apply_waiver(settlement, fee_policy, reason)
    # The session first: its conditional end is what makes a racing cleanup back off.
    if not end_session(s, session_id, settlement, end_time=now, reason=reason, now=now, actor=actor,
                       fee_waived=waived):
        return None  # someone else ended it first
    if open_tx and close_transaction:
        close_transaction_estimated(s, tx, now=now, reason=reason, with_session=False)
    audit(s, actor=actor, action="session.force_ended", at=now, charge_point_id=session.charge_point_id,
          connector_id=session.connector_id, subject=session_id, reason=reason,
          transaction_id=session.transaction_id, energy_wh=settlement.energy_wh, fee=str(settlement.fee),
          meter_source=settlement.source.value, fee_waived=waived)
    return ForcedEnd(session_id, session.transaction_id, settlement.end_meter_wh, settlement.energy_wh,
                     str(settlement.fee), settlement.source.value)


def release_connector(s: Session, cp_id: str, connector_id: int, *, now: datetime, reason: str,
                      live_occupied: bool, actor: str, close_transactions: bool = True,
                      fee_policy: str = "charge") -> ConnectorRelease:
    """Close what still holds the connector: open transactions, active reservations, a stale busy status.

    The persisted status is left alone when the live status says the connector
    is really in use (the charge point is the authority on that).
    close_transactions=False only for the test break `unlock_keeps_transaction`.
    """
    closed = []
    open_txs = s.scalars(select(Transaction).where(
        Transaction.charge_point_id == cp_id, Transaction.connector_id == connector_id,
        Transaction.stop_time.is_(None))) if close_transactions else ()
    for tx in open_txs:
        close_transaction_estimated(s, tx, now=now, reason=reason, fee_policy=fee_policy)
        closed.append(tx.id)
    cancelled = []
    for res_id in list(s.scalars(select(PaymentReservation.id).where(
            PaymentReservation.charge_point_id == cp_id, PaymentReservation.connector_id == connector_id,
            PaymentReservation.status.not_in(_TERMINAL)))):
        if move_reservation(s, res_id, ReservationStatus.CANCELLED, now):  # its payment cancel becomes due
            cancelled.append(res_id)
    reset_from = None
    row = s.get(ConnectorStatus, (cp_id, connector_id))
    if row is not None and row.status != "Available" and not live_occupied:
        reset_from, row.status, row.error_code, row.updated_at = row.status, "Available", "NoError", now
    if closed or cancelled or reset_from:
        audit(s, actor=actor, action="connector.released", at=now, charge_point_id=cp_id,
              connector_id=connector_id, reason=reason, closed_transactions=closed,
              cancelled_reservations=cancelled, status_reset_from=reset_from)
    return ConnectorRelease(tuple(closed), tuple(cancelled), reset_from)
