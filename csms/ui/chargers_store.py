"""What the console's Chargers pages read: one function per page, each one read transaction, no per-row queries.

The list reads every charge point with a handful of set-wise SELECTs (charge points, passwords, stations),
so 200 chargers cost the same few statements as 2; a charger's page adds its open transactions (with the
session that bills each) and its history from the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from csms.core.times import as_utc
from csms.db.models import AuditEvent, ChargePoint, ChargePointPassword, ChargingSession, Station, Transaction
from csms.ocpp.presence import DISCONNECTED
from csms.ui.store import AuditLine

__all__ = ["ChargerRow", "OpenTransaction", "ChargerDetail", "charger_rows", "charger_detail"]


@dataclass(frozen=True)
class ChargerRow:
    id: str
    station_id: str  # its first active station (the connector pages' address), else its own id
    vendor: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    ocpp_version: str | None
    registered_at: datetime | None
    last_boot_at: datetime | None
    last_seen_at: datetime | None
    password_set: bool


@dataclass(frozen=True)
class OpenTransaction:
    id: int
    connector_id: int
    id_tag: str
    started: datetime | None
    energy_wh: int | None  # latest register minus meter start: what it delivered so far (None: no sample yet)
    session_id: str | None  # the charging session billing it (a REST/console start), None for a local start
    tariff: Decimal | None


@dataclass(frozen=True)
class ChargerDetail:
    row: ChargerRow
    transactions: list[OpenTransaction]
    history: list[AuditLine]  # newest first: connects, disconnects, actions on it
    disconnected_at: datetime | None  # its latest disconnect (audit), for "offline since"


def _stations(s: Session, cp_id: str | None = None) -> dict[str, str]:
    q = select(Station.id, Station.charge_point_id).where(Station.active.is_(True))
    if cp_id is not None:
        q = q.where(Station.charge_point_id == cp_id)
    out: dict[str, str] = {}
    for st_id, owner in s.execute(q.order_by(Station.created_at, Station.id)):
        out.setdefault(owner, st_id)
    return out


def _row(cp: ChargePoint, stations: dict[str, str], with_pw: set[str]) -> ChargerRow:
    return ChargerRow(
        cp.id,
        stations.get(cp.id, cp.id),
        cp.vendor,
        cp.model,
        cp.serial_number,
        cp.firmware_version,
        cp.ocpp_version,
        as_utc(cp.registered_at),
        as_utc(cp.last_boot_at),
        as_utc(cp.last_seen_at),
        cp.id in with_pw,
    )


def charger_rows(s: Session, q: str = "") -> list[ChargerRow]:
    """Every charge point whose id contains `q` (case-insensitive), by id; three SELECTs whatever the count."""
    query = select(ChargePoint)
    if q:
        query = query.where(ChargePoint.id.icontains(q, autoescape=True))
    with_pw = set(s.scalars(select(ChargePointPassword.charge_point_id)))
    stations = _stations(s)
    return [_row(cp, stations, with_pw) for cp in s.scalars(query.order_by(ChargePoint.id))]


def _open_transactions(s: Session, cp_id: str) -> list[OpenTransaction]:
    txs = list(
        s.scalars(
            select(Transaction)
            .where(Transaction.charge_point_id == cp_id, Transaction.stop_time.is_(None))
            .order_by(Transaction.connector_id, Transaction.id)
        )
    )
    sessions = {
        c.transaction_id: c
        for c in s.scalars(
            select(ChargingSession).where(
                ChargingSession.transaction_id.in_([t.id for t in txs]), ChargingSession.end_time.is_(None)
            )
        )
    }
    out = []
    for t in txs:
        c = sessions.get(t.id)
        energy = None if t.latest_meter_wh is None else max(0, t.latest_meter_wh - t.meter_start)
        out.append(
            OpenTransaction(
                t.id,
                t.connector_id,
                t.id_tag,
                as_utc(t.start_time),
                energy,
                None if c is None else c.id,
                None if c is None else c.tariff,
            )
        )
    return out


def charger_detail(s: Session, cp_id: str, history: int = 60) -> ChargerDetail | None:
    cp = s.get(ChargePoint, cp_id)
    if cp is None:
        return None
    with_pw = {cp_id} if s.get(ChargePointPassword, cp_id) is not None else set()
    lines = [
        AuditLine(
            e.id, as_utc(e.at), e.actor, e.action, e.charge_point_id, e.connector_id, e.subject, dict(e.details or {})
        )
        for e in s.scalars(
            select(AuditEvent).where(AuditEvent.charge_point_id == cp_id).order_by(AuditEvent.id.desc()).limit(history)
        )
    ]
    gone = s.scalars(
        select(AuditEvent.at)
        .where(AuditEvent.charge_point_id == cp_id, AuditEvent.action == DISCONNECTED)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    return ChargerDetail(_row(cp, _stations(s, cp_id), with_pw), _open_transactions(s, cp_id), lines, as_utc(gone))
