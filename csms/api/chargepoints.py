"""Charge points: registration, live view, and raw OCPP calls for admins."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, field_validator
from sqlalchemy.orm import Session

from csms.api.auth import Admin
from csms.api.envelope import ApiError, CamelModel, ok
from csms.api.stations import check_charge_point_id, check_password
from csms.core.chargepoint_auth import MAX_ID_LENGTH
from csms.core.times import iso
from csms.db import credential_store
from csms.db.cleanup_store import audit
from csms.services.provisioning import provision
from ocppj import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
)

router = APIRouter(prefix="/api/charge-points", tags=["charge points"])
log = logging.getLogger("csms.api")


class ChargePointIn(CamelModel):
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    password: str | None = Field(
        default=None,
        description="HTTP Basic password, 16 to 40 printable characters; "
        "given for a charge point that exists, it replaces the old one",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_charge_point_id(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str | None) -> str | None:
        return check_password(value)


class PasswordIn(CamelModel):
    password: str

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return check_password(value)


class RawCallIn(CamelModel):
    action: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)


def _rows(s: Session) -> list[dict[str, Any]]:
    return [
        {
            "id": cp.id,
            "vendor": cp.vendor,
            "model": cp.model,
            "registeredAt": iso(cp.registered_at),
            "lastBootAt": iso(cp.last_boot_at),
            "lastSeenAt": iso(cp.last_seen_at),
            "passwordSet": cp.password_set,
            "ocppVersion": cp.ocpp_version,  # "1.6" or "2.0.1", from its last boot (None: never booted)
        }
        for cp in credential_store.list_chargers(s)
    ]


@router.get("")
async def list_charge_points(request: Request, who: Admin):
    ctx = request.app.state.ctx
    rows = await ctx.db.read(_rows)
    for row in rows:
        live = ctx.registry.get(row["id"])
        row["online"] = live is not None
        row["connectors"] = (
            {}
            if live is None
            else {
                str(k): {"status": c.status, "errorCode": c.error_code, "at": iso(c.updated_at)}
                for k, c in sorted(live.connectors.items())
            }
        )
    return ok(rows)


@router.post(
    "", status_code=201, responses={200: {"description": "Already registered (its password replaced if one was given)"}}
)
async def register_charge_point(body: ChargePointIn, request: Request, who: Admin):
    """Register a charge point (with a station of the same id, like lab mode) and/or set its password."""
    result = (
        await provision(request.app.state.ctx, body.id, body.password, actor=who.name, create_station=True)
    ).result
    message = "Charge point registered" if result.created else "Charge point already registered"
    if body.password is not None and not result.created:
        message = "Charge point password replaced"
    return ok({"id": body.id, "passwordSet": result.password_set}, message, status=201 if result.created else 200)


@router.put("/{cp_id}/password")
async def set_password(cp_id: str, body: PasswordIn, request: Request, who: Admin):
    """Set or replace the HTTP Basic password; an open connection of this charge point is closed (1008)."""
    ctx = request.app.state.ctx
    if cp_id not in ctx.known_charge_points:
        exists = await ctx.db.read(lambda s: credential_store.load_access(s, cp_id).known)
        if not exists:
            raise ApiError(404, "Charge point not found; POST /api/charge-points registers it")
    await provision(request.app.state.ctx, cp_id, body.password, actor=who.name, create_station=False)
    return ok({"id": cp_id, "passwordSet": True}, "Charge point password set")


@router.post("/{cp_id}/call")
async def raw_call(cp_id: str, body: RawCallIn, request: Request, who: Admin):
    """Send any CSMS->charge point Call in the version it speaks (1.6 or 2.0.1); return its answer (debugging aid)."""
    ctx = request.app.state.ctx
    live = await ctx.registry.find(cp_id)
    if live is None:
        raise ApiError(409, "Charger is offline", {"code": "ChargerOffline"})
    now = ctx.clock.now()
    ctx.db.submit(
        lambda s: audit(
            s, actor=who.name, action="charge_point.raw_call", at=now, charge_point_id=cp_id, subject=body.action
        )
    )
    # The StatusNotification a status trigger brings is its answer, not the connector's own report.
    status_ask = body.action == "TriggerMessage" and body.payload.get("requestedMessage") == "StatusNotification"
    asked = body.payload.get("connectorId", (body.payload.get("evse") or {}).get("id"))  # 1.6, or 2.0.1's EVSE
    try:
        with live.asking_status(asked, ctx.clock.now) if status_ask else nullcontext():
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
