"""What the console's transactions pages read: a filtered page of transactions, one with its samples.

Reads only, each one function over a Session (run through `ctx.db.read`). A transaction's fee is its
linked charging session's (ChargingSession.transaction_id), the newest if several: the same record
the REST API's /api/transactions builds (`csms.db.transaction_store`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from csms.db.meter_sample_store import Sample, samples_of
from csms.db.models import ChargingSession, Station, Transaction
from csms.db.transaction_store import TransactionRecord, _record
from csms.ui.transaction_rows import TxFilter

__all__ = ["PAGE_SIZE", "CSV_LIMIT", "TransactionPage", "Detail", "page_of", "all_of", "detail_of"]

PAGE_SIZE = 200
CSV_LIMIT = 100_000  # a download of more is cut here (the filters narrow it)


@dataclass(frozen=True)
class TransactionPage:
    rows: list[TransactionRecord]
    older: int | None  # the id to page on from, when more match


@dataclass(frozen=True)
class Detail:
    record: TransactionRecord
    station_id: str | None
    samples: list[Sample]


def _filtered(f: TxFilter) -> Select[Transaction]:
    q = select(Transaction)
    if f.cp:
        q = q.where(Transaction.charge_point_id.startswith(f.cp, autoescape=True))
    if f.tag:  # tags are compared as the charger spelled them, or in one case (keeps ix_transactions_tag_open usable)
        q = q.where(Transaction.id_tag.in_({f.tag, f.tag.upper(), f.tag.lower()}))
    if f.start_from is not None:
        q = q.where(Transaction.start_time >= f.start_from)
    if f.start_below is not None:
        q = q.where(Transaction.start_time < f.start_below)
    if f.state == "open":
        q = q.where(Transaction.stop_time.is_(None))
    elif f.state == "closed":
        q = q.where(Transaction.stop_time.is_not(None))
    if f.reason:
        q = q.where(Transaction.stop_reason == f.reason)
    if f.before is not None:
        q = q.where(Transaction.id < f.before)
    return q.order_by(Transaction.id.desc())


def _with_sessions(s: Session, txs: list[Transaction]) -> list[TransactionRecord]:
    if not txs:
        return []
    sessions: dict[int, ChargingSession] = {}
    for cs in s.scalars(
        select(ChargingSession)
        .where(ChargingSession.transaction_id.in_([t.id for t in txs]))
        .order_by(ChargingSession.created_at, ChargingSession.id)
    ):
        assert cs.transaction_id is not None  # selected by it
        sessions[cs.transaction_id] = cs  # ascending: the newest one is kept
    return [_record(t, sessions.get(t.id)) for t in txs]


def page_of(s: Session, f: TxFilter, limit: int = PAGE_SIZE) -> TransactionPage:
    """Newest first (by id): at most `limit`, and where the next, older page starts."""
    txs = list(s.scalars(_filtered(f).limit(limit + 1)))
    more = len(txs) > limit
    txs = txs[:limit]
    return TransactionPage(_with_sessions(s, txs), txs[-1].id if more and txs else None)


def all_of(s: Session, f: TxFilter, limit: int = CSV_LIMIT) -> list[TransactionRecord]:
    """Every matching transaction for the CSV (newest first, at most `limit`), in chunks of 1000 for the sessions."""
    txs = list(s.scalars(_filtered(f).limit(limit)))
    out: list[TransactionRecord] = []
    for i in range(0, len(txs), 1000):
        out += _with_sessions(s, txs[i : i + 1000])
    return out


def detail_of(s: Session, tx_id: int) -> Detail | None:
    tx = s.get(Transaction, tx_id)
    if tx is None:
        return None
    station = s.scalars(
        select(Station.id).where(Station.charge_point_id == tx.charge_point_id).order_by(Station.active.desc())
    ).first()
    return Detail(_with_sessions(s, [tx])[0], station, samples_of(s, tx_id))
