"""Kept energy samples of transactions (`meter_samples`): written behind the OCPP handlers, read by the console.

The write is a guarded INSERT ... SELECT: it stores the sample only while the transaction is this
charge point's and open, and only when no stored sample lies within `--meter-sample-seconds` of it
(`csms.core.meter_samples.window`), so the thinning holds across restarts, replays and nodes. For
OCPP 1.6 it joins the writer's batch as one executemany row (`BulkWrite`), never an awaited write;
a 2.0.1 TransactionEvent runs it inside the unit of work it already is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Executable,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from csms.core.meter_samples import window
from csms.core.times import as_utc
from csms.db.database import BulkWrite, rowcount
from csms.db.models import MeterSample, Transaction, UtcDateTime

__all__ = ["KIND", "Sample", "sample_statement", "record_sample", "apply_sample", "samples_of", "prune_samples"]

KIND = "meter_sample"


@dataclass(frozen=True)
class Sample:
    at: datetime
    wh: int
    w: int | None


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table), table
    return table


def sample_statement(_dialect: str) -> Executable:
    """INSERT the sample if its transaction is open and this charge point's, and none is stored near it."""
    m, t = _table(MeterSample), _table(Transaction)
    tx_id = bindparam("b_id", type_=Integer)
    near = select(m.c.transaction_id).where(
        m.c.transaction_id == tx_id,
        m.c.at > bindparam("b_lo", type_=UtcDateTime),
        m.c.at < bindparam("b_hi", type_=UtcDateTime),
    )
    source = select(
        t.c.id,
        bindparam("b_at", type_=UtcDateTime),
        bindparam("b_wh", type_=BigInteger),
        bindparam("b_w", type_=BigInteger),
    ).where(
        and_(
            t.c.id == tx_id,
            t.c.charge_point_id == bindparam("b_cp", type_=String),
            t.c.stop_time.is_(None),
            ~exists(near),
        )
    )
    return insert(m).from_select(["transaction_id", "at", "wh", "w"], source)


def record_sample(cp_id: str, tx_id: int, at: datetime, wh: int, w: int | None, every: timedelta) -> BulkWrite:
    """The sample as one row of the writer batch's executemany (kind `KIND`)."""
    lo, hi = window(at, every)
    return BulkWrite(KIND, {"b_id": tx_id, "b_cp": cp_id, "b_at": at, "b_wh": wh, "b_w": w, "b_lo": lo, "b_hi": hi})


def apply_sample(s: Session, cp_id: str, tx_id: int, at: datetime, wh: int, w: int | None, every: timedelta) -> bool:
    """`record_sample` inside a unit of work of its own; True when it was stored. every <= 0 stores nothing."""
    if every <= timedelta(0):
        return False
    write = record_sample(cp_id, tx_id, at, wh, w, every)
    return rowcount(s.execute(sample_statement(s.get_bind().dialect.name), write.params)) > 0


def samples_of(s: Session, tx_id: int, limit: int = 5000) -> list[Sample]:
    """A transaction's kept samples, oldest first (at most `limit`: a chart needs no more)."""
    rows = s.execute(
        select(MeterSample.at, MeterSample.wh, MeterSample.w)
        .where(MeterSample.transaction_id == tx_id)
        .order_by(MeterSample.at)
        .limit(limit)
    )
    return [Sample(as_utc(at), wh, w) for at, wh, w in rows]


def prune_samples(s: Session, closed_before: datetime, limit: int = 500) -> int:
    """Delete the samples of (at most `limit`) transactions closed before `closed_before`; the rows deleted.

    Only transactions from the oldest one with samples on are looked at (ids grow with time): a round
    reads the transactions of the retention window, not the whole history.
    """
    oldest = s.scalar(select(func.min(MeterSample.transaction_id)))
    if oldest is None:
        return 0
    ids = list(
        s.scalars(
            select(Transaction.id)
            .where(
                Transaction.id >= oldest,
                Transaction.stop_time < closed_before,
                exists(select(MeterSample.transaction_id).where(MeterSample.transaction_id == Transaction.id)),
            )
            .order_by(Transaction.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    return rowcount(s.execute(delete(MeterSample).where(MeterSample.transaction_id.in_(ids))))
