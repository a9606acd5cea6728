"""Moving payment reservations, and the provider calls (cancel, capture) that they owe.

Every status change of a reservation goes through `move_reservation`: a conditional
update from the sources `csms.core.reservations.TRANSITIONS` allows, which in the same unit
of work schedules the provider's cancel when the move ends the reservation before it
charged (`reservations.cancels_payment`). A reservation that charged owes the capture of
its session's fee when the session ends (`settle_with_provider`). The calls themselves are
made by `csms.services.payment_calls`, outside any database transaction, with retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from csms.core.reservations import (
    TRANSITIONS,
    ReservationStatus,
    payment_cancel_sources,
    provider_call_at_session_end,
)
from csms.db.database import rowcount
from csms.db.models import PaymentReservation

__all__ = [
    "move_reservation",
    "ProviderCall",
    "CANCEL",
    "CAPTURE",
    "PROVIDER_CALLS",
    "DueCall",
    "ProviderSettlement",
    "settle_with_provider",
    "reprice_capture",
    "claim_due_call",
    "due_calls",
    "next_call_due",
    "record_call_done",
    "record_call_failed",
]

_R = PaymentReservation


def move_reservation(s: Session, reservation_id: str, dst: ReservationStatus, now: datetime, **values: Any) -> bool:
    """Move to dst from any status the lifecycle allows; False if the reservation was elsewhere.

    Ending it before charging (Cancelled or Failed from PendingPayment, Authorized or
    StartRequested) makes its provider cancel due now, if it has a provider reference.
    """
    sources = [src.value for src, targets in TRANSITIONS.items() if dst in targets]
    cancel_from = sorted(src.value for src in payment_cancel_sources(dst))
    if cancel_from:
        values["provider_cancel_due_at"] = case(
            (and_(_R.provider_ref.is_not(None), _R.provider_cancelled_at.is_(None), _R.status.in_(cancel_from)), now),
            else_=_R.provider_cancel_due_at,
        )
    res = s.execute(
        update(_R)
        .where(_R.id == reservation_id, _R.status.in_(sources))
        .values(status=dst.value, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(res) != 1:
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


@dataclass(frozen=True)
class ProviderSettlement:
    kind: str | None  # "capture", "cancel", or None (nothing owed: not charging, or no provider reference)
    review: str | None = None  # why a person should look (the fee is more than the payment held)


def settle_with_provider(s: Session, reservation_id: str, fee: Decimal, due: datetime) -> ProviderSettlement:
    """When the session of a reservation that charged ends: make its capture of `fee` due at `due` (or its
    cancel, with nothing to charge). A capture never takes more than the payment held: the rest is for review."""
    row = s.execute(select(_R.status, _R.provider_ref, _R.amount).where(_R.id == reservation_id)).first()
    kind = None if row is None or row.provider_ref is None else provider_call_at_session_end(row.status, fee)
    review = None
    if kind == "capture":
        assert row is not None  # the kind was read from it
        amount = fee
        if row.amount is not None and fee > row.amount:
            amount = row.amount
            review = (
                f"the fee {fee} is more than the {row.amount} held with the provider: {amount} is "
                f"captured, collect {fee - amount} by hand"
            )
        values = {CAPTURE.due: due, _R.provider_capture_amount: amount}
    elif kind == "cancel":
        values = {CANCEL.due: due}
    if kind is not None:
        s.execute(update(_R).where(_R.id == reservation_id).values(values).execution_options(synchronize_session=False))
    return ProviderSettlement(kind, review)


def reprice_capture(s: Session, reservation_id: str, fee: Decimal, now: datetime) -> str | None:
    """A late StopTransaction changed a settled session's fee. A provider call still waiting (due, not taken
    by the worker) follows the new fee, a pending cancel of a zero fee becoming a capture; one made, being
    made or backing off after a failure is left alone, and the words for the session's review say so.
    None when all is well."""
    row = s.execute(
        select(
            _R.provider_ref,
            _R.amount,
            _R.provider_capture_amount,
            _R.provider_captured_at,
            _R.provider_capture_due_at,
            _R.provider_cancel_due_at,
            _R.provider_cancelled_at,
        ).where(_R.id == reservation_id)
    ).first()
    if row is None or row.provider_ref is None:
        return None
    amount = fee if row.amount is None else min(fee, row.amount)
    waiting = [c for c in PROVIDER_CALLS if getattr(row, c.due.key) is not None and getattr(row, c.done.key) is None]
    if len(waiting) == 1:
        call = waiting[0]
        # Conditional on the call still waiting: not taken by the worker meanwhile (nor made, nor failed once).
        values = (
            {CAPTURE.due: call.due, _R.provider_capture_amount: amount, CANCEL.due: None}
            if amount > 0
            else {CANCEL.due: call.due, CAPTURE.due: None, _R.provider_capture_amount: None}
        )
        moved = s.execute(
            update(_R)
            .where(_R.id == reservation_id, call.done.is_(None), _unclaimed(now), func.coalesce(call.attempts, 0) == 0)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if rowcount(moved) == 1:
            return None
    made = (
        row.provider_capture_amount
        if row.provider_capture_due_at is not None or row.provider_captured_at is not None
        else Decimal(0)
    )
    if made == amount:
        return None
    took = f"a capture of {made}" if made else "the release of the hold"
    return (
        f"the provider call ({took}) was made or under way before a late StopTransaction made the fee "
        f"{fee}: settle the difference by hand"
    )


def _unclaimed(now: datetime) -> Any:
    return or_(_R.provider_call_claimed_until.is_(None), _R.provider_call_claimed_until < now)


def due_calls(s: Session, now: datetime, call: ProviderCall = CANCEL, limit: int = 100) -> list[str]:
    """Reservations whose provider call of this kind is due now and not taken, oldest due first."""
    return list(
        s.scalars(
            select(_R.id)
            .where(call.due.is_not(None), call.done.is_(None), call.due <= now, _unclaimed(now))
            .order_by(call.due)
            .limit(limit)
        )
    )


def next_call_due(s: Session) -> datetime | None:
    """When the next provider call of any kind is due (or a taken one's lease runs out)."""
    dues = [
        s.scalar(
            select(func.min(func.coalesce(_R.provider_call_claimed_until, c.due))).where(
                c.due.is_not(None), c.done.is_(None)
            )
        )
        for c in PROVIDER_CALLS
    ]
    return min((d for d in dues if d is not None), default=None)


def claim_due_call(
    s: Session, reservation_id: str, call: ProviderCall, *, now: datetime, lease_until: datetime
) -> DueCall | None:
    """Take one due call for the caller until `lease_until`, so nobody else makes it meanwhile (another
    worker, the next round, a late StopTransaction repricing it); None if it is not due or already taken."""
    res = s.execute(
        update(_R)
        .where(_R.id == reservation_id, call.done.is_(None), call.due.is_not(None), call.due <= now, _unclaimed(now))
        .values(provider_call_claimed_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    if rowcount(res) != 1:
        return None
    ref, attempts, cp_id, connector_id, amount = s.execute(
        select(_R.provider_ref, call.attempts, _R.charge_point_id, _R.connector_id, _R.provider_capture_amount).where(
            _R.id == reservation_id
        )
    ).one()
    return DueCall(reservation_id, ref or "", attempts or 0, cp_id, connector_id, amount if call is CAPTURE else None)


def record_call_done(s: Session, reservation_id: str, call: ProviderCall, *, now: datetime) -> None:
    s.execute(
        update(_R)
        .where(_R.id == reservation_id)
        .values(
            {
                call.done: now,
                call.due: None,
                call.attempts: func.coalesce(call.attempts, 0) + 1,
                _R.provider_call_claimed_until: None,
            }
        )
        .execution_options(synchronize_session=False)
    )


def record_call_failed(
    s: Session, reservation_id: str, call: ProviderCall, *, attempts: int, retry_at: datetime
) -> None:
    s.execute(
        update(_R)
        .where(_R.id == reservation_id, call.done.is_(None))
        .values({call.due: retry_at, call.attempts: attempts, _R.provider_call_claimed_until: None})
        .execution_options(synchronize_session=False)
    )
