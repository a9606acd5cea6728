"""/api/ChargingSession: start, stop, show (the seeds' routes and shapes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field, field_validator

from csms.api.auth import Admin, User
from csms.api.envelope import CamelModel, ok
from csms.api.id_tags import check_tag_for_start
from csms.core.billing import InvalidTariffError, parse_tariff
from csms.core.tariffs import may_set_price
from csms.services import sessions, unlock, unlock_preview

router = APIRouter(prefix="/api/ChargingSession", tags=["charging sessions"])


class TariffModel(CamelModel):
    charging_station_id: str = Field(min_length=1, max_length=64)
    connector_id: int = Field(ge=1, le=100)
    charge_tag_id: str = Field(min_length=1, max_length=20)
    charging_tariff: Decimal | str = Field(
        description="price per kWh, a number or a numeric string, e.g. 0.25: the site's tariff of the connector "
        "(GET /api/tariffs/{stationId}/{connectorId}); another price is refused (409 TariffMismatch) unless the "
        "token is an admin's"
    )

    @field_validator("charging_tariff", mode="before")
    @classmethod
    def _tariff(cls, value: Any):
        try:
            return parse_tariff(value)
        except InvalidTariffError as exc:
            raise ValueError(f"must be a non-negative number per kWh ({exc})") from None


class StartIn(TariffModel):
    pass


class StopIn(CamelModel):
    session_id: str = Field(min_length=1, max_length=64)


@router.post("/start-charging-session")
async def start_charging_session(body: StartIn, request: Request, who: User):
    await check_tag_for_start(request.app.state.ctx, body.charge_tag_id)
    assert isinstance(body.charging_tariff, Decimal)  # parsed by TariffModel._tariff (`| str` is for the schema)
    started = await sessions.start_session(
        request.app.state.ctx,
        station_id=body.charging_station_id,
        connector_id=body.connector_id,
        id_tag=body.charge_tag_id,
        tariff=body.charging_tariff,
        may_set_price=may_set_price(who.role),
    )
    return ok(
        {
            "sessionId": started.session_id,
            "chargePointId": started.charge_point_id,
            "connectorId": body.connector_id,
            "status": "Accepted",
        },
        "Charging session started",
    )


@router.post("/stop-charging-session")
async def stop_charging_session(body: StopIn, request: Request, who: User):
    data = await sessions.stop_session(request.app.state.ctx, body.session_id)
    return ok(data, "Stop requested; the session ends when the charge point confirms")


@router.get("/{session_id}")
async def get_charging_session(session_id: str, request: Request, who: User):
    return ok(await sessions.get_session(request.app.state.ctx, session_id))


class UnlockIn(CamelModel):
    charging_station_id: str = Field(min_length=1, max_length=64)
    connector_id: int = Field(ge=0, le=100)
    dry_run: bool = Field(default=False, description="answer what the unlock would clean; change nothing")
    force_active: bool = Field(
        default=False,
        description="also end transactions still delivering energy (a meter "
        "sample or Charging status within --live-evidence-seconds): the charger is asked to "
        "stop them first (RemoteStopTransaction); without it they are left open, 409",
    )


@router.post("/unlock-connector")
async def unlock_connector(body: UnlockIn, request: Request, who: Admin):
    if body.dry_run:
        preview = await unlock_preview.preview_unlock(
            request.app.state.ctx, body.charging_station_id, body.connector_id, force_active=body.force_active
        )
        return ok(unlock_preview.preview_body(preview), unlock_preview.preview_message(preview))
    result = await unlock.unlock_connector(
        request.app.state.ctx,
        body.charging_station_id,
        body.connector_id,
        actor=who.name,
        force_active=body.force_active,
    )
    # The seed's codes: 200 unlocked, 400 when the charger did not unlock; 409 when a transaction was
    # still delivering energy and was left open (stop it, or repeat with forceActive).
    status = 200 if result.success else 409 if result.kept_live else 400
    return JSONResponse(unlock.answer_body(result), status_code=status)
