"""Moving payment reservations, and the provider cancels that a move schedules.

Every status change of a reservation goes through `move_reservation`: a conditional
update from the sources `csms.reservations.TRANSITIONS` allows, which in the same unit
of work schedules the provider's cancel when the move ends the reservation before it
charged (`reservations.cancels_payment`). The cancel itself is made by
`csms.payment_cancels`, outside any database transaction, with retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from ..reservations import TRANSITIONS, ReservationStatus, payment_cancel_sources
from .models import PaymentReservation

__all__ = ["move_reservation", "DueCancel", "claim_due_cancel", "due_cancels", "next_cancel_due",
           "record_cancel_done", "record_cancel_failed"]

_R = PaymentReservation


def move_reservation(s: Session, reservation_id: str, dst: ReservationStatus, now: datetime,
                     **values: Any) -> bool:
    """Move to dst from any status the lifecycle allows; False if the reservation was elsewhere.

    Ending it before charging (Cancelled or Failed from PendingPayment, Authorized or
    StartRequested) makes its provider cancel due now, if it has a provider reference.
    """
    sources = [src.value for src, targets in TRANSITIONS.items() if dst in targets]
    cancel_from = sorted(src.value for src in payment_cancel_sources(dst))
    if cancel_from:
        values["provider_cancel_due_at"] = case(
            (and_(_R.provider_ref.is_not(None), _R.provider_cancelled_at.is_(None), _R.status.in_(cancel_from)),
             now),
            else_=_R.provider_cancel_due_at)
    res = s.execute(update(_R).where(_R.id == reservation_id, _R.status.in_(sources))
                    .values(status=dst.value, updated_at=now, **values)
                    .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        return False
    loaded = s.identity_map.get(s.identity_key(_R, reservation_id))
    if loaded is not None:
        s.refresh(loaded)  # an ORM copy loaded earlier in this unit of work sees the move
    return True


@dataclass(frozen=True)
class DueCancel:
    reservation_id: str
    provider_ref: str
    attempts: int
    charge_point_id: str
    connector_id: int


def due_cancels(s: Session, now: datetime, limit: int = 100) -> list[str]:
    """Reservations whose provider cancel is due now, oldest due first."""
    return list(s.scalars(select(_R.id).where(_R.provider_cancel_due_at.is_not(None),
                                              _R.provider_cancelled_at.is_(None),
                                              _R.provider_cancel_due_at <= now)
                          .order_by(_R.provider_cancel_due_at).limit(limit)))


def next_cancel_due(s: Session) -> datetime | None:
    return s.scalar(select(func.min(_R.provider_cancel_due_at)).where(_R.provider_cancelled_at.is_(None)))


def claim_due_cancel(s: Session, reservation_id: str, *, now: datetime, lease_until: datetime) -> DueCancel | None:
    """Take one due cancel for the caller: pushes its due time to `lease_until` so nobody else makes
    the call meanwhile (another worker, the next round); None if it is not due or already taken."""
    res = s.execute(update(_R).where(_R.id == reservation_id, _R.provider_cancelled_at.is_(None),
                                     _R.provider_cancel_due_at.is_not(None), _R.provider_cancel_due_at <= now)
                    .values(provider_cancel_due_at=lease_until).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        return None
    ref, attempts, cp_id, connector_id = s.execute(
        select(_R.provider_ref, _R.provider_cancel_attempts, _R.charge_point_id, _R.connector_id)
        .where(_R.id == reservation_id)).one()
    return DueCancel(reservation_id, ref or "", attempts or 0, cp_id, connector_id)


def record_cancel_done(s: Session, reservation_id: str, *, now: datetime) -> None:
    s.execute(update(_R).where(_R.id == reservation_id).values(
        provider_cancelled_at=now, provider_cancel_due_at=None,
        provider_cancel_attempts=func.coalesce(_R.provider_cancel_attempts, 0) + 1)
        .execution_options(synchronize_session=False))


def record_cancel_failed(s: Session, reservation_id: str, *, attempts: int, retry_at: datetime) -> None:
    s.execute(update(_R).where(_R.id == reservation_id, _R.provider_cancelled_at.is_(None)).values(
        provider_cancel_due_at=retry_at, provider_cancel_attempts=attempts)
        .execution_options(synchronize_session=False))
