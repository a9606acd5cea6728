"""Station management: a station is the user-facing name of one OCPP charge point."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import overload

import trio
from fastapi import APIRouter, Request
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csms.api.auth import Admin
from csms.api.envelope import ApiError, CamelModel, ok
from csms.core.chargepoint_auth import (
    MAX_ID_LENGTH,
    charge_point_id_problem,
    hash_password,
    password_problem,
)
from csms.core.times import iso
from csms.db import credential_store
from csms.db.cleanup_store import audit
from csms.db.models import ChargePoint, Station, new_id

router = APIRouter(prefix="/api/stations", tags=["stations"])


def check_charge_point_id(value: str) -> str:
    problem = charge_point_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


@overload
def check_password(value: str) -> str: ...


@overload
def check_password(value: None) -> None: ...


@overload
def check_password(value: str | None) -> str | None: ...


def check_password(value: str | None) -> str | None:
    problem = None if value is None else password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class StationIn(CamelModel):
    id: str | None = Field(default=None, min_length=1, max_length=64)
    charge_point_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    active: bool = True
    password: str | None = Field(
        default=None,
        description="the charge point's HTTP Basic password (16 to 40 "
        "printable characters); stored as a salted hash only",
    )

    @field_validator("charge_point_id")
    @classmethod
    def _cp_id(cls, value: str) -> str:
        return check_charge_point_id(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str | None) -> str | None:
        return check_password(value)


@dataclass(frozen=True)
class StationOut:
    id: str
    chargePointId: str
    active: bool
    createdAt: str | None


def _out(st: Station) -> StationOut:
    return StationOut(st.id, st.charge_point_id, bool(st.active), iso(st.created_at))


def create_station(
    s: Session, body: StationIn, now: datetime, *, password_hash: str | None = None, actor: str = "system"
) -> tuple[StationOut, bool, bool]:
    """Insert a station; its charge point becomes known (it may connect with its password).

    Returns (station, cp_was_new, cp_has_password).
    """
    cp_new = s.get(ChargePoint, body.charge_point_id) is None
    provisioned = credential_store.provision(s, body.charge_point_id, password_hash, now, create_station=False)
    st = Station(id=body.id or new_id(), charge_point_id=body.charge_point_id, active=body.active, created_at=now)
    s.add(st)
    s.flush()
    audit(
        s,
        actor=actor,
        action="station.created",
        at=now,
        charge_point_id=body.charge_point_id,
        subject=st.id,
        passwordSet=password_hash is not None,
    )
    return _out(st), cp_new, provisioned.password_set


@router.post("", status_code=201)
async def post_station(body: StationIn, request: Request, who: Admin):
    ctx = request.app.state.ctx
    if body.id is not None:
        exists = await ctx.db.read(lambda s: s.get(Station, body.id) is not None)
        if exists:
            raise ApiError(409, f"Station {body.id} already exists")
    pw_hash = None if body.password is None else await trio.to_thread.run_sync(hash_password, body.password)
    try:
        station, _, has_password = await ctx.db.write(
            lambda s: create_station(s, body, ctx.clock.now(), password_hash=pw_hash, actor=who.name)
        )
    except IntegrityError:
        raise ApiError(409, f"Station {body.id} already exists") from None
    ctx.known_charge_points.add(body.charge_point_id)
    message = "Station created"
    if not has_password and not ctx.settings.allow_unknown_chargers:
        message += (
            f"; charge point {body.charge_point_id} has no password yet and cannot connect until it has one "
            f"(PUT /api/charge-points/{body.charge_point_id}/password)"
        )
    return ok(asdict(station), message, status=201)


@router.get("")
async def list_stations(request: Request, who: Admin):
    ctx = request.app.state.ctx
    rows = await ctx.db.read(lambda s: [_out(st) for st in s.scalars(select(Station).order_by(Station.created_at))])
    return ok([asdict(r) | {"online": ctx.registry.is_connected(r.chargePointId)} for r in rows])


@router.get("/{station_id}")
async def get_station(station_id: str, request: Request, who: Admin):
    ctx = request.app.state.ctx
    st = await ctx.db.read(lambda s: (lambda row: _out(row) if row else None)(s.get(Station, station_id)))
    if st is None:
        raise ApiError(404, "Charging station not found")
    return ok(asdict(st) | {"online": ctx.registry.is_connected(st.chargePointId)})
