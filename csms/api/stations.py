"""Station management: a station is the user-facing name of one OCPP charge point."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import iso
from ..db.models import ChargePoint, Station, new_id
from .auth import Admin
from .envelope import ApiError, CamelModel, ok

router = APIRouter(prefix="/api/stations", tags=["stations"])


class StationIn(CamelModel):
    id: str | None = Field(default=None, min_length=1, max_length=64)
    charge_point_id: str = Field(min_length=1, max_length=64)
    active: bool = True


@dataclass(frozen=True)
class StationOut:
    id: str
    chargePointId: str
    active: bool
    createdAt: str | None


def _out(st: Station) -> StationOut:
    return StationOut(st.id, st.charge_point_id, bool(st.active), iso(st.created_at))


def create_station(s: Session, body: StationIn, now: datetime) -> tuple[StationOut, bool]:
    """Insert a station; its charge point becomes known (allowed to connect). Returns (station, cp_was_new)."""
    cp_new = s.get(ChargePoint, body.charge_point_id) is None
    if cp_new:
        s.add(ChargePoint(id=body.charge_point_id, registered_at=now))
    st = Station(id=body.id or new_id(), charge_point_id=body.charge_point_id, active=body.active, created_at=now)
    s.add(st)
    s.flush()
    return _out(st), cp_new


@router.post("", status_code=201)
async def post_station(body: StationIn, request: Request, who: Admin):
    ctx = request.app.state.ctx
    if body.id is not None:
        exists = await ctx.db.read(lambda s: s.get(Station, body.id) is not None)
        if exists:
            raise ApiError(409, f"Station {body.id} already exists")
    try:
        station, _ = await ctx.db.write(lambda s: create_station(s, body, ctx.clock.now()))
    except IntegrityError:
        raise ApiError(409, f"Station {body.id} already exists") from None
    ctx.known_charge_points.add(body.charge_point_id)
    return ok(asdict(station), "Station created", status=201)


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
