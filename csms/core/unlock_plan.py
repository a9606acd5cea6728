"""What an unlock does to a connector, decided once from plain rows: the dry run shows it, the unlock does it.

Seed 000 force-ends every session still open on the connector, closes its transactions
without a StopTransaction, cancels its reservations and resets a stale busy status, then
sends UnlockConnector, also when the charger answers UnlockFailed. One exception: a
transaction with live evidence is not stuck. A meter sample received within the evidence
window, or a Charging/SuspendedEV status reported within it by a charger that is online,
means a car is still taking energy; ending it would stop the bill while the charger goes on
charging, unless the charger has reported since that the charging stopped (Finishing,
Available, Faulted, Unavailable). Such a transaction and its session are left open, and no UnlockConnector is sent
(OCPP 1.6 §5.18: a charger finishes a running transaction before it unlocks). With
`force_active` the operator overrides that: the charger is first asked to stop each live
transaction (RemoteStopTransaction, so its own StopTransaction brings the real reading),
then everything is cleaned as for a stuck one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from csms.core import billing
from csms.core.fee_policy import apply_waiver

__all__ = [
    "SessionRow",
    "TransactionRow",
    "ReservationRow",
    "ConnectorRows",
    "LiveStatus",
    "SessionEnd",
    "TransactionClose",
    "LiveTransaction",
    "UnlockPlan",
    "plan_unlock",
    "session_end_settlement",
    "live_evidence",
    "LIVE_CHARGING",
    "LIVE_OCCUPIED",
    "CHARGING_STOPPED",
]

# Live statuses in which a car is really there: the persisted status is then left alone.
# (Occupied: OCPP 2.0.1's one word for all of them.)
LIVE_OCCUPIED = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied"})
# Live statuses in which energy flows (or the car is taking a pause of its own): live evidence.
LIVE_CHARGING = frozenset({"Charging", "SuspendedEV"})
# Statuses that say the charging has stopped; reported after the last sample, they outweigh it.
# (SuspendedEVSE is not one: the charger paused it, as load management does, and resumes.)
CHARGING_STOPPED = frozenset({"Available", "Finishing", "Faulted", "Unavailable"})
_FORCE_REASON = "ForceEnded"


@dataclass(frozen=True)
class TransactionRow:
    id: int
    id_tag: str
    start_time: datetime
    meter_start: int
    meter_stop: int | None
    stop_time: datetime | None
    latest_meter_wh: int | None
    meter_seen_at: datetime | None  # when we received its latest sample (our clock)

    @property
    def open(self) -> bool:
        return self.stop_time is None


@dataclass(frozen=True)
class SessionRow:
    id: str
    status: str
    id_tag: str
    transaction_id: int | None
    created_at: datetime
    tariff: Decimal | None  # None: what is stored is not a number (the unlock then reports it, and goes on)
    meter_start: int | None  # its own start (kept when carried over), else its transaction's


@dataclass(frozen=True)
class ReservationRow:
    id: str
    status: str
    created_at: datetime
    session_id: str | None = None


@dataclass(frozen=True)
class ConnectorRows:
    """What the database holds for one connector: open sessions (with their transactions), open
    transactions, active reservations and the stored status."""

    sessions: tuple[SessionRow, ...]
    transactions: dict[int, TransactionRow]  # the open ones, and those the open sessions name
    reservations: tuple[ReservationRow, ...]
    stored_status: str | None


@dataclass(frozen=True)
class LiveStatus:
    status: str | None
    reported_at: datetime | None
    charger_online: bool


@dataclass(frozen=True)
class SessionEnd:
    session_id: str
    status: str
    id_tag: str
    transaction_id: int | None
    created_at: datetime
    energy_wh: int
    fee: str
    meter_source: str
    fee_waived: str | None


@dataclass(frozen=True)
class TransactionClose:
    transaction_id: int
    id_tag: str
    start_time: datetime
    meter_start: int
    closing_meter_wh: int
    meter_source: str


@dataclass(frozen=True)
class LiveTransaction:
    """A transaction that is still delivering energy, the session billed to it, and why we think so."""

    transaction_id: int
    session_id: str | None
    evidence: str  # in words, for the preview and the warnings


@dataclass(frozen=True)
class UnlockPlan:
    connector_id: int
    charger_online: bool
    sessions: tuple[SessionEnd, ...]
    transactions: tuple[TransactionClose, ...]
    reservations: tuple[ReservationRow, ...]
    status_reset_from: str | None
    live: tuple[LiveTransaction, ...]  # left open (without force) or stopped first (with force)
    force_active: bool

    @property
    def kept(self) -> tuple[LiveTransaction, ...]:
        """The live transactions this unlock leaves open."""
        return () if self.force_active else self.live

    @property
    def remote_stops(self) -> tuple[int, ...]:
        """Transactions the charger is asked to stop before the cleaning (forced, and the charger online)."""
        return tuple(x.transaction_id for x in self.live) if self.force_active and self.charger_online else ()

    @property
    def sends_unlock(self) -> bool:
        return self.charger_online and not self.kept

    @property
    def changes_anything(self) -> bool:
        return bool(self.sessions or self.transactions or self.reservations or self.status_reset_from)


def _ago(now: datetime, then: datetime) -> str:
    return f"{max(0, int((now - then).total_seconds()))} s ago"


def live_evidence(tx: TransactionRow, live: LiveStatus, *, now: datetime, window: timedelta) -> str | None:
    """Why this open transaction is still delivering energy, in words; None when nothing says so."""
    if not tx.open or window <= timedelta(0):
        return None
    if (
        live.charger_online
        and live.status in CHARGING_STOPPED
        and live.reported_at is not None
        and (tx.meter_seen_at is None or live.reported_at >= tx.meter_seen_at)
    ):
        return None  # the charger has since said the charging stopped (Finishing, Available, ...)
    if tx.meter_seen_at is not None and now - tx.meter_seen_at <= window:
        delivered = max(0, (tx.latest_meter_wh or tx.meter_start) - tx.meter_start)
        return (
            f"still delivering energy: last meter sample {_ago(now, tx.meter_seen_at)}, "
            f"+{Decimal(delivered) / 1000:.2f} kWh since its start"
        )
    if (
        live.charger_online
        and live.status in LIVE_CHARGING
        and live.reported_at is not None
        and now - live.reported_at <= window
    ):
        return f"still delivering energy: the charger reported {live.status} {_ago(now, live.reported_at)}"
    return None


def session_end_settlement(
    session: SessionRow, tx: TransactionRow | None, *, fee_policy: str, reason: str = _FORCE_REASON
) -> tuple[billing.Settlement, str | None]:
    """What force-ending this session bills (its fee waived where `csms.core.fee_policy` says so), and why waived."""
    start = (
        (session.meter_start if session.meter_start is not None else tx.meter_start)
        if tx is not None
        else (session.meter_start or 0)
    )
    tariff = session.tariff if session.tariff is not None else Decimal(0)
    if tx is None:
        settlement = billing.settle(start, tariff)
    elif tx.open:
        settlement = billing.settle(start, tariff, latest_sample_wh=tx.latest_meter_wh)
    else:
        settlement = billing.settle(start, tariff, meter_stop=tx.meter_stop)
    return apply_waiver(settlement, fee_policy, reason)


def plan_unlock(
    rows: ConnectorRows,
    live: LiveStatus,
    *,
    connector_id: int,
    now: datetime,
    evidence_window: timedelta,
    fee_policy: str,
    force_active: bool = False,
    station_says: Mapping[int, str] | None = None,
) -> UnlockPlan:
    """The unlock of one connector, step by step (see the module's docstring).

    `station_says`: what an OCPP 2.0.1 station answered GetTransactionStatus for an open transaction, in
    words, where that keeps it open (still ongoing; or ended with its messages still queued: its Ended is on
    the way with the real reading, CitrineOS #1053).
    """
    by_tx = {s.transaction_id: s.id for s in rows.sessions if s.transaction_id is not None}
    live_txs = []
    for tx in sorted(rows.transactions.values(), key=lambda t: t.id):
        words = (station_says or {}).get(tx.id) if tx.open else None
        words = words or live_evidence(tx, live, now=now, window=evidence_window)
        if words is not None:
            live_txs.append(LiveTransaction(tx.id, by_tx.get(tx.id), words))
    kept = set() if force_active else {x.transaction_id for x in live_txs}
    sessions = []
    for s in rows.sessions:
        if s.transaction_id in kept:
            continue
        its_tx = rows.transactions.get(s.transaction_id) if s.transaction_id is not None else None
        st, waived = session_end_settlement(s, its_tx, fee_policy=fee_policy)
        sessions.append(
            SessionEnd(
                s.id,
                s.status,
                s.id_tag,
                s.transaction_id,
                s.created_at,
                st.energy_wh,
                str(st.fee) if s.tariff is not None else "unreadable tariff",
                st.source.value,
                waived,
            )
        )
    transactions = []
    for tx in sorted(rows.transactions.values(), key=lambda t: t.id):
        if not tx.open or tx.id in kept:
            continue
        end, source = billing.choose_end_meter(
            tx.meter_start, latest_sample_wh=tx.latest_meter_wh, meter_stop=tx.meter_stop
        )
        transactions.append(TransactionClose(tx.id, tx.id_tag, tx.start_time, tx.meter_start, end, source.value))
    # A reservation that is charging ends with its session (captured, or kept open with it); the others are
    # cancelled, and their payments released.
    reservations = tuple(r for r in rows.reservations if r.status != "Charging")
    occupied = live.status in LIVE_OCCUPIED or bool(kept)
    reset_from = rows.stored_status if rows.stored_status not in (None, "Available") and not occupied else None
    return UnlockPlan(
        connector_id,
        live.charger_online,
        tuple(sessions),
        tuple(transactions),
        reservations,
        reset_from,
        tuple(live_txs),
        force_active,
    )
