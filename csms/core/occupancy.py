"""Is a connector free to start a session? One pure verdict with its reasons.

The shell gathers the signals (WebSocket presence, live and persisted status,
open transactions, reservations) and `decide` names every predicate that fired,
so a "connector busy" answer can always be explained to an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum

from csms.core.times import utc

__all__ = [
    "AVAILABLE",
    "BUSY_STATUSES",
    "DEFAULT_FRESHNESS",
    "INACTIVE_RESERVATION_STATUSES",
    "ConnectorSignals",
    "Decision",
    "OpenTransaction",
    "PersistedStatus",
    "ReservationRef",
    "Verdict",
    "decide",
    "is_reservation_active",
    "is_status_busy",
]

AVAILABLE = "Available"
# The statuses a charger is known to report for a connector in use. Informational:
# `is_status_busy` treats *any* status other than AVAILABLE as busy, unknown ones included.
BUSY_STATUSES = frozenset(
    {
        "Preparing",
        "Charging",
        "SuspendedEV",
        "SuspendedEVSE",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
        "Occupied",  # OCPP 1.5 / legacy backends
    }
)
INACTIVE_RESERVATION_STATUSES = frozenset({"Completed", "Cancelled", "Failed"})
DEFAULT_FRESHNESS = timedelta(minutes=30)

_MINUTE = timedelta(minutes=1)


class Verdict(StrEnum):
    """What the start flow should answer: proceed, ConnectorBusy, or ChargerOffline."""

    FREE = "free"
    BUSY = "busy"
    OFFLINE = "offline"


@dataclass(frozen=True)
class PersistedStatus:
    """The last status stored for the connector, trusted only while fresh."""

    status: str
    updated_at: datetime


@dataclass(frozen=True)
class OpenTransaction:
    """A transaction with no stop time: the connector is in use until it is closed."""

    transaction_id: int
    started_at: datetime | None = None


@dataclass(frozen=True)
class ReservationRef:
    """A payment reservation on the connector; only non-terminal ones hold it."""

    reservation_id: str
    status: str


@dataclass(frozen=True)
class ConnectorSignals:
    """Everything the shell knows about one connector at the moment of asking."""

    websocket_present: bool
    live_status: str | None = None
    persisted: PersistedStatus | None = None
    open_transactions: tuple[OpenTransaction, ...] = ()
    reservations: tuple[ReservationRef, ...] = ()  # may include inactive ones; decide() filters
    # A StartTransaction for the connector was received and is being stored right now.
    start_in_flight: bool = False
    # How long the charger's current WebSocket has been up (None: unknown, taken as long enough).
    connected_for: timedelta | None = None
    # The live status was inferred from this transaction's events (OCPP 2.0.1 chargingState), not said by the
    # connector: it holds while that transaction is open, and not after a force end closed it.
    live_status_of: int | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict plus every predicate that fired, in a fixed order, for logs and admins."""

    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def busy(self) -> bool:
        """True only for BUSY; OFFLINE is reported separately (ChargerOffline)."""
        return self.verdict is Verdict.BUSY


def _text(value: str) -> str:
    """Plain string of a status, so str-Enum members compare and format by value."""
    return value.value if isinstance(value, Enum) else str(value)


def _whole_minutes(age: timedelta) -> int:
    """Minutes in an age, floored; a negative (clock-skewed) age truncates towards zero."""
    if age >= timedelta(0):
        return age // _MINUTE
    return -((-age) // _MINUTE)


def is_reservation_active(status: str) -> bool:
    """A reservation holds its connector until it is Completed, Cancelled or Failed."""
    return _text(status) not in INACTIVE_RESERVATION_STATUSES


def is_status_busy(status: str) -> bool:
    """Anything but Available blocks a start, including statuses we do not know."""
    return _text(status) != AVAILABLE


def _busy_reasons(
    signals: ConnectorSignals,
    *,
    now: datetime,
    freshness: timedelta,
    exclude_reservation_id: str | None,
) -> list[str]:
    """Every busy predicate that fires, in the documented order."""
    reasons: list[str] = []
    live = signals.live_status
    if signals.live_status_of is not None and all(
        tx.transaction_id != signals.live_status_of for tx in signals.open_transactions
    ):
        live = None  # its transaction is closed: nothing the connector itself said is left
    if live is not None:
        if is_status_busy(live):
            reasons.append(f"live_status:{_text(live)}")
    elif signals.persisted is not None and is_status_busy(signals.persisted.status):
        age = now - utc(signals.persisted.updated_at)
        if age <= freshness:
            reasons.append(f"persisted_status:{_text(signals.persisted.status)}:age={_whole_minutes(age)}m")
    reasons.extend(f"open_transaction:{tx.transaction_id}" for tx in signals.open_transactions)
    if signals.start_in_flight:
        reasons.append("start_transaction:being_stored")
    reasons.extend(
        f"active_reservation:{r.reservation_id}:{_text(r.status)}"
        for r in signals.reservations
        if is_reservation_active(r.status)
        and (exclude_reservation_id is None or r.reservation_id != exclude_reservation_id)
    )
    return reasons


def _settling(signals: ConnectorSignals, settle: timedelta) -> bool:
    """A charger back on a new connection that has not yet said anything about a connector it reported
    before: while it replays what it queued offline (a car may have started meanwhile), "free" is a guess."""
    return (
        signals.live_status is None
        and signals.persisted is not None
        and signals.connected_for is not None
        and signals.connected_for < settle
    )


def decide(
    signals: ConnectorSignals,
    *,
    now: datetime,
    freshness: timedelta = DEFAULT_FRESHNESS,
    exclude_reservation_id: str | None = None,
    settle: timedelta = timedelta(0),
) -> Decision:
    """Offline beats busy beats free; the reasons say which predicates fired and why.

    For `settle` after a charger (re)connects, a connector it reported on an earlier connection and not
    yet on this one is not free: busy if a busy predicate fires, else offline (not known yet).
    """
    if freshness < timedelta(0):
        raise ValueError(f"freshness must not be negative, got {freshness}")
    reasons = _busy_reasons(
        signals,
        now=utc(now),
        freshness=freshness,
        exclude_reservation_id=exclude_reservation_id,
    )
    if not signals.websocket_present:
        return Decision(Verdict.OFFLINE, ("websocket:absent", *reasons))
    if reasons:
        return Decision(Verdict.BUSY, tuple(reasons))
    if _settling(signals, settle):
        assert signals.connected_for is not None  # _settling checked it
        seconds = signals.connected_for.total_seconds()
        return Decision(Verdict.OFFLINE, (f"websocket:reconnected:{seconds:.1f}s_ago:no_status_yet",))
    return Decision(Verdict.FREE, ())
