"""Which charging session a StartTransaction bills to. Pure: rows in, a decision out.

A session is created when the app asks for a start (`Requested`), moves to `Accepted`
when the charge point accepts RemoteStartTransaction, and is linked to the transaction
its StartTransaction opens. These rules keep every delivered kWh on exactly one bill:

- a StartTransaction links the newest *pending* session of its connector and tag;
- failing that, the newest session that ended only because the CSMS stopped waiting (the
  remote start timed out, or its StartTransaction did not come within the start timeout)
  is *revived*, if the StartTransaction arrives within `revive_within` of that end;
- while a session is pending on a connector, a second start there is refused: two pending
  sessions for one connector would leave the older waiting to capture a later transaction;
- a StartTransaction that supersedes an open transaction of the same connector and tag (the
  charger rebuilt and resent its start) carries that transaction's session over.

Every time here is the CSMS's clock (when we stored or received something), never the
charger's, so a charger whose clock is off cannot open or close these windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "PENDING_STATUSES",
    "REVIVABLE_END_REASONS",
    "START_TIMED_OUT",
    "START_EXPIRED",
    "SessionCandidate",
    "Link",
    "pick_session",
    "pending_blockers",
    "carried_meter_start",
]

PENDING_STATUSES = frozenset({"Requested", "Accepted"})
START_TIMED_OUT = "StartTimedOut"  # RemoteStartTransaction got no answer in time
START_EXPIRED = "StartExpired"  # accepted, but no StartTransaction within the start timeout
REVIVABLE_END_REASONS = frozenset({START_TIMED_OUT, START_EXPIRED})


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class SessionCandidate:
    """A session of the StartTransaction's connector and tag that has no transaction yet."""

    session_id: str
    status: str
    created_at: datetime  # CSMS clock
    ended_at: datetime | None = None  # CSMS clock: when it failed or expired
    end_reason: str | None = None

    @property
    def pending(self) -> bool:
        return self.ended_at is None and self.status in PENDING_STATUSES


@dataclass(frozen=True)
class Link:
    session_id: str
    revived: bool  # it had ended (timed out, expired) and is brought back to bill this transaction


def pick_session(candidates: Iterable[SessionCandidate], *, now: datetime,
                 revive_within: timedelta | None) -> Link | None:
    """The session a StartTransaction links: the newest pending one, else the newest revivable one.

    Revivable: ended as `StartTimedOut` or `StartExpired` no longer than `revive_within`
    before `now` (None: never revive). A session the charger rejected, or that a person or
    the CSMS ended for any other reason, is never brought back.
    """
    rows = sorted(candidates, key=lambda c: (_utc(c.created_at), c.session_id), reverse=True)
    pending = next((c for c in rows if c.pending), None)
    if pending is not None:
        return Link(pending.session_id, revived=False)
    if revive_within is None:
        return None
    for c in rows:
        if (c.ended_at is not None and c.end_reason in REVIVABLE_END_REASONS
                and _utc(now) - _utc(c.ended_at) <= revive_within):
            return Link(c.session_id, revived=True)
    return None


def pending_blockers(candidates: Iterable[SessionCandidate], *, now: datetime,
                     start_timeout: timedelta | None) -> list[str]:
    """Reasons a new start on the connector is refused: its pending sessions younger than the timeout.

    An older pending session is the start-timeout rule's to end (it no longer blocks); with
    no timeout, every pending session blocks.
    """
    return [f"pending_start:{c.session_id}" for c in sorted(candidates, key=lambda c: _utc(c.created_at))
            if c.pending and (start_timeout is None or _utc(now) - _utc(c.created_at) <= start_timeout)]


def carried_meter_start(session_meter_start: int | None, new_meter_start: int) -> tuple[int, str | None]:
    """The reading a carried-over session bills from, and why to review it (or None).

    The session keeps the reading it started from: the register only moves through this
    connector, and both transactions are the same tag's, so the energy since then is its.
    A register that went backwards between the two (meter replaced) cannot be bridged: the
    session bills from the new transaction's start and says so.
    """
    if session_meter_start is None:
        return new_meter_start, None
    if new_meter_start >= session_meter_start:
        return session_meter_start, None
    return new_meter_start, (
        f"carried over to a transaction whose meterStart {new_meter_start} Wh is below the session's "
        f"start {session_meter_start} Wh (meter replaced or reset?): billed from {new_meter_start} Wh")
