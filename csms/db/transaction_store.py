"""OCPP transactions as an admin reads them: each with the charging session linked to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.core.times import as_utc
from csms.db.models import ChargingSession, Transaction

__all__ = ["LinkedSession", "TransactionRecord", "list_transactions"]


@dataclass(frozen=True)
class LinkedSession:
    session_id: str
    status: str
    tariff: Decimal
    energy_wh: int | None
    fee: Decimal | None
    meter_source: str | None
    reconciled: bool
    end_reason: str | None
    review_reason: str | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class TransactionRecord:
    transaction_id: int
    charge_point_id: str
    connector_id: int
    id_tag: str
    meter_start: int
    meter_stop: int | None
    start_time: datetime
    stop_time: datetime | None
    stop_reason: str | None
    latest_meter_wh: int | None
    latest_meter_at: datetime | None
    session: LinkedSession | None
    station_tx_id: str | None = None  # OCPP 2.0.1: the station's own transactionId


def list_transactions(
    s: Session, *, charge_point_id_prefix: str | None = None, open: bool | None = None, limit: int = 10_000
) -> list[TransactionRecord]:
    """Transactions ordered by id (at most `limit`), filtered by charge point id prefix and open/closed.

    A transaction's session is the ChargingSession linked by transaction_id; the newest if several.
    """
    query = select(Transaction)
    if charge_point_id_prefix:
        query = query.where(Transaction.charge_point_id.startswith(charge_point_id_prefix, autoescape=True))
    if open is not None:
        query = query.where(Transaction.stop_time.is_(None) if open else Transaction.stop_time.is_not(None))
    query = query.order_by(Transaction.id).limit(limit)
    txs = list(s.scalars(query))
    if not txs:
        return []
    ids = query.with_only_columns(Transaction.id).subquery()
    sessions: dict[int, ChargingSession] = {}
    for cs in s.scalars(
        select(ChargingSession)
        .where(ChargingSession.transaction_id.in_(select(ids.c.id)))
        .order_by(ChargingSession.created_at, ChargingSession.id)
    ):
        assert cs.transaction_id is not None  # selected by it
        sessions[cs.transaction_id] = cs  # ascending: the newest one is kept
    return [_record(t, sessions.get(t.id)) for t in txs]


def _record(t: Transaction, cs: ChargingSession | None) -> TransactionRecord:
    return TransactionRecord(
        transaction_id=t.id,
        charge_point_id=t.charge_point_id,
        connector_id=t.connector_id,
        id_tag=t.id_tag,
        meter_start=t.meter_start,
        meter_stop=t.meter_stop,
        start_time=as_utc(t.start_time),
        stop_time=as_utc(t.stop_time),
        stop_reason=t.stop_reason,
        latest_meter_wh=t.latest_meter_wh,
        latest_meter_at=as_utc(t.latest_meter_at),
        station_tx_id=t.station_tx_id,
        session=None
        if cs is None
        else LinkedSession(
            session_id=cs.id,
            status=cs.status,
            tariff=cs.tariff,
            energy_wh=cs.energy_wh,
            fee=cs.fee,
            meter_source=cs.meter_source,
            reconciled=bool(cs.reconciled),
            end_reason=cs.end_reason,
            review_reason=cs.review_reason,
            end_time=as_utc(cs.end_time),
        ),
    )
