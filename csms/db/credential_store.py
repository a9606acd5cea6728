"""Charge point provisioning: ids, password hashes, what the handshake and start-up need.

Synchronous functions over a Session (one unit of work each), returning plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.core.chargepoint_auth import Access
from csms.db.models import AuditEvent, ChargePoint, ChargePointPassword, Station

__all__ = [
    "load_access",
    "provision",
    "ProvisionResult",
    "ChargerRow",
    "list_chargers",
    "StartupState",
    "load_startup_state",
    "AUTO_REGISTERED",
    "passwords_set",
]

# The audit action of a charge point that lab mode registered (counted against --max-auto-registered).
AUTO_REGISTERED = "charge_point.auto_registered"


def load_access(s: Session, cp_id: str) -> Access:
    pw = s.get(ChargePointPassword, cp_id)
    if pw is not None:
        return Access(known=True, password_hash=pw.password_hash)
    return Access(known=s.get(ChargePoint, cp_id) is not None)


@dataclass(frozen=True)
class ProvisionResult:
    created: bool  # the charge point is new
    station_created: bool
    password_set: bool  # it has a password now


def provision(
    s: Session, cp_id: str, password_hash: str | None, now: datetime, *, create_station: bool = True
) -> ProvisionResult:
    """Register `cp_id` if new (with a station of the same id), and set or replace its password."""
    created = s.get(ChargePoint, cp_id) is None
    if created:
        s.add(ChargePoint(id=cp_id, registered_at=now))
    station_created = False
    if create_station:
        has_station = s.scalars(select(Station.id).where(Station.charge_point_id == cp_id).limit(1)).first()
        if has_station is None and s.get(Station, cp_id) is None:
            s.add(Station(id=cp_id, charge_point_id=cp_id, active=True, created_at=now))
            station_created = True
    pw = s.get(ChargePointPassword, cp_id)
    if password_hash is not None:
        if pw is None:
            s.add(ChargePointPassword(charge_point_id=cp_id, password_hash=password_hash, updated_at=now))
        else:
            pw.password_hash, pw.updated_at = password_hash, now
    return ProvisionResult(created, station_created, password_hash is not None or pw is not None)


def passwords_set(s: Session) -> set[str]:
    return set(s.scalars(select(ChargePointPassword.charge_point_id)))


@dataclass(frozen=True)
class ChargerRow:
    id: str
    password_set: bool
    registered_at: datetime | None
    last_boot_at: datetime | None
    last_seen_at: datetime | None
    vendor: str | None
    model: str | None
    ocpp_version: str | None = None


def list_chargers(s: Session) -> list[ChargerRow]:
    with_pw = passwords_set(s)
    return [
        ChargerRow(
            cp.id,
            cp.id in with_pw,
            cp.registered_at,
            cp.last_boot_at,
            cp.last_seen_at,
            cp.vendor,
            cp.model,
            cp.ocpp_version,
        )
        for cp in s.scalars(select(ChargePoint).order_by(ChargePoint.id))
    ]


@dataclass(frozen=True)
class StartupState:
    known: set[str]  # may connect (given their credentials)
    accepted: set[str]  # a BootNotification of theirs was accepted, some time
    auto_registered: int  # how many lab mode registered, ever


def load_startup_state(s: Session) -> StartupState:
    rows = s.execute(select(ChargePoint.id, ChargePoint.last_boot_at)).all()
    count = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == AUTO_REGISTERED))
    return StartupState({r[0] for r in rows}, {r[0] for r in rows if r[1] is not None}, int(count or 0))
