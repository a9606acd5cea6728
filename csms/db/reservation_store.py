"""Moving payment reservations, and the provider calls (cancel, capture) that they owe.

Every status change of a reservation goes through `move_reservation`: a conditional
update from the sources `csms.reservations.TRANSITIONS` allows, which in the same unit
of work schedules the provider's cancel when the move ends the reservation before it
charged (`reservations.cancels_payment`). A reservation that charged owes the capture of
its session's fee when the session ends (`settle_with_provider`). The calls themselves are
made by `csms.payment_cancels`, outside any database transaction, with retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from ..reservations import (
    TRANSITIONS,
    ReservationStatus,
    payment_cancel_sources,
    provider_call_at_session_end,
)
from .models import PaymentReservation

__all__ = ["move_reservation", "ProviderCall", "CANCEL", "CAPTURE", "PROVIDER_CALLS", "DueCall",
           "settle_with_provider", "reprice_capture", "claim_due_call", "due_calls", "next_call_due", "record_call_done",
           "record_call_failed"]

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
class ProviderCall:
    """One kind of provider call a reservation may owe, and its three columns (due, done, attempts)."""

    kind: str  # "cancel" | "capture"
    due: Any
    done: Any
    attempts: Any


CANCEL = ProviderCall("cancel", _R.provider_cancel_due_at, _R.provider_cancelled_at, _R.provider_cancel_attempts)
CAPTURE = ProviderCall("capture", _R.provider_capture_due_at, _R.provider_captured_at, _R.provider_capture_attempts)
PROVIDER_CALLS = (CANCEL, CAPTURE)


@dataclass(frozen=True)
class DueCall:
    reservation_id: str
    provider_ref: str
    attempts: int
    charge_point_id: str
    connector_id: int
    amount: Decimal | None = None  # what a capture takes


def settle_with_provider(s: Session, reservation_id: str, fee: Decimal, now: datetime) -> str | None:
    """When the session of a reservation that charged ends: make its capture of `fee` due (or its
    cancel, with nothing to charge); the kind made due, or None (not charging, or no provider ref)."""
    row = s.execute(select(_R.status, _R.provider_ref).where(_R.id == reservation_id)).first()
    kind = None if row is None or row.provider_ref is None else provider_call_at_session_end(row.status, fee)
    if kind is not None:
        values = {CAPTURE.due: now, _R.provider_capture_amount: fee} if kind == "capture" else {CANCEL.due: now}
        s.execute(update(_R).where(_R.id == reservation_id).values(values)
                  .execution_options(synchronize_session=False))
    return kind


def reprice_capture(s: Session, reservation_id: str, fee: Decimal, now: datetime) -> str | None:
    """A late StopTransaction changed a settled session's fee. A provider call not made yet follows the
    new fee (a pending cancel of a zero fee becomes a capture); one already made cannot, and the words
    for the session's review say so. None when all is well."""
    row = s.execute(select(_R.status, _R.provider_ref, _R.provider_capture_amount, _R.provider_captured_at,
                           _R.provider_cancel_due_at, _R.provider_cancelled_at)
                    .where(_R.id == reservation_id)).first()
    if row is None or row.provider_ref is None:
        return None
    if row.provider_captured_at is not None or row.provider_cancelled_at is not None:
        made = row.provider_capture_amount if row.provider_captured_at is not None else Decimal(0)
        if made == fee:
            return None
        took = f"captured {made}" if row.provider_captured_at is not None else "released the hold"
        return f"the provider already {took} before a late StopTransaction made the fee {fee}: settle the " \
               "difference by hand"
    if row.provider_capture_amount is not None or (row.provider_cancel_due_at is not None and fee > 0):
        s.execute(update(_R).where(_R.id == reservation_id)
                  .values(provider_capture_amount=fee, provider_capture_due_at=func.coalesce(_R.provider_capture_due_at, now),
                          provider_cancel_due_at=None)
                  .execution_options(synchronize_session=False))
    return None


def due_calls(s: Session, now: datetime, call: ProviderCall = CANCEL, limit: int = 100) -> list[str]:
    """Reservations whose provider call of this kind is due now, oldest due first."""
    return list(s.scalars(select(_R.id).where(call.due.is_not(None), call.done.is_(None), call.due <= now)
                          .order_by(call.due).limit(limit)))


def next_call_due(s: Session) -> datetime | None:
    """When the next provider call of any kind is due."""
    dues = [s.scalar(select(func.min(c.due)).where(c.done.is_(None))) for c in PROVIDER_CALLS]
    return min((d for d in dues if d is not None), default=None)


def claim_due_call(s: Session, reservation_id: str, call: ProviderCall, *, now: datetime,
                   lease_until: datetime) -> DueCall | None:
    """Take one due call for the caller: pushes its due time to `lease_until` so nobody else makes
    it meanwhile (another worker, the next round); None if it is not due or already taken."""
    res = s.execute(update(_R).where(_R.id == reservation_id, call.done.is_(None), call.due.is_not(None),
                                     call.due <= now)
                    .values({call.due: lease_until}).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        return None
    ref, attempts, cp_id, connector_id, amount = s.execute(
        select(_R.provider_ref, call.attempts, _R.charge_point_id, _R.connector_id, _R.provider_capture_amount)
        .where(_R.id == reservation_id)).one()
    return DueCall(reservation_id, ref or "", attempts or 0, cp_id, connector_id,
                   amount if call is CAPTURE else None)


def record_call_done(s: Session, reservation_id: str, call: ProviderCall, *, now: datetime) -> None:
    s.execute(update(_R).where(_R.id == reservation_id).values(
        {call.done: now, call.due: None, call.attempts: func.coalesce(call.attempts, 0) + 1})
        .execution_options(synchronize_session=False))


def record_call_failed(s: Session, reservation_id: str, call: ProviderCall, *, attempts: int,
                       retry_at: datetime) -> None:
    s.execute(update(_R).where(_R.id == reservation_id, call.done.is_(None)).values(
        {call.due: retry_at, call.attempts: attempts})
        .execution_options(synchronize_session=False))
