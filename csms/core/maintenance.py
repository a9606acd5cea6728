"""Maintenance: stale state heals itself. Pure selection over plain rows -> actions with reasons.

Each `select_*` function takes rows, live facts, a threshold and `now`, and
returns the actions to apply, each with the reason a person reads in the log
and the audit trail. A threshold of None (0 or below on the command line)
disables that rule. The IO shell that gathers rows and applies actions is
`csms.services.maintenance`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from csms.core.times import utc

__all__ = [
    "ActionKind",
    "Action",
    "Thresholds",
    "ReservationRow",
    "StatusRow",
    "OpenTransactionRow",
    "LiveConnectorRow",
    "LiveChargePointRow",
    "SessionActivityRow",
    "TransactionActivityRow",
    "PendingStartRow",
    "select_stale_reservations",
    "select_releasable_statuses",
    "select_offline_charge_points",
    "select_silent_connectors",
    "select_orphaned_transactions",
    "select_idle_sessions",
    "SilentAsk",
    "next_silent_ask",
    "select_stale_silent_statuses",
    "SILENT_BACKOFF_CAP",
    "select_quiet_transactions",
    "select_contradicted_statuses",
    "select_expired_starts",
    "TRANSACTION_STATUSES",
    "threshold",
]

STALE_RESERVATION_STATUSES = frozenset({"PendingPayment", "Authorized", "StartRequested"})
# OCPP 1.6 statuses that say a transaction is ongoing on the connector.
TRANSACTION_STATUSES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
# Statuses around a transaction: a connector that says one and then closes a transaction without
# saying anything newer still holds a status from before that transaction (a silent connector
# whose trigger answer outlived the car that later charged and left).
AROUND_TRANSACTION_STATUSES = frozenset({"Preparing", "Finishing"})
# The longest wait between two asks of a connector whose answers keep its status, in status graces.
SILENT_BACKOFF_CAP = 16


class ActionKind(StrEnum):
    CANCEL_RESERVATION = "cancel_reservation"
    RELEASE_STATUS = "release_status"
    MARK_OFFLINE = "mark_offline"
    TRIGGER_STATUS = "trigger_status"
    CLOSE_ORPHANED = "close_orphaned"
    END_IDLE_SESSION = "end_idle_session"
    PROBE_QUIET_TRANSACTION = "probe_quiet_transaction"
    PROBE_CONTRADICTED_STATUS = "probe_contradicted_status"
    EXPIRE_START = "expire_start"
    PROBE_STALE_SILENT_STATUS = "probe_stale_silent_status"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    charge_point_id: str
    connector_id: int | None
    subject: str  # reservation id, transaction id, session id, status, ...
    reason: str


def threshold(value: float, unit: str) -> timedelta | None:
    """A configured threshold; 0 or below disables the rule (as the seed says)."""
    return None if value <= 0 else timedelta(**{unit: value})


class ThresholdSettings(Protocol):
    """What `Thresholds.from_settings` reads: `csms.config.Settings` has it (the core imports nothing outside it)."""

    @property
    def reservation_timeout_minutes(self) -> float: ...
    @property
    def status_release_minutes(self) -> float: ...
    @property
    def heartbeat_timeout_factor(self) -> float: ...
    @property
    def status_grace_seconds(self) -> float: ...
    @property
    def orphan_grace_seconds(self) -> float: ...
    @property
    def session_idle_hours(self) -> float: ...
    @property
    def quiet_transaction_seconds(self) -> float: ...
    @property
    def start_timeout_seconds(self) -> float: ...
    @property
    def call_timeout_seconds(self) -> float: ...
    @property
    def estimate_settle_seconds(self) -> float: ...


@dataclass(frozen=True)
class Thresholds:
    reservation_timeout: timedelta | None = timedelta(minutes=60)
    status_release: timedelta | None = timedelta(minutes=240)
    heartbeat_timeout_factor: float = 2.5
    status_grace: timedelta | None = timedelta(seconds=30)
    orphan_grace: timedelta | None = timedelta(seconds=120)
    session_idle: timedelta | None = None
    quiet_transaction: timedelta | None = timedelta(seconds=600)
    start_timeout: timedelta | None = timedelta(seconds=180)
    settle_delay: timedelta = timedelta(seconds=600)  # before an estimated paid session is settled with the provider

    @classmethod
    def from_settings(cls, s: ThresholdSettings) -> Thresholds:
        return cls(
            reservation_timeout=threshold(s.reservation_timeout_minutes, "minutes"),
            status_release=threshold(s.status_release_minutes, "minutes"),
            heartbeat_timeout_factor=s.heartbeat_timeout_factor,
            status_grace=threshold(s.status_grace_seconds, "seconds"),
            orphan_grace=threshold(s.orphan_grace_seconds, "seconds"),
            session_idle=threshold(s.session_idle_hours, "hours"),
            quiet_transaction=threshold(s.quiet_transaction_seconds, "seconds"),
            # Never shorter than the call timeout: a start still waiting for its answer is not stale.
            start_timeout=threshold(
                max(s.start_timeout_seconds, s.call_timeout_seconds) if s.start_timeout_seconds > 0 else 0, "seconds"
            ),
            settle_delay=timedelta(seconds=max(0.0, s.estimate_settle_seconds)),
        )


def _age(now: datetime, then: datetime) -> timedelta:
    return utc(now) - utc(then)


def _human(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


# ------------------------------------------------------------------ rows
@dataclass(frozen=True)
class ReservationRow:
    reservation_id: str
    charge_point_id: str
    connector_id: int
    status: str
    updated_at: datetime  # when it entered its current status


@dataclass(frozen=True)
class StatusRow:
    charge_point_id: str
    connector_id: int
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class OpenTransactionRow:
    transaction_id: int
    charge_point_id: str
    connector_id: int
    opened_at: datetime  # CSMS time it was stored
    latest_meter_at: datetime | None = None  # CSMS time of its newest stored meter sample


@dataclass(frozen=True)
class LiveConnectorRow:
    charge_point_id: str
    connector_id: int
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class LiveChargePointRow:
    charge_point_id: str
    last_seen: datetime
    heartbeat_interval: float  # seconds
    ping_failed: bool = False


@dataclass(frozen=True)
class TransactionActivityRow:
    """When the connector of an open transaction was last heard from (CSMS receipt times)."""

    transaction_id: int
    charge_point_id: str
    connector_id: int
    opened_at: datetime  # its StartTransaction was stored
    meter_at: datetime | None = None  # newest MeterValues for it or its connector
    status_at: datetime | None = None  # newest StatusNotification of its connector


@dataclass(frozen=True)
class SilentAsk:
    """Our newest stale-silent-status TriggerMessage for a connector: when, the live status it asked about,
    and how many asks in a row found that same status (their answers did not change it)."""

    at: datetime
    status: str
    asks: int = 1


@dataclass(frozen=True)
class SessionActivityRow:
    """When an open session was last heard of, by the CSMS's clock only (receipt and storage times).

    Never a charger's timestamp: a charger whose clock runs a day ahead would otherwise look
    active until tomorrow, and one a day behind idle at once.
    """

    session_id: str
    charge_point_id: str
    connector_id: int
    last_activity: datetime  # newest of: created, transaction stored, meter sample received, status received


@dataclass(frozen=True)
class PendingStartRow:
    """A session whose remote start is pending: no StartTransaction has linked it yet."""

    session_id: str
    charge_point_id: str
    connector_id: int
    status: str
    created_at: datetime  # CSMS clock


# ------------------------------------------------------------- selectors
def select_stale_reservations(
    rows: Iterable[ReservationRow], *, now: datetime, timeout: timedelta | None
) -> list[Action]:
    """PendingPayment/Authorized/StartRequested reservations stuck longer than the timeout -> Cancelled."""
    if timeout is None:
        return []
    return [
        Action(
            ActionKind.CANCEL_RESERVATION,
            r.charge_point_id,
            r.connector_id,
            r.reservation_id,
            f"{r.status} for {_human(_age(now, r.updated_at))} (timeout {_human(timeout)})",
        )
        for r in rows
        if r.status in STALE_RESERVATION_STATUSES and _age(now, r.updated_at) > timeout
    ]


def select_releasable_statuses(
    rows: Iterable[StatusRow],
    *,
    now: datetime,
    release_after: timedelta | None,
    open_tx_connectors: set[tuple[str, int]],
    reserved_connectors: set[tuple[str, int]],
) -> list[Action]:
    """Old non-Available persisted statuses -> Available, only where nothing else holds the connector."""
    if release_after is None:
        return []
    out = []
    for r in rows:
        key = (r.charge_point_id, r.connector_id)
        if r.status == "Available" or _age(now, r.updated_at) <= release_after:
            continue
        if key in open_tx_connectors or key in reserved_connectors:
            continue
        out.append(
            Action(
                ActionKind.RELEASE_STATUS,
                r.charge_point_id,
                r.connector_id,
                r.status,
                f"stored {r.status} is {_human(_age(now, r.updated_at))} old, "
                f"no open transaction, no active reservation",
            )
        )
    return out


def select_offline_charge_points(rows: Iterable[LiveChargePointRow], *, now: datetime, factor: float) -> list[Action]:
    """Connected but silent for factor x heartbeat interval, or failing ping/pong -> offline."""
    out = []
    for r in rows:
        silent = _age(now, r.last_seen)
        limit = timedelta(seconds=r.heartbeat_interval * factor)
        if r.ping_failed:
            out.append(Action(ActionKind.MARK_OFFLINE, r.charge_point_id, None, "ping", "WebSocket ping got no pong"))
        elif factor > 0 and silent > limit:
            out.append(
                Action(
                    ActionKind.MARK_OFFLINE,
                    r.charge_point_id,
                    None,
                    "silence",
                    f"nothing received for {_human(silent)} (limit {factor:g} x {r.heartbeat_interval:g}s)",
                )
            )
    return out


def select_silent_connectors(
    charge_point_id: str, *, expected: set[int], reported: set[int], already_triggered: set[int]
) -> list[Action]:
    """After the grace period: TriggerMessage StatusNotification for connectors that said nothing.

    `expected` are the connectors the CSMS knows of (stored statuses, open
    transactions, reservations); with none known and none reported, one
    trigger without a connector id asks for all of them (connector None).
    """
    if not expected and not reported:
        if 0 in already_triggered:
            return []
        return [
            Action(
                ActionKind.TRIGGER_STATUS,
                charge_point_id,
                None,
                "StatusNotification",
                "no StatusNotification at all since connect",
            )
        ]
    return [
        Action(
            ActionKind.TRIGGER_STATUS,
            charge_point_id,
            c,
            "StatusNotification",
            "no StatusNotification for this connector since connect",
        )
        for c in sorted(expected - reported - already_triggered)
        if c > 0
    ]


def select_orphaned_transactions(
    txs: Iterable[OpenTransactionRow],
    live: dict[tuple[str, int], LiveConnectorRow],
    *,
    now: datetime,
    grace: timedelta | None,
) -> list[Action]:
    """Open transactions whose connector the charge point itself reports Available (since after it opened)."""
    if grace is None:
        return []
    out = []
    for t in txs:
        st = live.get((t.charge_point_id, t.connector_id))
        if st is None or st.status != "Available":
            continue
        if utc(st.updated_at) < utc(t.opened_at) or _age(now, st.updated_at) <= grace:
            continue
        out.append(
            Action(
                ActionKind.CLOSE_ORPHANED,
                t.charge_point_id,
                t.connector_id,
                str(t.transaction_id),
                f"connector reports Available for {_human(_age(now, st.updated_at))} "
                f"(grace {_human(grace)}) but StopTransaction never came",
            )
        )
    return out


def select_idle_sessions(rows: Iterable[SessionActivityRow], *, now: datetime, idle: timedelta | None) -> list[Action]:
    """Sessions with no meter value, status change or message for `idle` -> force-ended."""
    if idle is None:
        return []
    return [
        Action(
            ActionKind.END_IDLE_SESSION,
            r.charge_point_id,
            r.connector_id,
            r.session_id,
            f"no activity for {_human(_age(now, r.last_activity))} (limit {_human(idle)})",
        )
        for r in rows
        if _age(now, r.last_activity) > idle
    ]


def select_expired_starts(rows: Iterable[PendingStartRow], *, now: datetime, timeout: timedelta | None) -> list[Action]:
    """Sessions still waiting for their StartTransaction longer than the start timeout -> ended `StartExpired`.

    An accepted remote start the charger never began would otherwise wait for ever, ready to
    capture a later, unrelated transaction of the same tag at its old tariff. A StartTransaction
    that does come shortly after still revives it (see `csms.core.linking`).
    """
    if timeout is None:
        return []
    return [
        Action(
            ActionKind.EXPIRE_START,
            r.charge_point_id,
            r.connector_id,
            r.session_id,
            f"{r.status} for {_human(_age(now, r.created_at))} with no StartTransaction (timeout {_human(timeout)})",
        )
        for r in rows
        if _age(now, r.created_at) > timeout
    ]


def select_quiet_transactions(
    rows: Iterable[TransactionActivityRow],
    *,
    now: datetime,
    quiet: timedelta | None,
    online: set[str],
    probed: Mapping[int, datetime],
) -> list[Action]:
    """Open transactions whose connector said nothing for `quiet`, on a charge point that is online:
    TriggerMessage StatusNotification for that connector.

    A charger that lost its StopTransaction and then reports nothing leaves a transaction
    open forever; asked, it reports its real status (Available), and the orphan rule closes
    the transaction. `probed` holds when each transaction was last asked: a probe counts as
    activity, so a transaction is asked at most once per quiet period.
    """
    if quiet is None:
        return []
    out = []
    for r in rows:
        if r.charge_point_id not in online:
            continue
        heard = [
            ("StartTransaction", r.opened_at),
            ("MeterValues", r.meter_at),
            ("StatusNotification", r.status_at),
            ("our last TriggerMessage", probed.get(r.transaction_id)),
        ]
        what, last = max(((w, utc(t)) for w, t in heard if t is not None), key=lambda wt: wt[1])
        silent = _age(now, last)
        if silent <= quiet:
            continue
        out.append(
            Action(
                ActionKind.PROBE_QUIET_TRANSACTION,
                r.charge_point_id,
                r.connector_id,
                str(r.transaction_id),
                f"open transaction but no MeterValues, StatusNotification or transaction message for "
                f"{_human(silent)} (limit {_human(quiet)}; last: {what}): asking for the connector's status",
            )
        )
    return out


def select_contradicted_statuses(
    live: Iterable[LiveConnectorRow],
    *,
    now: datetime,
    grace: timedelta | None,
    online: set[str],
    open_tx_connectors: set[tuple[str, int]],
    closed_at: Mapping[tuple[str, int], datetime],
    asked: Mapping[tuple[str, int], datetime],
) -> list[Action]:
    """Live Charging/SuspendedEV/SuspendedEVSE with no open transaction for longer than `grace`, on a charge
    point that is online: TriggerMessage StatusNotification for that connector. Likewise a live Preparing or
    Finishing older than the connector's last transaction close: it was said before that transaction, so it
    cannot describe the connector now (a charger ends a transaction with a status of its own).

    A connector that reports no status of its own keeps whatever it last answered a trigger with; if
    that was Charging, it stays busy after its transaction ends. The grace runs from the newest of the
    status, the close of the connector's last transaction (a charger sends its own status right after
    its StopTransaction) and our own last ask, so a connector is asked once per status and then at
    most once per grace.
    """
    if grace is None:
        return []
    out = []
    for r in live:
        key = (r.charge_point_id, r.connector_id)
        closed = closed_at.get(key)
        outlived = r.status in AROUND_TRANSACTION_STATUSES and closed is not None and utc(r.updated_at) < utc(closed)
        if (
            r.connector_id <= 0
            or not (r.status in TRANSACTION_STATUSES or outlived)
            or r.charge_point_id not in online
            or key in open_tx_connectors
        ):
            continue
        moments = [
            ("StatusNotification", r.updated_at),
            ("transaction closed", closed_at.get(key)),
            ("our last TriggerMessage", asked.get(key)),
        ]
        since, at = max(((w, utc(t)) for w, t in moments if t is not None), key=lambda wt: wt[1])
        age = _age(now, at)
        if age <= grace:
            continue
        says = (
            "says a transaction is ongoing but none is open"
            if r.status in TRANSACTION_STATUSES
            else "was said before the connector's last transaction closed"
        )
        out.append(
            Action(
                ActionKind.PROBE_CONTRADICTED_STATUS,
                r.charge_point_id,
                r.connector_id,
                r.status,
                f"live status {r.status} {says}, for {_human(age)} "
                f"(grace {_human(grace)}; since: {since}): asking for the connector's status",
            )
        )
    return out


def next_silent_ask(previous: SilentAsk | None, status: str, now: datetime) -> SilentAsk:
    """The record of an ask made `now` about `status`: one more in a row while the status stays, else the first."""
    if previous is not None and previous.status == status:
        return SilentAsk(now, status, previous.asks + 1)
    return SilentAsk(now, status, 1)


def _backoff(unchanged: int) -> int:
    """Graces to wait: doubled after each ask that left the status as it was, at most SILENT_BACKOFF_CAP."""
    graces: int = 2 ** min(unchanged, SILENT_BACKOFF_CAP.bit_length())
    return min(graces, SILENT_BACKOFF_CAP)


def select_stale_silent_statuses(
    live: Iterable[LiveConnectorRow],
    *,
    now: datetime,
    grace: timedelta | None,
    online: set[str],
    silent: set[tuple[str, int]],
    open_tx_connectors: set[tuple[str, int]],
    closed_at: Mapping[tuple[str, int], datetime],
    asked: Mapping[tuple[str, int], SilentAsk],
) -> list[Action]:
    """On a connector that sends no StatusNotification of its own (`silent`: every live status it has
    answered one of our triggers), a live status other than Available with no open transaction, on a
    charge point that is online: TriggerMessage StatusNotification for that connector.

    Such a connector keeps whatever it last answered: Preparing or Finishing (a car was there then)
    stays live after the car leaves, since nothing tells us. Transaction statuses are left to
    `select_contradicted_statuses`. The wait runs from the newest of the status, the connector's last
    StopTransaction (`closed_at`: a charger speaks right after it, if at all) and our last ask of that
    status; it is the grace, doubled after each ask whose answer left the status as it was (at most
    SILENT_BACKOFF_CAP graces), and one grace again once the status changes or a transaction closed
    since our last ask.
    """
    if grace is None:
        return []
    out = []
    for r in live:
        key = (r.charge_point_id, r.connector_id)
        if (
            r.connector_id <= 0
            or r.status == "Available"
            or r.status in TRANSACTION_STATUSES
            or r.charge_point_id not in online
            or key not in silent
            or key in open_tx_connectors
        ):
            continue
        last, closed = asked.get(key), closed_at.get(key)
        unchanged = last.asks if last is not None and last.status == r.status else 0
        if unchanged and last is not None and closed is not None and utc(closed) > utc(last.at):
            unchanged = 0  # a car came and went since we last asked
        factor = _backoff(unchanged)
        wait = grace * factor
        moments = [
            ("StatusNotification", r.updated_at),
            ("StopTransaction", closed),
            ("our last TriggerMessage", last.at if unchanged and last is not None else None),
        ]
        since, at = max(((w, utc(t)) for w, t in moments if t is not None), key=lambda wt: wt[1])
        age = _age(now, at)
        if age <= wait:
            continue
        out.append(
            Action(
                ActionKind.PROBE_STALE_SILENT_STATUS,
                r.charge_point_id,
                r.connector_id,
                r.status,
                f"connector sends no status of its own (each one answered our TriggerMessage); live "
                f"{r.status} with no open transaction for {_human(age)} (wait {_human(wait)} = grace "
                f"{_human(grace)} x {factor} after {unchanged} unchanged answer(s); since: {since}): "
                f"asking for the connector's status",
            )
        )
    return out
