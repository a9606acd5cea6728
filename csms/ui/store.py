"""What the dashboard reads beyond the occupancy signals: one function per page, each one read transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from csms.core.times import as_utc
from csms.db.models import AuditEvent, ChargePoint, ChargingSession, Station, Transaction
from csms.ui.words import TxActivity

__all__ = [
    "BoardFacts",
    "board_facts",
    "ConnectorRecords",
    "connector_records",
    "AuditLine",
    "audit_lines",
    "station_of",
    "MAINTENANCE_ACTIONS",
]


@dataclass(frozen=True)
class BoardFacts:
    stations: dict[str, str]  # charge point id -> its (first active) station id
    activity: dict[int, TxActivity]  # open transaction id -> meter activity
    last_seen: dict[str, datetime | None]  # charge point id -> last heard from (stored)
    # Every connector that ever had a transaction: shown even when nothing holds it any more.
    used_connectors: frozenset[tuple[str, int]] = frozenset()


def board_facts(s: Session) -> BoardFacts:
    stations: dict[str, str] = {}
    for st_id, cp_id in s.execute(
        select(Station.id, Station.charge_point_id)
        .where(Station.active.is_(True))
        .order_by(Station.created_at, Station.id)
    ):
        stations.setdefault(cp_id, st_id)
    activity = {
        tx_id: TxActivity(wh, as_utc(at), as_utc(seen))
        for tx_id, wh, at, seen in s.execute(
            select(
                Transaction.id, Transaction.latest_meter_wh, Transaction.latest_meter_at, Transaction.meter_seen_at
            ).where(Transaction.stop_time.is_(None))
        )
    }
    last_seen = {cp_id: as_utc(at) for cp_id, at in s.execute(select(ChargePoint.id, ChargePoint.last_seen_at))}
    used = frozenset(
        (cp_id, c)
        for cp_id, c in s.execute(select(Transaction.charge_point_id, Transaction.connector_id).distinct())
        if c > 0
    )
    return BoardFacts(stations, activity, last_seen, used)


def station_of(s: Session, station_or_cp: str) -> tuple[str, str] | None:
    """(station id, charge point id) for a station id, else for a charge point id with an active station."""
    st = s.get(Station, station_or_cp)
    if st is not None and st.active:
        return st.id, st.charge_point_id
    row = s.execute(
        select(Station.id, Station.charge_point_id)
        .where(Station.charge_point_id == station_or_cp, Station.active.is_(True))
        .order_by(Station.created_at)
    ).first()
    return None if row is None else (row[0], row[1])


@dataclass(frozen=True)
class AuditLine:
    id: int
    at: datetime
    actor: str
    action: str
    charge_point_id: str | None
    connector_id: int | None
    subject: str | None
    details: dict[str, Any]


def _line(e: AuditEvent) -> AuditLine:
    return AuditLine(
        e.id, as_utc(e.at), e.actor, e.action, e.charge_point_id, e.connector_id, e.subject, dict(e.details or {})
    )


@dataclass(frozen=True)
class ConnectorRecords:
    transactions: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    audit: list[AuditLine]


def connector_records(s: Session, cp_id: str, connector_id: int, limit: int = 10) -> ConnectorRecords:
    txs = [
        {
            "id": t.id,
            "id_tag": t.id_tag,
            "start": as_utc(t.start_time),
            "stop": as_utc(t.stop_time),
            "meter_start": t.meter_start,
            "meter_stop": t.meter_stop,
            "reason": t.stop_reason,
            "latest_wh": t.latest_meter_wh,
            "meter_seen": as_utc(t.meter_seen_at),
        }
        for t in s.scalars(
            select(Transaction)
            .where(Transaction.charge_point_id == cp_id, Transaction.connector_id == connector_id)
            .order_by(Transaction.id.desc())
            .limit(limit)
        )
    ]
    sessions = [
        {
            "id": c.id,
            "status": c.status,
            "id_tag": c.id_tag,
            "tx": c.transaction_id,
            "tariff": c.tariff,
            "created": as_utc(c.created_at),
            "end": as_utc(c.end_time),
            "energy_wh": c.energy_wh,
            "fee": c.fee,
            "end_reason": c.end_reason,
            "meter_source": c.meter_source,
            "waived": c.fee_waived_reason,
            "review": c.review_reason,
            "reconciled": bool(c.reconciled),
        }
        for c in s.scalars(
            select(ChargingSession)
            .where(ChargingSession.charge_point_id == cp_id, ChargingSession.connector_id == connector_id)
            .order_by(ChargingSession.created_at.desc())
            .limit(limit)
        )
    ]
    audit = [
        _line(e)
        for e in s.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.charge_point_id == cp_id,
                or_(AuditEvent.connector_id == connector_id, AuditEvent.connector_id.is_(None)),
            )
            .order_by(AuditEvent.id.desc())
            .limit(3 * limit)
        )
    ]
    return ConnectorRecords(txs, sessions, audit)


MAINTENANCE_ACTIONS = ("maintenance.%", "ui.maintenance_run")


def audit_lines(
    s: Session,
    *,
    actor: str = "",
    action: str = "",
    charge_point_id: str = "",
    connector_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
    action_like: tuple[str, ...] = (),
) -> list[AuditLine]:
    """Newest first; `action` matches as a prefix ("session." finds every session event)."""
    q = select(AuditEvent)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if action:
        q = q.where(AuditEvent.action.startswith(action, autoescape=True))
    if action_like:
        q = q.where(or_(*(AuditEvent.action.like(p) for p in action_like)))
    if charge_point_id:
        q = q.where(AuditEvent.charge_point_id == charge_point_id)
    if connector_id is not None:
        q = q.where(AuditEvent.connector_id == connector_id)
    if before_id is not None:
        q = q.where(AuditEvent.id < before_id)
    return [_line(e) for e in s.scalars(q.order_by(AuditEvent.id.desc()).limit(limit))]
