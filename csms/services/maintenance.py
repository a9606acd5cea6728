"""The IO shell of maintenance: gather rows and live facts, ask `csms.core.maintenance`, apply, audit, count, log.

Runs once at start-up (before the OCPP server accepts connections), then every
`--maintenance-interval-seconds` in the server's nursery, on demand through
`POST /api/maintenance/run`, and from the CLI (`csms maintenance`) against the
database alone. Each action is applied in its own transaction and re-checks its
condition there, so a row that changed since it was selected is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import trio
from sqlalchemy import func, or_, select, union, update
from sqlalchemy.orm import Session

from csms import metrics
from csms.context import Context
from csms.core.linking import PENDING_STATUSES
from csms.core.maintenance import (
    AROUND_TRANSACTION_STATUSES,
    STALE_RESERVATION_STATUSES,
    TRANSACTION_STATUSES,
    Action,
    ActionKind,
    LiveChargePointRow,
    LiveConnectorRow,
    OpenTransactionRow,
    PendingStartRow,
    ReservationRow,
    SessionActivityRow,
    StatusRow,
    Thresholds,
    TransactionActivityRow,
    next_silent_ask,
    select_contradicted_statuses,
    select_expired_starts,
    select_idle_sessions,
    select_offline_charge_points,
    select_orphaned_transactions,
    select_quiet_transactions,
    select_releasable_statuses,
    select_silent_connectors,
    select_stale_reservations,
    select_stale_silent_statuses,
)
from csms.core.reservations import TERMINAL, ReservationStatus
from csms.core.times import as_utc
from csms.db import idempotency_store, meter_sample_store, webhook_outbox_store
from csms.db.cleanup_store import audit, force_end_session
from csms.db.database import Database, rowcount
from csms.db.models import ChargingSession, ConnectorStatus, PaymentReservation, Transaction
from csms.db.ocpp_store import ESTIMATED_REASONS, close_transaction_estimated, expire_start
from csms.db.reservation_store import move_reservation
from csms.ocpp.commands import ChargePointCommands201, commands_for
from csms.ocpp.registry import LiveChargePoint
from csms.services.sessions import commands_naming_transactions
from ocppj import OcppjError

__all__ = [
    "Snapshot",
    "load_snapshot",
    "plan_database_actions",
    "run_once",
    "run_offline",
    "maintenance_loop",
    "watch_silent_connectors",
]

log = logging.getLogger("csms.maintenance")
# Rules whose action is a TriggerMessage StatusNotification for one connector (`_ask_status`).
_PROBES = (
    ActionKind.PROBE_QUIET_TRANSACTION,
    ActionKind.PROBE_CONTRADICTED_STATUS,
    ActionKind.PROBE_STALE_SILENT_STATUS,
)
ACTOR = "system:maintenance"
_TERMINAL = tuple(s.value for s in TERMINAL)


@dataclass
class Snapshot:
    reservations: list[ReservationRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    open_transactions: list[OpenTransactionRow] = field(default_factory=list)
    sessions: list[SessionActivityRow] = field(default_factory=list)
    pending_starts: list[PendingStartRow] = field(default_factory=list)


def load_snapshot(s: Session) -> Snapshot:
    """Everything the database-side rules look at, in one read transaction."""
    snap = Snapshot()
    for r in s.scalars(select(PaymentReservation).where(PaymentReservation.status.not_in(_TERMINAL))):
        snap.reservations.append(
            ReservationRow(r.id, r.charge_point_id, r.connector_id, r.status, as_utc(r.updated_at))
        )
    status_at = {}
    for st in s.scalars(select(ConnectorStatus).where(ConnectorStatus.connector_id > 0)):
        snap.statuses.append(StatusRow(st.charge_point_id, st.connector_id, st.status, as_utc(st.updated_at)))
        status_at[(st.charge_point_id, st.connector_id)] = as_utc(st.updated_at)
    tx_activity = {}
    for t in s.scalars(select(Transaction).where(Transaction.stop_time.is_(None))):
        # Our clock only: when we stored it (opened_at; start_time is the charger's) and when we last
        # received a meter sample for it (meter_seen_at; latest_meter_at is the sample's own stamp).
        opened = as_utc(t.opened_at) or as_utc(t.start_time)
        snap.open_transactions.append(
            OpenTransactionRow(t.id, t.charge_point_id, t.connector_id, opened, as_utc(t.meter_seen_at))
        )
        tx_activity[t.id] = max(x for x in (opened, as_utc(t.meter_seen_at)) if x is not None)
    for cs in s.scalars(select(ChargingSession).where(ChargingSession.end_time.is_(None))):
        # Never the session's start_time: that is the charger's clock (a charger a day ahead would
        # look active until tomorrow).
        moments = [
            as_utc(cs.created_at),
            tx_activity.get(cs.transaction_id) if cs.transaction_id is not None else None,
            status_at.get((cs.charge_point_id, cs.connector_id)),
        ]
        snap.sessions.append(
            SessionActivityRow(cs.id, cs.charge_point_id, cs.connector_id, max(m for m in moments if m is not None))
        )
        if cs.transaction_id is None and cs.status in PENDING_STATUSES:
            snap.pending_starts.append(
                PendingStartRow(cs.id, cs.charge_point_id, cs.connector_id, cs.status, as_utc(cs.created_at))
            )
    return snap


def plan_database_actions(
    snap: Snapshot,
    th: Thresholds,
    now: datetime,
    live_connectors: dict[tuple[str, int], LiveConnectorRow] | None = None,
) -> list[Action]:
    """The rules that need only stored rows (plus live statuses for orphans, when running in the server)."""
    open_keys = {(t.charge_point_id, t.connector_id) for t in snap.open_transactions}
    reserved = {(r.charge_point_id, r.connector_id) for r in snap.reservations}
    actions = select_stale_reservations(snap.reservations, now=now, timeout=th.reservation_timeout)
    cancelled = {(a.charge_point_id, a.connector_id) for a in actions}
    actions += select_releasable_statuses(
        snap.statuses,
        now=now,
        release_after=th.status_release,
        open_tx_connectors=open_keys,
        reserved_connectors=reserved - cancelled,
    )
    if live_connectors is not None:
        actions += select_orphaned_transactions(snap.open_transactions, live_connectors, now=now, grace=th.orphan_grace)
    orphaned_tx = {a.subject for a in actions if a.kind is ActionKind.CLOSE_ORPHANED}
    expired = select_expired_starts(snap.pending_starts, now=now, timeout=th.start_timeout)
    idle = select_idle_sessions(snap.sessions, now=now, idle=th.session_idle)
    expiring = {a.subject for a in expired}
    return actions + expired + [a for a in idle if a.subject not in orphaned_tx and a.subject not in expiring]


# ------------------------------------------------------------- applying
def _apply_db_action(a: Action, now: datetime, th: Thresholds) -> Callable[[Session], bool]:
    """The unit of work for one database action; returns False when the row no longer qualifies."""

    def cancel_reservation(s: Session) -> bool:
        status = s.scalar(select(PaymentReservation.status).where(PaymentReservation.id == a.subject))
        done = status in STALE_RESERVATION_STATUSES and move_reservation(
            s, a.subject, ReservationStatus.CANCELLED, now
        )  # its payment cancel becomes due
        return _audited(s, done)

    def expire(s: Session) -> bool:
        assert th.start_timeout is not None
        return expire_start(s, a.subject, now=now, timeout=th.start_timeout, actor=ACTOR)

    def release_status(s: Session) -> bool:
        held = s.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(
                Transaction.charge_point_id == a.charge_point_id,
                Transaction.connector_id == a.connector_id,
                Transaction.stop_time.is_(None),
            )
        ) or s.scalar(
            select(func.count())
            .select_from(PaymentReservation)
            .where(
                PaymentReservation.charge_point_id == a.charge_point_id,
                PaymentReservation.connector_id == a.connector_id,
                PaymentReservation.status.not_in(_TERMINAL),
            )
        )
        if held:
            return False
        done = (
            rowcount(
                s.execute(
                    update(ConnectorStatus)
                    .where(
                        ConnectorStatus.charge_point_id == a.charge_point_id,
                        ConnectorStatus.connector_id == a.connector_id,
                        ConnectorStatus.status == a.subject,
                    )
                    .values(status="Available", updated_at=now)
                )
            )
            == 1
        )
        return _audited(s, done)

    def close_orphaned(s: Session) -> bool:
        tx = s.get(Transaction, int(a.subject))
        if tx is None or tx.stop_time is not None:
            return False
        close_transaction_estimated(s, tx, now=now, reason="Orphaned", settle_delay=th.settle_delay)
        return _audited(s, True)

    def end_idle(s: Session) -> bool:
        return (
            force_end_session(s, a.subject, now=now, reason="IdleTimeout", actor=ACTOR, settle_delay=th.settle_delay)
            is not None
        )

    def _audited(s: Session, done: bool) -> bool:
        if done:
            audit(
                s,
                actor=ACTOR,
                action=f"maintenance.{a.kind.value}",
                at=now,
                charge_point_id=a.charge_point_id,
                connector_id=a.connector_id,
                subject=a.subject,
                reason=a.reason,
            )
        return done

    return {
        ActionKind.CANCEL_RESERVATION: cancel_reservation,
        ActionKind.RELEASE_STATUS: release_status,
        ActionKind.CLOSE_ORPHANED: close_orphaned,
        ActionKind.END_IDLE_SESSION: end_idle,
        ActionKind.EXPIRE_START: expire,
    }[a.kind]


def _log(a: Action, *, applied: bool, dry_run: bool) -> None:
    what = "would" if dry_run else ("applied" if applied else "skipped")
    log.log(
        logging.INFO if applied or dry_run else logging.DEBUG,
        "maintenance.%s %s charge_point=%s connector=%s subject=%s reason=%r",
        a.kind.value,
        what,
        a.charge_point_id,
        a.connector_id,
        a.subject,
        a.reason,
    )
    if applied and not dry_run:
        metrics.MAINTENANCE_ACTIONS.labels(a.kind.value).inc()


def run_offline(db: Database, th: Thresholds, now: datetime, *, dry_run: bool) -> list[Action]:
    """The database-only rules, synchronously (start-up and `csms maintenance`)."""
    actions = plan_database_actions(db.run_sync(load_snapshot), th, now)
    for a in actions:
        applied = False if dry_run else db.run_sync(_apply_db_action(a, now, th))
        _log(a, applied=applied, dry_run=dry_run)
    return actions


def _live_rows(ctx: Context) -> tuple[list[LiveChargePointRow], dict[tuple[str, int], LiveConnectorRow]]:
    cps, connectors = [], {}
    for live in ctx.registry:
        cps.append(LiveChargePointRow(live.id, live.last_seen, live.heartbeat_interval, live.ping_failed))
        for c, st in live.connectors.items():
            connectors[(live.id, c)] = LiveConnectorRow(live.id, c, st.status, st.updated_at)
    return cps, connectors


def _elsewhere_connectors(ctx: Context) -> dict[tuple[str, int], LiveConnectorRow]:
    """Live statuses of the charge points other live nodes hold (empty outside a cluster)."""
    return {
        (cp.id, c): LiveConnectorRow(cp.id, c, st.status, st.updated_at)
        for cp in ctx.registry.all_live()
        if ctx.registry.local(cp.id) is None
        for c, st in cp.connectors.items()
    }


async def run_once(
    ctx: Context,
    *,
    dry_run: bool = False,
    nursery: trio.Nursery | None = None,
    cluster_duties: bool = True,
    still_ours: Callable[[], bool] | None = None,
) -> list[Action]:
    """Every rule against the database and the live registry; returns what was (or would be) done.

    Sockets of charge points found offline are closed in `nursery` when given
    (the periodic loop), so one half-open socket cannot stall the round.
    In a cluster every node judges and probes the sockets it holds (only it can ping, ask or close
    them); the database-wide rules (reservations, stored statuses, orphans, expired starts, idle
    sessions) run only with `cluster_duties`, and judge orphans on every node's live statuses, never
    taking "not connected here" for "not connected". `still_ours()` is asked before each database action:
    a duty holder that froze mid-pass (and may have lost the duties meanwhile) applies nothing it planned
    on data that old; another node plans afresh.
    """
    th = Thresholds.from_settings(ctx.settings)
    now = ctx.clock.now()
    snap = await ctx.db.read(load_snapshot)
    # Who owns each open transaction, as the database says (new ones are added at StartTransaction).
    ctx.transaction_owners = {t.transaction_id: t.charge_point_id for t in snap.open_transactions}
    seen_live = {live.id: live for live in ctx.registry}
    cps, live_connectors = _live_rows(ctx)
    actions = select_offline_charge_points(cps, now=now, factor=th.heartbeat_timeout_factor)
    offline = {a.charge_point_id for a in actions}
    live_connectors = {k: v for k, v in live_connectors.items() if k[0] not in offline}
    if cluster_duties:
        actions += plan_database_actions(snap, th, now, {**_elsewhere_connectors(ctx), **live_connectors})
    closing = {a.subject for a in actions if a.kind is ActionKind.CLOSE_ORPHANED}
    online = {cp_id for cp_id in seen_live if cp_id not in offline}
    open_ids = {t.transaction_id for t in snap.open_transactions}
    for live in seen_live.values():  # forget probes of transactions that have closed since
        for tx in [tx for tx in live.quiet_probes if tx not in open_ids]:
            del live.quiet_probes[tx]
    probed = {tx: at for live in seen_live.values() for tx, at in live.quiet_probes.items()}
    actions += select_quiet_transactions(
        (r for r in _activity_rows(snap, seen_live) if str(r.transaction_id) not in closing),
        now=now,
        quiet=th.quiet_transaction,
        online=online,
        probed=probed,
    )
    actions += await _contradicted_statuses(ctx, snap, th, now, live_connectors, online, seen_live)
    contradicted = {
        (a.charge_point_id, a.connector_id) for a in actions if a.kind is ActionKind.PROBE_CONTRADICTED_STATUS
    }
    actions += [
        a
        for a in _stale_silent_statuses(snap, th, now, live_connectors, online, seen_live)
        if (a.charge_point_id, a.connector_id) not in contradicted
    ]  # one ask per connector and round
    probes: list[tuple[LiveChargePoint, Action]] = []
    abandoned = False
    for a in actions:
        applied = False
        if not dry_run:
            if a.kind is ActionKind.MARK_OFFLINE:
                applied = await _mark_offline(ctx, a, seen_live[a.charge_point_id], nursery)
            elif a.kind in _PROBES:
                live = seen_live[a.charge_point_id]
                applied = ctx.registry.local(a.charge_point_id) is live  # not replaced or dropped meanwhile
                if applied:
                    if a.kind is ActionKind.PROBE_QUIET_TRANSACTION:
                        live.quiet_probes[int(a.subject)] = now
                    elif a.kind is ActionKind.PROBE_CONTRADICTED_STATUS:
                        assert a.connector_id is not None  # a status probe names its connector
                        live.status_probes[a.connector_id] = now
                    else:
                        assert a.connector_id is not None  # a status probe names its connector
                        live.silent_asks[a.connector_id] = next_silent_ask(
                            live.silent_asks.get(a.connector_id), a.subject, now
                        )
                    probes.append((live, a))
            elif still_ours is None or still_ours():
                applied = await ctx.db.write(_apply_db_action(a, now, th))
            elif not abandoned:
                abandoned = True
                log.warning(
                    "maintenance.pass_abandoned (the duties were lost, or this pass outlived %.0f s: "
                    "what it planned is left to the next pass, on fresh data)",
                    FRESH_PASS_SECONDS,
                )
        _log(a, applied=applied, dry_run=dry_run)
    if not dry_run and any(a.kind in (ActionKind.CANCEL_RESERVATION, ActionKind.EXPIRE_START) for a in actions):
        ctx.nudge_payment_cancels()  # reservations that ended before charging: their payments go back
    if nursery is not None:
        for live, a in probes:
            nursery.start_soon(_ask_status, ctx, live, a)
    elif probes:
        async with trio.open_nursery() as inline:
            for live, a in probes:
                inline.start_soon(_ask_status, ctx, live, a)
    return actions


def _newest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


def _activity_rows(snap: Snapshot, live_by_id: dict[str, LiveChargePoint]) -> list[TransactionActivityRow]:
    """When each open transaction's connector was last heard from: stored rows and the live registry."""
    stored_status = {(r.charge_point_id, r.connector_id): r.updated_at for r in snap.statuses}
    rows = []
    for t in snap.open_transactions:
        live = live_by_id.get(t.charge_point_id)
        live_status = None if live is None else live.connectors.get(t.connector_id)
        rows.append(
            TransactionActivityRow(
                t.transaction_id,
                t.charge_point_id,
                t.connector_id,
                t.opened_at,
                meter_at=_newest(t.latest_meter_at, None if live is None else live.meter_seen.get(t.connector_id)),
                status_at=_newest(
                    stored_status.get((t.charge_point_id, t.connector_id)),
                    None if live_status is None else live_status.updated_at,
                ),
            )
        )
    return rows


async def _contradicted_statuses(
    ctx: Context,
    snap: Snapshot,
    th: Thresholds,
    now: datetime,
    live_connectors: dict[tuple[str, int], LiveConnectorRow],
    online: set[str],
    live_by_id: dict[str, LiveChargePoint],
) -> list[Action]:
    """Live transaction statuses on connectors with no open transaction, due for a TriggerMessage.

    A transaction's close counts from when we learned of it: a StopTransaction's arrival (the
    live registry; its timestamp is the charger's clock, which may be hours off), or the stored
    stop time of a transaction we closed ourselves (unlock, idle timeout), which is our clock.
    """
    open_keys = {(t.charge_point_id, t.connector_id) for t in snap.open_transactions}
    suspects = {
        r.charge_point_id
        for k, r in live_connectors.items()
        if r.status in TRANSACTION_STATUSES | AROUND_TRANSACTION_STATUSES
        and k not in open_keys
        and r.charge_point_id in online
    }
    if th.status_grace is None or not suspects:
        return []
    forced = await ctx.db.read(partial(_newest_forced_closes, suspects))
    closed_at, asked = {}, {}
    for cp_id in suspects:
        live = live_by_id[cp_id]
        for c, at in live.stops_seen.items():
            closed_at[(cp_id, c)] = at
        for c, at in live.status_probes.items():
            asked[(cp_id, c)] = at
    for key, at in forced.items():
        closed_at[key] = max(closed_at.get(key, at), at)
    return select_contradicted_statuses(
        live_connectors.values(),
        now=now,
        grace=th.status_grace,
        online=online,
        open_tx_connectors=open_keys,
        closed_at=closed_at,
        asked=asked,
    )


def _stale_silent_statuses(
    snap: Snapshot,
    th: Thresholds,
    now: datetime,
    live_connectors: dict[tuple[str, int], LiveConnectorRow],
    online: set[str],
    live_by_id: dict[str, LiveChargePoint],
) -> list[Action]:
    """Non-Available live statuses of connectors that only ever answered our triggers, due for another ask."""
    silent = {(cp_id, c) for cp_id, live in live_by_id.items() for c in live.connectors if c not in live.self_reported}
    asked = {(cp_id, c): ask for cp_id, live in live_by_id.items() for c, ask in live.silent_asks.items()}
    stops = {(cp_id, c): at for cp_id, live in live_by_id.items() for c, at in live.stops_seen.items()}
    return select_stale_silent_statuses(
        live_connectors.values(),
        now=now,
        grace=th.status_grace,
        online=online,
        silent=silent,
        open_tx_connectors={(t.charge_point_id, t.connector_id) for t in snap.open_transactions},
        closed_at=stops,
        asked=asked,
    )


def _newest_forced_closes(cp_ids: set[str], s: Session) -> dict[tuple[str, int], datetime]:
    """Per connector of these charge points: when we last closed a transaction ourselves (no StopTransaction)."""
    rows = s.execute(
        select(Transaction.charge_point_id, Transaction.connector_id, func.max(Transaction.stop_time))
        .where(
            Transaction.charge_point_id.in_(sorted(cp_ids)),
            Transaction.stop_reason.in_(sorted(ESTIMATED_REASONS)),
            Transaction.stop_time.is_not(None),
        )
        .group_by(Transaction.charge_point_id, Transaction.connector_id)
    )
    # `at is not None` always holds (the MAX of non-NULL stop times); it tells the type checker so.
    return {(cp_id, c): as_utc(at) for cp_id, c, at in rows if at is not None}


async def _trigger_status(ctx: Context, live: LiveChargePoint, connector_id: int | None) -> str:
    """TriggerMessage StatusNotification: the answer's status, or the error. The status the charger sends
    for it is recorded as asked for, not as the connector's own report (`LiveChargePoint.asking_status`)."""
    # Short: a charger that ignores triggers must not hold its connection (and a user's start) for long.
    commands = commands_for(live, timeout=min(10.0, ctx.settings.call_timeout_seconds))
    with live.asking_status(connector_id, ctx.clock.now):
        try:
            return await commands.trigger("StatusNotification", connector_id)
        except OcppjError as exc:
            return f"error: {exc}"


async def _station_says_ended(ctx: Context, live: LiveChargePoint, a: Action) -> bool:
    """A quiet transaction of an OCPP 2.0.1 station: ask the station itself (GetTransactionStatus). Over, with
    nothing of it queued, it is closed here (Orphaned, estimated): its Ended was lost. This also heals what no
    status can: a transaction whose events never named an EVSE on a station that has several."""
    commands = await commands_naming_transactions(ctx, live, timeout=min(10.0, ctx.settings.call_timeout_seconds))
    tx_id = int(a.subject)
    if not isinstance(commands, ChargePointCommands201) or tx_id not in commands.live.station_tx:
        return False
    try:
        ongoing, queued = await commands.transaction_status(tx_id)
    except OcppjError:
        return False
    if ongoing is not False or queued:
        return False  # running (or it would not say), or its Ended is on the way
    # The orphan rule's own close (estimated, audited), for the station's word instead of an Available.
    close = Action(
        ActionKind.CLOSE_ORPHANED,
        a.charge_point_id,
        a.connector_id,
        a.subject,
        "the station says this transaction is over and holds nothing of it (GetTransactionStatus)",
    )
    closed = bool(await ctx.db.write(_apply_db_action(close, ctx.clock.now(), Thresholds.from_settings(ctx.settings))))
    log.warning(
        "maintenance.%s charge_point=%s transaction=%s closed=%s (GetTransactionStatus: not ongoing, nothing queued)",
        a.kind.value,
        a.charge_point_id,
        tx_id,
        closed,
    )
    return closed


async def _ask_status(ctx: Context, live: LiveChargePoint, a: Action) -> None:
    """TriggerMessage StatusNotification for a probed connector; the answer is logged and audited. A quiet
    transaction of a 2.0.1 station is asked about first, of the station itself."""
    if a.kind is ActionKind.PROBE_QUIET_TRANSACTION and await _station_says_ended(ctx, live, a):
        return
    answer = await _trigger_status(ctx, live, a.connector_id)
    log.info(
        "maintenance.%s answer=%s charge_point=%s connector=%s subject=%s",
        a.kind.value,
        answer,
        a.charge_point_id,
        a.connector_id,
        a.subject,
    )
    ctx.db.submit(
        lambda s: audit(
            s,
            actor=ACTOR,
            action=f"maintenance.{a.kind.value}",
            at=ctx.clock.now(),
            charge_point_id=a.charge_point_id,
            connector_id=a.connector_id,
            subject=a.subject,
            reason=a.reason,
            answer=answer,
        )
    )


async def _mark_offline(ctx: Context, a: Action, live: LiveChargePoint, nursery: trio.Nursery | None) -> bool:
    """Drop exactly the connection that was judged (a reconnect since then is left alone)."""
    if not ctx.registry.detach(live):
        return False
    log.warning(
        "charge_point.offline charge_point=%s reason=%r (live statuses dropped; occupancy falls back to stored status)",
        a.charge_point_id,
        a.reason,
    )
    metrics.CONNECTED.set(len(ctx.registry))
    if nursery is not None:
        nursery.start_soon(_close_quietly, live)
    else:
        await _close_quietly(live)
    ctx.db.submit(
        lambda s: audit(
            s,
            actor=ACTOR,
            action="maintenance.mark_offline",
            at=ctx.clock.now(),
            charge_point_id=a.charge_point_id,
            reason=a.reason,
        )
    )
    return True


async def _close_quietly(live: LiveChargePoint) -> None:
    with trio.move_on_after(5):
        await live.connection.ws.aclose(1001, "offline: no heartbeat or no pong")


def _seen_by_pong(live: LiveChargePoint, now: datetime) -> None:
    """A pong to our ping is a sign of life (OCPP-J lets a charger keep its connection with pings alone)."""
    live.last_seen = now


async def _ping_silent(ctx: Context, nursery: trio.Nursery) -> None:
    """Ping charge points silent for longer than their heartbeat interval; no pong marks them.

    A pong is hearing from the charger: OCPP-J lets it keep the connection alive with
    WebSocket pings and pongs alone, without a single Heartbeat.
    """
    now = ctx.clock.now()

    async def probe(live: LiveChargePoint) -> None:
        with trio.move_on_after(max(5.0, ctx.settings.call_timeout_seconds / 3)) as scope:
            try:
                await live.connection.ws.ping()
            except Exception:
                live.ping_failed = True
                return
        if scope.cancelled_caught:
            live.ping_failed = True
        else:
            _seen_by_pong(live, ctx.clock.now())

    for live in ctx.registry:
        if (now - live.last_seen).total_seconds() > live.heartbeat_interval:
            nursery.start_soon(probe, live)


async def maintenance_loop(
    ctx: Context,
    duties_held: Callable[[], bool] = lambda: True,
    *,
    clustered: bool = False,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every rule every interval until cancelled; a failing round is logged and the next one runs.
    In a cluster the database-wide rules run only while `duties_held()` (the node holding the duties lock)."""
    interval = ctx.settings.maintenance_interval_seconds
    task_status.started()
    if interval <= 0:
        await trio.sleep_forever()
    next_prune = ctx.clock.now()
    async with trio.open_nursery() as probes:
        while True:
            await trio.sleep(interval)
            began = trio.current_time()

            def still_ours(began: float = began) -> bool:
                return duties_held() and trio.current_time() - began < FRESH_PASS_SECONDS

            try:
                await run_once(
                    ctx, nursery=probes, cluster_duties=duties_held(), still_ours=still_ours if clustered else None
                )
            except Exception as exc:
                ctx.db.log_failure(exc, "maintenance", log, "maintenance.round_failed (will retry next interval)")
            await _ping_silent(ctx, probes)
            if duties_held() and ctx.clock.now() >= next_prune:
                next_prune = ctx.clock.now() + _PRUNE_EVERY
                await prune_meter_samples(ctx)
                await prune_idempotency_keys(ctx)


_PRUNE_EVERY = timedelta(hours=1)
# A cluster pass applies database actions only this long after it began: a duty holder frozen longer may
# have lost the duties (a hung holder's lock passes after 10 s), and its plan is stale either way.
FRESH_PASS_SECONDS = 5.0
_KEYS_KEPT = timedelta(days=1)  # a client retries a command within minutes, not days
_PRUNE_ROUNDS = 20  # batches of 500 transactions' samples per hourly round: a backlog is worked off, not at once


async def prune_idempotency_keys(ctx: Context) -> int:
    """Delete the REST commands' Idempotency-Keys older than a day (csms.api.idempotency), and the webhook
    outbox's settled rows (delivered, failed, dropped) as old."""
    cutoff = ctx.clock.now() - _KEYS_KEPT
    try:
        deleted = await ctx.db.write(lambda s: idempotency_store.prune(s, cutoff))
        deleted += await ctx.db.write(lambda s: webhook_outbox_store.prune(s, cutoff))
    except Exception as exc:
        ctx.db.log_failure(exc, "maintenance", log, "maintenance.idempotency_keys_prune_failed (will retry next hour)")
        return 0
    if deleted:
        log.info("maintenance.idempotency_keys_pruned rows=%d created_before=%s", deleted, cutoff.isoformat())
    return deleted


async def prune_meter_samples(ctx: Context) -> int:
    """Delete the chart samples of transactions closed more than --meter-sample-days ago (0: keep them)."""
    days = ctx.settings.meter_sample_days
    if days <= 0:
        return 0
    cutoff, deleted = ctx.clock.now() - timedelta(days=days), 0
    try:
        for _ in range(_PRUNE_ROUNDS):
            rows = await ctx.db.write(lambda s: meter_sample_store.prune_samples(s, cutoff))
            deleted += rows
            if rows == 0:
                break
    except Exception as exc:
        ctx.db.log_failure(exc, "maintenance", log, "maintenance.meter_samples_prune_failed (will retry next hour)")
    if deleted:
        log.info("maintenance.meter_samples_pruned rows=%d closed_before=%s", deleted, cutoff.isoformat())
    return deleted


def _expected_connectors(cp_id: str) -> Callable[[Session], set[int]]:
    """The connectors the database knows of for a charge point: stored statuses, transactions (a connector that
    never reported a status but has charged before exists: it may be charging now), reservations."""

    def expected(s: Session) -> set[int]:
        query = union(
            select(ConnectorStatus.connector_id).where(
                ConnectorStatus.charge_point_id == cp_id, ConnectorStatus.connector_id > 0
            ),
            select(Transaction.connector_id).where(
                Transaction.charge_point_id == cp_id,
                or_(Transaction.connector_id > 0, Transaction.stop_time.is_(None)),
            ),
            select(PaymentReservation.connector_id).where(
                PaymentReservation.charge_point_id == cp_id, PaymentReservation.status.not_in(_TERMINAL)
            ),
        )
        return set(s.execute(query).scalars())

    return expected


async def probe_after_reconnect(ctx: Context, live: LiveChargePoint) -> None:
    """A known charger on a new connection: ask every connector's status at once, so the reconnect settle
    window (csms.core.occupancy) ends as soon as it answers instead of after --reconnect-settle-seconds."""
    if ctx.settings.reconnect_settle_seconds <= 0 or ctx.settings.status_grace_seconds <= 0:
        return
    try:
        known = await ctx.db.read(_expected_connectors(live.id))
    except Exception as exc:
        ctx.db.log_failure(
            exc,
            "reconnect probe",
            log,
            "maintenance.reconnect_probe_failed charge_point=%s (the settle window runs its course)",
            live.id,
        )
        return
    # One connector at a time (a charger may not take a TriggerMessage without connectorId); the silent-connector
    # watch later asks only those still silent and not asked here. None known: a new charger, nothing to replay.
    ask = sorted(c for c in known if c not in live.connectors)
    live.triggered.update(ask)  # all at once, so the silent-connector watch does not ask them again meanwhile

    answers: list[str] = []

    async def probe(connector_id: int) -> None:
        answer = await _trigger_status(ctx, live, connector_id)
        answers.append(answer)
        log.info(
            "maintenance.trigger_status charge_point=%s connector=%s answer=%s reason=%r",
            live.id,
            connector_id,
            answer,
            "reconnected: what is this connector doing now?",
        )

    async with trio.open_nursery() as nursery:
        for connector_id in ask:
            nursery.start_soon(probe, connector_id)
    # Only a charger that said it will report ends the window early; one that refused (TriggerMessage is the
    # optional RemoteTrigger profile) may still be replaying what it queued: the whole window runs.
    if all(a == "Accepted" for a in answers):
        live.reconnect_probe_answered = ctx.clock.now()


async def watch_silent_connectors(ctx: Context, live: LiveChargePoint) -> None:
    """Once per connection: after the grace period, trigger StatusNotification for connectors that said nothing."""
    grace = ctx.settings.status_grace_seconds
    if grace <= 0:
        return
    await trio.sleep(grace)
    try:
        known = await ctx.db.read(_expected_connectors(live.id))
    except Exception as exc:
        ctx.db.log_failure(
            exc, "silent check", log, "maintenance.silent_check_failed charge_point=%s (no trigger this time)", live.id
        )
        return
    actions = select_silent_connectors(
        live.id, expected=known, reported=set(live.connectors), already_triggered=live.triggered
    )
    for a in actions:
        live.triggered.add(a.connector_id or 0)
        answer = await _trigger_status(ctx, live, a.connector_id)
        log.info(
            "maintenance.trigger_status charge_point=%s connector=%s answer=%s reason=%r",
            live.id,
            a.connector_id,
            answer,
            a.reason,
        )
        metrics.MAINTENANCE_ACTIONS.labels(a.kind.value).inc()

        def record(s: Session, a: Action = a, answer: str = answer) -> None:
            audit(
                s,
                actor=ACTOR,
                action="maintenance.trigger_status",
                at=ctx.clock.now(),
                charge_point_id=live.id,
                connector_id=a.connector_id,
                reason=a.reason,
                answer=answer,
            )

        ctx.db.submit(record)
