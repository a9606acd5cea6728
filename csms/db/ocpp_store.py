"""What the OCPP handlers write: boots, statuses, transactions, meter samples.

Synchronous functions over a Session, one unit of work each, returning plain
values; the handlers hand them to `Database.write/submit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Executable,
    Table,
    bindparam,
    case,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from csms.core import billing, linking
from csms.core.fee_policy import apply_waiver
from csms.core.reservations import ACTIVE, ReservationStatus
from csms.core.times import as_utc
from csms.core.times import stop_time as trusted_stop_time
from csms.db.audit import audit
from csms.db.database import BulkWrite, rowcount
from csms.db.hotpath import HotSql, hot_sql_for
from csms.db.meter_sample_store import KIND as SAMPLE_KIND
from csms.db.meter_sample_store import sample_statement
from csms.db.models import (
    Base,
    ChargePoint,
    ChargingSession,
    ConnectorStatus,
    PaymentReservation,
    Station,
    Transaction,
    UtcDateTime,
)
from csms.db.reservation_store import move_reservation, reprice_capture
from csms.db.session_end import ESTIMATED_REASONS, end_session

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

__all__ = [
    "BULK_STATEMENTS",
    "record_boot",
    "touch_seen",
    "upsert_status",
    "start_transaction",
    "record_meter_sample",
    "apply_meter_sample",
    "stop_transaction",
    "StartResult",
    "StopResult",
    "close_transaction_estimated",
    "close_transaction_invalid_stop",
    "billing_start",
    "expire_start",
    "ESTIMATED_REASONS",
]

ACTOR = "system:ocpp"


def record_boot(
    s: Session,
    cp_id: str,
    *,
    vendor: str | None,
    model: str | None,
    serial: str | None,
    firmware: str | None,
    now: datetime,
    register: bool,
    version: str = "1.6",
) -> bool:
    """Store boot details (and the OCPP version it spoke); with `register`, a first boot creates the charge
    point and its station.

    Returns True when the charge point was registered just now.
    """
    cp = s.get(ChargePoint, cp_id)
    created = False
    if cp is None:
        if not register:
            return False
        cp = ChargePoint(id=cp_id, registered_at=now)
        s.add(cp)
        created = True
        if s.get(Station, cp_id) is None:
            s.add(Station(id=cp_id, charge_point_id=cp_id, active=True, created_at=now))
    cp.vendor, cp.model, cp.serial_number, cp.firmware_version = vendor, model, serial, firmware
    cp.last_boot_at = now
    cp.last_seen_at = now
    cp.ocpp_version = version
    return created


def touch_seen(cp_id: str, now: datetime) -> BulkWrite:
    return BulkWrite("seen", {"b_id": cp_id, "b_at": now})


def upsert_status(cp_id: str, connector_id: int, status: str, error_code: str | None, at: datetime) -> BulkWrite:
    return BulkWrite(
        "status",
        {
            "charge_point_id": cp_id,
            "connector_id": connector_id,
            "status": status,
            "error_code": error_code,
            "updated_at": at,
        },
    )


def _table(model: type[Base]) -> Table:
    """A model's Table (the declarative base types `__table__` as any FromClause)."""
    table = model.__table__
    assert isinstance(table, Table), table
    return table


def _seen_statement(_dialect: str) -> Executable:
    t = _table(ChargePoint)
    return update(t).where(t.c.id == bindparam("b_id")).values(last_seen_at=bindparam("b_at"))


def _meter_statement(_dialect: str) -> Executable:
    """Keep the sample with the latest *sample* timestamp (a buffered older one arriving later loses);
    note when we received it either way (the quiet and idle rules run on our clock)."""
    t = _table(Transaction)
    at = bindparam("b_at", type_=UtcDateTime)
    newer = or_(t.c.latest_meter_at.is_(None), t.c.latest_meter_at <= at)
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.charge_point_id == bindparam("b_cp"), t.c.stop_time.is_(None))
        .values(
            latest_meter_wh=case((newer, bindparam("b_wh", type_=BigInteger)), else_=t.c.latest_meter_wh),
            latest_meter_at=case((newer, at), else_=t.c.latest_meter_at),
            meter_seen_at=bindparam("b_seen", type_=UtcDateTime),
        )
    )


def _status_statement(dialect: str) -> Executable:
    t = _table(ConnectorStatus)
    ins: PostgresqlInsert | SqliteInsert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        ins = postgresql_insert(t)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ins = sqlite_insert(t)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"no status upsert for {dialect}")
    return ins.on_conflict_do_update(
        index_elements=[t.c.charge_point_id, t.c.connector_id],
        set_={
            "status": ins.excluded.status,
            "error_code": ins.excluded.error_code,
            "updated_at": ins.excluded.updated_at,
        },
    )


# The many small "latest value" writes, each kind one executemany per commit.
BULK_STATEMENTS = {
    "status": _status_statement,
    "meter": _meter_statement,
    "seen": _seen_statement,
    SAMPLE_KIND: sample_statement,  # kept samples for the console's charts (csms.db.meter_sample_store)
}


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    session_id: str | None
    superseded: tuple[int, ...]
    repeated: bool = False
    revived: bool = False  # the session had ended (start timed out or expired) and bills this transaction now
    carried: bool = False  # the session came over from a superseded transaction of the same tag
    review: str | None = None


def start_transaction(
    s: Session,
    cp_id: str,
    connector_id: int,
    id_tag: str,
    meter_start: int,
    start_time: datetime,
    now: datetime,
    *,
    revive_within: timedelta | None = None,
    settle_delay: timedelta = timedelta(0),
) -> StartResult:
    """Open a transaction and link it to the charging session it bills to (see `csms.core.linking`).

    Older transactions still open on the same connector are closed as `Superseded`: a
    connector runs one transaction at a time, so their StopTransaction was lost. One of the
    same tag hands its session over instead (the charger rebuilt and resent its start).
    Plain SQL on the hot path; the ORM only for the rare cases.
    """
    hot = hot_sql_for(s)
    cur = hot.cursor(s)
    t_start, t_now = hot.time(start_time), hot.time(now)
    open_rows = hot.run(cur, "open_on_connector", {"cp": cp_id, "conn": connector_id}).fetchall()
    for tx_id, tag, meter, started in open_rows:
        if (tag, meter, started) == (id_tag, meter_start, t_start):
            # The same StartTransaction again (its answer was lost): answer it again, change nothing.
            return StartResult(tx_id, None, (), repeated=True)
    open_ids = sorted(row[0] for row in open_rows)
    carried: ChargingSession | None = None
    for old_id in reversed(open_ids):  # newest first: it is the one a rebuilt start repeats
        old = s.get(Transaction, old_id)
        assert old is not None, old_id  # just read as open on this connector, in this database transaction
        carry = None
        if carried is None and old.id_tag == id_tag:
            session = _session_for(s, old_id)
            if session is not None and session.end_time is None:
                carried = carry = session
        # Every other superseded transaction's session ends here, billed from its last sample.
        close_transaction_estimated(
            s, old, now=now, reason="Superseded", with_session=carry is None, settle_delay=settle_delay
        )
    if open_ids:
        s.flush()
        cur = hot.cursor(s)
    tx_id = hot.insert_transaction(
        cur, {"cp": cp_id, "conn": connector_id, "tag": id_tag, "meter": meter_start, "start": t_start, "now": t_now}
    )
    superseded = tuple(open_ids)
    if carried is not None:
        return _carry_over(s, carried, tx_id, meter_start, superseded, now)
    since = now - revive_within if revive_within is not None else now
    rows = hot.run(
        cur, "link_candidates", {"cp": cp_id, "conn": connector_id, "tag": id_tag, "since": hot.time(since)}
    ).fetchall()
    candidates = [
        linking.SessionCandidate(sid, status, _stored_time(hot, created), hot.from_time(ended), reason)
        for sid, status, created, ended, reason, _res in rows
    ]
    last = None
    if any(not c.pending for c in candidates):  # only a revival needs it
        last = hot.from_time(
            hot.run(cur, "last_opened", {"cp": cp_id, "conn": connector_id, "tag": id_tag, "tx": tx_id}).fetchone()[0]
        )
    link = linking.pick_session(candidates, now=now, revive_within=revive_within, last_transaction_at=last)
    if link is None:
        return StartResult(tx_id, None, superseded)
    if link.revived:
        return _revive(s, link.session_id, tx_id, meter_start, start_time, superseded, now)
    hot.run(
        cur, "link_session", {"id": link.session_id, "tx": tx_id, "start": t_start, "meter": meter_start, "now": t_now}
    )
    reservation_id = next(r[5] for r in rows if r[0] == link.session_id)
    if reservation_id:
        hot.run(
            cur, "set_reservation", {"id": reservation_id, "status": ReservationStatus.CHARGING.value, "now": t_now}
        )
    return StartResult(tx_id, link.session_id, superseded)


def _carry_over(
    s: Session, session: ChargingSession, tx_id: int, meter_start: int, superseded: tuple[int, ...], now: datetime
) -> StartResult:
    """The superseded transaction of the same tag hands its open session to the new one."""
    old_tx = session.transaction_id
    start, review = linking.carried_meter_start(session.meter_start, meter_start)
    session.transaction_id, session.meter_start, session.updated_at = tx_id, start, now
    if review is not None:
        session.review_reason = review
    audit(
        s,
        actor=ACTOR,
        action="session.carried_over",
        at=now,
        charge_point_id=session.charge_point_id,
        connector_id=session.connector_id,
        subject=session.id,
        from_transaction=old_tx,
        to_transaction=tx_id,
        meter_start=start,
        review=review,
    )
    return StartResult(tx_id, session.id, superseded, carried=True, review=review)


def _revive(
    s: Session,
    session_id: str,
    tx_id: int,
    meter_start: int,
    start_time: datetime,
    superseded: tuple[int, ...],
    now: datetime,
) -> StartResult:
    """A session that ended only because we stopped waiting for its start bills the transaction after all."""
    session = s.get(ChargingSession, session_id)
    assert session is not None, session_id  # a link candidate read in this database transaction
    ended = (session.end_reason, session.end_time)
    session.transaction_id, session.status, session.start_time, session.meter_start = (
        tx_id,
        "Charging",
        start_time,
        meter_start,
    )
    session.end_time = session.end_meter_wh = session.energy_wh = session.fee = session.meter_source = None
    session.end_reason, session.updated_at = None, now
    review = None
    if session.reservation_id:
        res = s.get(PaymentReservation, session.reservation_id)
        if res is not None and res.status in {a.value for a in ACTIVE}:
            move_reservation(s, res.id, ReservationStatus.CHARGING, now)
        elif res is not None:
            review = (
                f"revived after its payment reservation {res.id} ended {res.status} (payment cancelled): "
                "charge it by hand"
            )
            session.review_reason = review
    audit(
        s,
        actor=ACTOR,
        action="session.revived",
        at=now,
        charge_point_id=session.charge_point_id,
        connector_id=session.connector_id,
        subject=session_id,
        transaction_id=tx_id,
        ended_reason=ended[0],
        ended_at=None if ended[1] is None else as_utc(ended[1]).isoformat(),
        review=review,
    )
    return StartResult(tx_id, session_id, superseded, revived=True, review=review)


def expire_start(s: Session, session_id: str, *, now: datetime, timeout: timedelta, actor: str) -> bool:
    """End a session still waiting for its StartTransaction (`StartExpired`); False if it moved on meanwhile.

    Its reservation fails with it, and that reservation's payment cancel becomes due.
    """
    claimed = s.execute(
        update(ChargingSession)
        .where(
            ChargingSession.id == session_id,
            ChargingSession.end_time.is_(None),
            ChargingSession.transaction_id.is_(None),
            ChargingSession.status.in_(sorted(linking.PENDING_STATUSES)),
        )
        .values(
            status="Failed",
            end_time=now,
            end_reason=linking.START_EXPIRED,
            updated_at=now,
            failure_reason=f"no StartTransaction within {int(timeout.total_seconds())} s of the remote start",
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(claimed) != 1:
        return False
    session = s.get(ChargingSession, session_id)
    assert session is not None, session_id  # the update above just claimed it
    s.refresh(session)
    if session.reservation_id:
        move_reservation(s, session.reservation_id, ReservationStatus.FAILED, now)
    audit(
        s,
        actor=actor,
        action="session.start_expired",
        at=now,
        charge_point_id=session.charge_point_id,
        connector_id=session.connector_id,
        subject=session_id,
        reservation_id=session.reservation_id,
    )
    return True


def record_meter_sample(cp_id: str, tx_id: int, wh: int, at: datetime, received: datetime) -> BulkWrite:
    """Keep the latest Energy.Active.Import.Register of an open transaction (of this charge point only).

    `at` is the sample's own timestamp (ordering), `received` when we got it (activity).
    """
    return BulkWrite("meter", {"b_id": tx_id, "b_cp": cp_id, "b_wh": wh, "b_at": at, "b_seen": received})


def apply_meter_sample(s: Session, cp_id: str, tx_id: int, wh: int, at: datetime, received: datetime) -> None:
    """`record_meter_sample` inside a unit of work of its own (a 2.0.1 TransactionEvent carries its samples)."""
    s.execute(_meter_statement(s.get_bind().dialect.name), record_meter_sample(cp_id, tx_id, wh, at, received).params)


@dataclass(frozen=True)
class StopResult:
    known: bool
    reconciled: bool
    session_id: str | None
    energy_wh: int | None = None
    fee: str | None = None
    connector_id: int | None = None  # of the transaction, when known
    review: str | None = None  # the bill contradicts a reading: why a person should look
    skewed: bool = False  # stamped before its transaction's start: stored with our receipt time


def stop_transaction(
    s: Session,
    tx_id: int,
    *,
    cp_id: str,
    meter_stop: int,
    stop_time: datetime | None,
    reason: str | None,
    now: datetime,
) -> StopResult:
    """Close a transaction and settle its session; a late stop of a force-ended one reconciles it.

    `stop_time` is the charger's stamp (None if it sent none we could read); see
    `csms.core.times.stop_time` for when it is overruled.
    """
    hot = hot_sql_for(s)
    cur = hot.cursor(s)
    row = hot.run(cur, "tx_for_stop", {"id": tx_id, "cp": cp_id}).fetchone()
    if row is None:
        return StopResult(known=False, reconciled=False, session_id=None)
    meter_start, already_stopped, connector_id, latest_wh, started = row
    if already_stopped is not None:
        return _late_stop(s, tx_id, meter_stop=meter_stop, stop_time=stop_time, reason=reason, now=now)
    reason = reason or "Local"
    ended, skewed = trusted_stop_time(stop_time, started=_stored_time(hot, started), received=now)
    closed = hot.run(cur, "close_tx", {"id": tx_id, "meter": meter_stop, "at": hot.time(ended), "reason": reason})
    if closed.rowcount == 0:  # closed meanwhile by another process (`csms maintenance`): reconcile its estimate
        return _late_stop(s, tx_id, meter_stop=meter_stop, stop_time=stop_time, reason=reason, now=now)
    if skewed:
        _audit_skew(
            s, cp_id, connector_id, tx_id, stamped=stop_time, started=hot.from_time(started), stored=ended, now=now
        )
    cs = hot.run(cur, "open_session_of_tx", {"tx": tx_id}).fetchone()
    if cs is None:
        return StopResult(known=True, reconciled=False, session_id=None, connector_id=connector_id, skewed=skewed)
    session_id, tariff, _reservation_id, session_start = cs
    start = meter_start if session_start is None else session_start
    st = billing.settle_stop(start, Decimal(tariff), meter_stop=meter_stop, latest_sample_wh=latest_wh)
    end_session(s, session_id, st, end_time=ended, reason=reason, now=now, actor=ACTOR)
    if st.review is not None:
        _audit_review(
            s,
            cp_id,
            connector_id,
            session_id,
            tx_id,
            st,
            meter_start=start,
            meter_stop=meter_stop,
            sampled=latest_wh,
            now=now,
        )
    return StopResult(True, False, session_id, st.energy_wh, str(st.fee), connector_id, st.review, skewed)


def _late_stop(
    s: Session, tx_id: int, *, meter_stop: int, stop_time: datetime | None, reason: str | None, now: datetime
) -> StopResult:
    """A StopTransaction for a transaction we already closed: reconcile an estimate, ignore a duplicate.

    The transaction takes the charger's figures as sent; the session takes them too unless
    meterStop contradicts the register sampled during the transaction (then it keeps the
    evidenced energy, flagged for review).
    """
    tx = s.get(Transaction, tx_id)
    assert tx is not None, tx_id  # stop_transaction found it in this database transaction
    session = _session_for(s, tx.id)
    if tx.stop_reason not in ESTIMATED_REASONS:
        return StopResult(
            known=True, reconciled=False, session_id=session.id if session else None, connector_id=tx.connector_id
        )
    ended, skewed = trusted_stop_time(stop_time, started=tx.start_time, received=now)
    if skewed:
        _audit_skew(
            s,
            tx.charge_point_id,
            tx.connector_id,
            tx.id,
            stamped=stop_time,
            started=tx.start_time,
            stored=ended,
            now=now,
        )
    tx.meter_stop, tx.stop_time, tx.stop_reason = meter_stop, ended, reason or "Local"
    if session is None:
        return StopResult(known=True, reconciled=True, session_id=None, connector_id=tx.connector_id, skewed=skewed)
    start = billing_start(session, tx)
    st = billing.settle_stop(start, session.tariff, meter_stop=meter_stop, latest_sample_wh=tx.latest_meter_wh)
    if session.end_time is None:  # the transaction was closed without ending its session: end it now
        end_session(s, session.id, st, end_time=ended, reason=tx.stop_reason, now=now, actor=ACTOR)
        return StopResult(True, True, session.id, st.energy_wh, str(st.fee), tx.connector_id, st.review, skewed)
    # The real figures replace our estimate; the session keeps why it was ended early.
    session.end_time = ended
    session.end_meter_wh, session.energy_wh, session.fee = st.end_meter_wh, st.energy_wh, st.fee
    if session.fee_waived_reason:
        session.fee = Decimal("0.00")  # the charger's figures replace the energy; the waiver stands
    session.meter_source = st.source.value
    session.reconciled = True
    session.updated_at = now
    if session.reservation_id:
        late = reprice_capture(s, session.reservation_id, session.fee, now)
        if late is not None:
            session.review_reason = late
    if st.review is not None:
        session.review_reason = st.review
        _audit_review(
            s,
            tx.charge_point_id,
            tx.connector_id,
            session.id,
            tx.id,
            st,
            meter_start=start,
            meter_stop=meter_stop,
            sampled=tx.latest_meter_wh,
            now=now,
        )
    audit(
        s,
        actor=ACTOR,
        action="session.reconciled",
        at=now,
        charge_point_id=tx.charge_point_id,
        connector_id=tx.connector_id,
        subject=session.id,
        transaction_id=tx.id,
        energy_wh=session.energy_wh,
        fee=str(session.fee),
        meter_source=session.meter_source,
        review=session.review_reason,
    )
    return StopResult(True, True, session.id, st.energy_wh, str(st.fee), tx.connector_id, st.review, skewed)


def _audit_review(
    s: Session,
    cp_id: str,
    connector_id: int,
    session_id: str,
    tx_id: int,
    st: billing.Settlement,
    *,
    meter_start: int,
    meter_stop: int,
    sampled: int | None,
    now: datetime,
) -> None:
    """Both readings, so a person can decide: the charger's meterStop and the register it sampled."""
    audit(
        s,
        actor=ACTOR,
        action="session.review",
        at=now,
        charge_point_id=cp_id,
        connector_id=connector_id,
        subject=session_id,
        transaction_id=tx_id,
        meter_start=meter_start,
        meter_stop=meter_stop,
        sampled_register_wh=sampled,
        billed_wh=st.energy_wh,
        fee=str(st.fee),
        reason=st.review,
    )


def _audit_skew(
    s: Session,
    cp_id: str,
    connector_id: int,
    tx_id: int,
    *,
    stamped: datetime | None,
    started: datetime | None,
    stored: datetime,
    now: datetime,
) -> None:
    audit(
        s,
        actor=ACTOR,
        action="transaction.clock_skew",
        at=now,
        charge_point_id=cp_id,
        connector_id=connector_id,
        subject=str(tx_id),
        stop_stamped=None if stamped is None else as_utc(stamped).isoformat(),
        start_stamped=None if started is None else as_utc(started).isoformat(),
        stop_stored=as_utc(stored).isoformat(),
        reason="StopTransaction stamped before its transaction's start: stored with the time we received it",
    )


def billing_start(session: ChargingSession, tx: Transaction) -> int:
    """The reading a session bills from: its own start (kept when carried over), else its transaction's."""
    return tx.meter_start if session.meter_start is None else session.meter_start


def close_transaction_estimated(
    s: Session,
    tx: Transaction,
    *,
    now: datetime,
    reason: str,
    with_session: bool = True,
    fee_policy: str = "charge",
    actor: str = ACTOR,
    settle_delay: timedelta = timedelta(0),
) -> billing.Settlement | None:
    """Close an open transaction whose StopTransaction never came, with the best meter estimate.

    Ends its charging session too (unless `with_session` is False: it is being carried over);
    returns the session's settlement (its fee waived where `csms.core.fee_policy` says so), if any.
    """
    assert reason in ESTIMATED_REASONS, reason
    end_wh, _source = billing.choose_end_meter(
        tx.meter_start, latest_sample_wh=tx.latest_meter_wh, meter_stop=tx.meter_stop
    )
    tx.meter_stop = end_wh
    tx.stop_time = now
    tx.stop_reason = reason
    session = _session_for(s, tx.id) if with_session else None
    if session is None or session.end_time is not None:
        return None
    settlement = billing.settle(billing_start(session, tx), session.tariff, latest_sample_wh=tx.latest_meter_wh)
    settlement, waived = apply_waiver(settlement, fee_policy, reason)
    if not end_session(
        s,
        session.id,
        settlement,
        end_time=now,
        reason=reason,
        now=now,
        actor=actor,
        fee_waived=waived,
        settle_delay=settle_delay,
    ):
        return None
    return settlement


def close_transaction_invalid_stop(
    s: Session, tx_id: int, *, cp_id: str, meter_stop: int, now: datetime, settle_delay: timedelta = timedelta(0)
) -> bool:
    """A StopTransaction whose meterStop no meter shows: close the transaction (and bill its session) with
    the last good reading instead, and audit the value. False if it is not this charge point's open one."""
    tx = s.get(Transaction, tx_id)
    if tx is None or tx.charge_point_id != cp_id or tx.stop_time is not None:
        return False
    settlement = close_transaction_estimated(s, tx, now=now, reason="InvalidMeterStop", settle_delay=settle_delay)
    audit(
        s,
        actor=ACTOR,
        action="transaction.invalid_meter_stop",
        at=now,
        charge_point_id=cp_id,
        connector_id=tx.connector_id,
        subject=str(tx_id),
        meter_stop=str(meter_stop),
        closed_with_wh=tx.meter_stop,
        billed_wh=None if settlement is None else settlement.energy_wh,
    )
    return True


def _stored_time(hot: HotSql, value: Any) -> datetime:
    """A NOT NULL time column as the DBAPI cursor hands it back."""
    at = hot.from_time(value)
    assert at is not None
    return at


def _session_for(s: Session, tx_id: int) -> ChargingSession | None:
    return s.scalars(select(ChargingSession).where(ChargingSession.transaction_id == tx_id).limit(1)).first()
