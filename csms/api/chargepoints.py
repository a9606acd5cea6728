"""Charge points: registration, live view, and raw OCPP calls for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import iso
from ..db.models import ChargePoint
from ..ocppj import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
)
from .auth import Admin
from .envelope import ApiError, CamelModel, ok

router = APIRouter(prefix="/api/charge-points", tags=["charge points"])


class ChargePointIn(CamelModel):
    id: str = Field(min_length=1, max_length=64)


class RawCallIn(CamelModel):
    action: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)


def _rows(s: Session) -> list[dict[str, Any]]:
    return [
        {"id": cp.id, "vendor": cp.vendor, "model": cp.model, "registeredAt": iso(cp.registered_at),
         "lastBootAt": iso(cp.last_boot_at), "lastSeenAt": iso(cp.last_seen_at)}
        for cp in s.scalars(select(ChargePoint).order_by(ChargePoint.id))
    ]


@router.get("")
async def list_charge_points(request: Request, who: Admin):
    ctx = request.app.state.ctx
    rows = await ctx.db.read(_rows)
    for row in rows:
        live = ctx.registry.get(row["id"])
        row["online"] = live is not None
        row["connectors"] = {} if live is None else {
            str(k): {"status": c.status, "errorCode": c.error_code, "at": iso(c.updated_at)}
            for k, c in sorted(live.connectors.items())
        }
    return ok(rows)


@router.post("", status_code=201)
async def register_charge_point(body: ChargePointIn, request: Request, who: Admin):
    ctx = request.app.state.ctx

    def work(s: Session) -> bool:
        if s.get(ChargePoint, body.id) is not None:
            return False
        s.add(ChargePoint(id=body.id, registered_at=ctx.clock.now()))
        return True

    created = await ctx.db.write(work)
    ctx.known_charge_points.add(body.id)
    return ok({"id": body.id}, "Charge point registered" if created else "Charge point already registered",
              status=201 if created else 200)


@router.post("/{cp_id}/call")
async def raw_call(cp_id: str, body: RawCallIn, request: Request, who: Admin):
    """Send any OCPP 1.6 CSMS->charge point Call and return its answer (debugging aid)."""
    ctx = request.app.state.ctx
    live = ctx.registry.get(cp_id)
    if live is None:
        raise ApiError(409, "Charger is offline", {"code": "ChargerOffline"})
    try:
        result = await live.connection.call_raw(body.action, body.payload)
    except OcppCallError as exc:
        raise ApiError(400, f"Invalid {body.action} payload: {exc.description}") from None
    except CallTimeoutError:
        raise ApiError(504, "Charge point did not respond in time") from None
    except CallErrorReceived as exc:
        raise ApiError(502, f"Charge point answered CallError {exc.code}: {exc.description}") from None
    except (ConnectionClosedError, InvalidResponseError) as exc:
        raise ApiError(502, str(exc)) from None
    return ok(result)
