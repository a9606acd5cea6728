"""The persisted occupancy signals of connectors, in one database round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.core.reservations import TERMINAL
from csms.core.times import as_utc
from csms.db.models import ConnectorStatus, PaymentReservation, Station, Transaction

__all__ = [
    "StoredStatus",
    "StoredTransaction",
    "StoredReservation",
    "StoredSignals",
    "load_connector_signals",
    "load_all_signals",
    "StationRef",
    "find_station",
]

_TERMINAL = tuple(s.value for s in TERMINAL)


@dataclass(frozen=True)
class StoredStatus:
    status: str
    error_code: str | None
    updated_at: datetime


@dataclass(frozen=True)
class StoredTransaction:
    transaction_id: int
    id_tag: str
    start_time: datetime
    meter_start: int
    latest_meter_wh: int | None


@dataclass(frozen=True)
class StoredReservation:
    reservation_id: str
    status: str
    created_at: datetime


@dataclass
class StoredSignals:
    status: StoredStatus | None = None
    open_transactions: list[StoredTransaction] = field(default_factory=list)
    reservations: list[StoredReservation] = field(default_factory=list)


@dataclass(frozen=True)
class StationRef:
    id: str
    charge_point_id: str
    active: bool


def find_station(s: Session, station_id: str) -> StationRef | None:
    st = s.get(Station, station_id)
    return None if st is None else StationRef(st.id, st.charge_point_id, bool(st.active))


def _status(row: ConnectorStatus) -> StoredStatus:
    return StoredStatus(row.status, row.error_code, as_utc(row.updated_at))


def _tx(row: Transaction) -> StoredTransaction:
    return StoredTransaction(row.id, row.id_tag, as_utc(row.start_time), row.meter_start, row.latest_meter_wh)


def _res(row: PaymentReservation) -> StoredReservation:
    return StoredReservation(row.id, row.status, as_utc(row.created_at))


def load_connector_signals(s: Session, cp_id: str, connector_id: int) -> StoredSignals:
    row = s.get(ConnectorStatus, (cp_id, connector_id))
    txs = s.scalars(
        select(Transaction)
        .where(
            Transaction.charge_point_id == cp_id,
            Transaction.connector_id == connector_id,
            Transaction.stop_time.is_(None),
        )
        .order_by(Transaction.id)
    )
    res = s.scalars(
        select(PaymentReservation)
        .where(
            PaymentReservation.charge_point_id == cp_id,
            PaymentReservation.connector_id == connector_id,
            PaymentReservation.status.not_in(_TERMINAL),
        )
        .order_by(PaymentReservation.created_at)
    )
    return StoredSignals(
        status=None if row is None else _status(row),
        open_transactions=[_tx(t) for t in txs],
        reservations=[_res(r) for r in res],
    )


def load_all_signals(s: Session, charge_point_id_prefix: str | None = None) -> dict[tuple[str, int], StoredSignals]:
    """Every connector the database knows anything about (connector 0 excluded).

    With a prefix, only charge points whose id starts with it (a LIKE in SQL, wildcards escaped).
    """
    out: dict[tuple[str, int], StoredSignals] = {}

    def slot(cp_id: str, connector_id: int) -> StoredSignals:
        return out.setdefault((cp_id, connector_id), StoredSignals())

    def of_prefix(column):
        return [] if not charge_point_id_prefix else [column.startswith(charge_point_id_prefix, autoescape=True)]

    for row in s.scalars(
        select(ConnectorStatus).where(ConnectorStatus.connector_id > 0, *of_prefix(ConnectorStatus.charge_point_id))
    ):
        slot(row.charge_point_id, row.connector_id).status = _status(row)
    for t in s.scalars(
        select(Transaction)
        .where(Transaction.stop_time.is_(None), *of_prefix(Transaction.charge_point_id))
        .order_by(Transaction.id)
    ):
        slot(t.charge_point_id, t.connector_id).open_transactions.append(_tx(t))
    for r in s.scalars(
        select(PaymentReservation).where(
            PaymentReservation.status.not_in(_TERMINAL), *of_prefix(PaymentReservation.charge_point_id)
        )
    ):
        slot(r.charge_point_id, r.connector_id).reservations.append(_res(r))
    return out
