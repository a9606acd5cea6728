"""Which charging session a StartTransaction bills to. Pure: rows in, a decision out.

A session is created when the app asks for a start (`Requested`), moves to `Accepted`
when the charge point accepts RemoteStartTransaction, and is linked to the transaction
its StartTransaction opens. These rules keep every delivered kWh on exactly one bill:

- a StartTransaction links the newest *pending* session of its connector and tag that the
  charger accepted;
- failing that, the newest session that ended only because the CSMS stopped waiting for
  its start (the remote start timed out, its StartTransaction did not come within the
  start timeout, or a newer start on the connector superseded it) is *revived*, if this is
  the first transaction of that tag on the connector since it ended and it arrives within
  `revive_within` of that end; a later one is a new charge, not the one asked for;
- failing that, the newest pending session whose RemoteStartTransaction is still waiting
  for its answer (a double tap: the charger starts for the first, accepted request while
  the second is on its way, and may start again for the second later);
- a new start on a connector supersedes the sessions of the same tag still pending there,
  explicitly (they end `StartSuperseded`): two pending sessions of one tag would leave the
  older one waiting to capture that tag's next transaction at its old tariff (sessions of
  other tags cannot capture each other's transactions, and the start timeout ends them);
- a StartTransaction that supersedes an open transaction of the same connector and tag (the
  charger rebuilt and resent its start) carries that transaction's session over.

Every time here is the CSMS's clock (when we stored or received something), never the
charger's, so a charger whose clock is off cannot open or close these windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from csms.core.times import utc

__all__ = [
    "PENDING_STATUSES",
    "REVIVABLE_END_REASONS",
    "START_TIMED_OUT",
    "START_EXPIRED",
    "SessionCandidate",
    "Link",
    "START_SUPERSEDED",
    "pick_session",
    "carried_meter_start",
]

PENDING_STATUSES = frozenset({"Requested", "Accepted"})
START_TIMED_OUT = "StartTimedOut"  # RemoteStartTransaction got no answer in time
START_EXPIRED = "StartExpired"  # accepted, but no StartTransaction within the start timeout
START_SUPERSEDED = "StartSuperseded"  # a newer start on the connector took over before it began
REVIVABLE_END_REASONS = frozenset({START_TIMED_OUT, START_EXPIRED, START_SUPERSEDED})


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


def pick_session(
    candidates: Iterable[SessionCandidate],
    *,
    now: datetime,
    revive_within: timedelta | None,
    last_transaction_at: datetime | None = None,
) -> Link | None:
    """The session a StartTransaction links: the newest accepted pending one, else the newest revivable
    one, else the newest one still waiting for its RemoteStartTransaction's answer.

    Revivable: ended as `StartTimedOut`, `StartExpired` or `StartSuperseded` no longer than
    `revive_within` before `now` (None: never revive), and after the connector's previous
    transaction of the same tag was opened (`last_transaction_at`): only the first such
    transaction since it gave up waiting can be the one it asked for. A session the charger
    rejected, or that a person or the CSMS ended for any other reason, is never brought back.
    """
    rows = sorted(candidates, key=lambda c: (utc(c.created_at), c.session_id), reverse=True)
    accepted = next((c for c in rows if c.pending and c.status == "Accepted"), None)
    if accepted is not None:
        return Link(accepted.session_id, revived=False)
    if revive_within is not None:
        for c in rows:
            if (
                c.ended_at is not None
                and c.end_reason in REVIVABLE_END_REASONS
                and utc(now) - utc(c.ended_at) <= revive_within
                and (last_transaction_at is None or utc(c.ended_at) >= utc(last_transaction_at))
            ):
                return Link(c.session_id, revived=True)
    waiting = next((c for c in rows if c.pending), None)
    return None if waiting is None else Link(waiting.session_id, revived=False)


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
        f"start {session_meter_start} Wh (meter replaced or reset?): billed from {new_meter_start} Wh"
    )
