"""The payment-reservation lifecycle as a table, so it can be drawn, walked and enforced.

Rule: every allowed status change lives in TRANSITIONS; anything not listed is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "TRANSITIONS",
    "ReservationStatus",
    "ReservationTransitionError",
    "can_transition",
    "check_transition",
    "cancels_payment",
    "payment_cancel_sources",
    "cancel_retry_delay",
    "provider_call_at_session_end",
]


class ReservationStatus(StrEnum):
    """Where a paid start is, from checkout to the end of charging; values as stored."""

    PENDING_PAYMENT = "PendingPayment"
    AUTHORIZED = "Authorized"
    START_REQUESTED = "StartRequested"
    CHARGING = "Charging"
    COMPLETED = "Completed"
    CANCELLED = "Cancelled"
    FAILED = "Failed"


_S = ReservationStatus

TRANSITIONS: Mapping[ReservationStatus, frozenset[ReservationStatus]] = MappingProxyType(
    {
        _S.PENDING_PAYMENT: frozenset({_S.AUTHORIZED, _S.CANCELLED, _S.FAILED}),
        _S.AUTHORIZED: frozenset({_S.START_REQUESTED, _S.CANCELLED, _S.FAILED}),
        _S.START_REQUESTED: frozenset({_S.CHARGING, _S.FAILED, _S.CANCELLED}),
        _S.CHARGING: frozenset({_S.COMPLETED, _S.CANCELLED}),
        _S.COMPLETED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.FAILED: frozenset(),
    }
)
# Derived from the table so the two can never disagree.
TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
ACTIVE = frozenset(status for status in ReservationStatus if status not in TERMINAL)


class ReservationTransitionError(ValueError):
    """A status change the lifecycle does not allow, or a status it does not know."""


def _status(value: ReservationStatus | str) -> ReservationStatus:
    """The enum member for a stored string; unknown strings are a transition error."""
    try:
        return ReservationStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in ReservationStatus)
        raise ReservationTransitionError(f"unknown reservation status {value!r} (known: {known})") from None


def can_transition(src: ReservationStatus | str, dst: ReservationStatus | str) -> bool:
    """Whether the table allows src -> dst; staying in the same status is not a transition."""
    return _status(dst) in TRANSITIONS[_status(src)]


def check_transition(src: ReservationStatus | str, dst: ReservationStatus | str) -> None:
    """Refuse a status change the table does not allow, naming both ends."""
    source, target = _status(src), _status(dst)
    if target not in TRANSITIONS[source]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[source])) or "none (terminal)"
        raise ReservationTransitionError(
            f"reservation cannot go from {source.value} to {target.value} (allowed: {allowed})"
        )


# ----------------------------------------------------------------- the provider
# Ending a reservation before it charged (user cancel, payment declined, connector busy at
# confirm, remote start failed, unlock-connector, reservation or start timeout) must release
# the money held with the provider; a reservation that charged ends with its session's bill.
_BEFORE_CHARGING = frozenset({_S.PENDING_PAYMENT, _S.AUTHORIZED, _S.START_REQUESTED})
_WITHOUT_CHARGING = frozenset({_S.CANCELLED, _S.FAILED})


def cancels_payment(src: ReservationStatus | str, dst: ReservationStatus | str) -> bool:
    """Whether src -> dst ends the reservation without charging, so its payment must be cancelled."""
    return _status(src) in _BEFORE_CHARGING and _status(dst) in _WITHOUT_CHARGING


def payment_cancel_sources(dst: ReservationStatus | str) -> frozenset[ReservationStatus]:
    """The statuses from which moving to dst cancels the payment (empty: dst never does)."""
    return frozenset(
        src for src, targets in TRANSITIONS.items() if _status(dst) in targets and cancels_payment(src, dst)
    )


def provider_call_at_session_end(status: ReservationStatus | str, fee: Decimal) -> str | None:
    """What the provider is told when the session of a reservation that charged ends, whatever ended
    it: "capture" the fee, or "cancel" the hold when there is nothing to charge (a waived or zero fee);
    None when the reservation is not charging (its end before charging cancels it through the move)."""
    if _status(status) is not _S.CHARGING:
        return None
    return "capture" if fee > 0 else "cancel"


def cancel_retry_delay(attempts: int, *, base: timedelta, cap: timedelta = timedelta(hours=1)) -> timedelta:
    """How long to wait after the `attempts`-th failed provider cancel: base, 2 x base, 4 x base ... at most cap."""
    if attempts < 1:
        return timedelta(0)
    factor: int = 2 ** min(attempts - 1, 30)
    return min(cap, base * factor)
