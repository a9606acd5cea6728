"""What an OCPP 2.0.1 TransactionEvent writes: one unit of work per event, on the 1.6 path's own steps.

The station names its transaction; the CSMS keeps its own integer id (sessions, billing, REST) with
the station's beside it. `csms.core.transaction_events.plan` says what the event does; opening and
closing are `ocpp_store.start_transaction` and `stop_transaction`, so linking, supersede, billing and
the session's end are the ones every 1.6 transaction goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from csms.core.times import as_utc
from csms.core.transaction_events import ENDED, Step, Stored, plan
from csms.db import meter_sample_store, ocpp_store
from csms.db.models import ChargingSession, Transaction
from csms.db.session_end import ESTIMATED_REASONS

__all__ = ["Event", "EventResult", "apply_event", "open_station_transactions"]


@dataclass(frozen=True)
class Event:
    """One TransactionEvent, as the handler read it (registers in Wh; None where the event said nothing)."""

    event_type: str  # Started, Updated, Ended
    station_tx_id: str
    seq_no: int
    timestamp: datetime
    evse_id: int | None
    id_tag: str | None
    begin_wh: int | None  # a Transaction.Begin register
    end_wh: int | None  # a Transaction.End register
    latest_wh: int | None  # the latest register of any context, and its stamp
    latest_at: datetime | None
    stopped_reason: str | None = None
    latest_w: int | None = None  # the active power sampled with the latest register, if any


@dataclass(frozen=True)
class EventResult:
    step: Step
    transaction_id: int | None
    connector_id: int | None
    started: ocpp_store.StartResult | None = None
    stopped: ocpp_store.StopResult | None = None


def _stored(s: Session, cp_id: str, station_tx_id: str) -> tuple[Stored, Transaction] | None:
    tx = s.scalars(
        select(Transaction)
        .where(Transaction.charge_point_id == cp_id, Transaction.station_tx_id == station_tx_id)
        .order_by(Transaction.id.desc())
        .limit(1)
    ).first()
    if tx is None:
        return None
    return Stored(tx.id, tx.stop_time is None, as_utc(tx.stop_time), tx.stop_reason in ESTIMATED_REASONS), tx


def apply_event(
    s: Session,
    cp_id: str,
    e: Event,
    *,
    now: datetime,
    fallback_connector: int,
    revive_within: timedelta | None,
    settle_delay: timedelta,
    sample_every: timedelta = timedelta(0),
) -> EventResult:
    """Apply one event; `fallback_connector` is where a transaction whose events never named an EVSE goes.

    Its latest sample is also kept for the console's chart when none is stored within `sample_every` of it
    (`csms.db.meter_sample_store`; 0: none): one more statement in the unit of work the event already is.
    """
    found = _stored(s, cp_id, e.station_tx_id)
    step = plan(e.event_type, e.timestamp, found[0] if found else None)
    if step in (Step.DUPLICATE, Step.AFTER_END):
        return EventResult(step, found[1].id if found else None, found[1].connector_id if found else None)
    started = None
    if step in (Step.START, Step.START_AND_END):
        connector = e.evse_id if e.evse_id is not None else fallback_connector
        meter_start = e.begin_wh if e.begin_wh is not None else e.latest_wh
        if meter_start is None and e.event_type == ENDED:
            meter_start = e.end_wh  # all it ever said: nothing measurable was delivered
        started = ocpp_store.start_transaction(
            s,
            cp_id,
            connector,
            e.id_tag or "",
            0 if meter_start is None else meter_start,
            e.timestamp,
            now,
            revive_within=revive_within,
            settle_delay=settle_delay,
        )
        s.execute(
            update(Transaction)
            .where(Transaction.id == started.transaction_id)
            .values(station_tx_id=e.station_tx_id, seq_no=e.seq_no, meter_start_missing=meter_start is None)
        )
        tx = s.get(Transaction, started.transaction_id)
        assert tx is not None
        s.refresh(tx)
    else:
        assert found is not None
        tx = found[1]
        _learn(s, tx, e)
    # An Ended's own Transaction.End reading is its meterStop, not a sample: evidence of the energy delivered comes
    # from the samples before it (a replaced meter's lower reading must not replace them, as in 1.6).
    is_end_reading = e.event_type == ENDED and e.latest_wh is not None and e.latest_wh == e.end_wh
    if e.latest_wh is not None and e.latest_at is not None and tx.stop_time is None and not is_end_reading:
        ocpp_store.apply_meter_sample(s, cp_id, tx.id, e.latest_wh, e.latest_at, now)
        meter_sample_store.apply_sample(s, cp_id, tx.id, e.latest_at, e.latest_wh, e.latest_w, sample_every)
    stopped = None
    if step in (Step.END, Step.START_AND_END, Step.RECONCILE):
        s.refresh(tx)
        meter_stop = next(
            (wh for wh in (e.end_wh, e.latest_wh, tx.latest_meter_wh, tx.meter_start) if wh is not None), 0
        )
        stopped = ocpp_store.stop_transaction(
            s,
            tx.id,
            cp_id=cp_id,
            meter_stop=meter_stop,
            stop_time=e.timestamp,
            reason=e.stopped_reason or "Local",
            now=now,
        )
    return EventResult(step, tx.id, tx.connector_id, started, stopped)


def _learn(s: Session, tx: Transaction, e: Event) -> None:
    """What a later event tells that its Started did not: the id token, the first register, the seqNo."""
    values: dict[str, object] = {"seq_no": max(tx.seq_no or 0, e.seq_no)}
    if e.id_tag and not tx.id_tag:
        values["id_tag"] = e.id_tag
    first = e.begin_wh if e.begin_wh is not None else e.latest_wh
    if tx.meter_start_missing and first is not None:
        # The first register this station gave for it (billing starts here: better than from 0 Wh).
        values["meter_start"], values["meter_start_missing"] = first, False
        s.execute(
            update(ChargingSession)
            .where(ChargingSession.transaction_id == tx.id, ChargingSession.end_time.is_(None))
            .values(meter_start=first)
        )
    s.execute(update(Transaction).where(Transaction.id == tx.id).values(**values))


def open_station_transactions(s: Session, cp_id: str) -> dict[int, str]:
    """Our id -> the station's, for its open transactions: what commands name after a reconnect or a restart."""
    rows = s.execute(
        select(Transaction.id, Transaction.station_tx_id).where(
            Transaction.charge_point_id == cp_id, Transaction.stop_time.is_(None), Transaction.station_tx_id.isnot(None)
        )
    ).all()
    return {tx_id: station_tx for tx_id, station_tx in rows if station_tx is not None}
