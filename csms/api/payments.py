"""/api/Payments: Create, Confirm, Cancel a paid reservation of a connector."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Request
from pydantic import Field

from csms.api.auth import User
from csms.api.envelope import CamelModel, ok
from csms.api.id_tags import check_tag_for_start
from csms.api.sessions import TariffModel
from csms.core.tariffs import may_set_price
from csms.services import payments

router = APIRouter(prefix="/api/Payments", tags=["payments"])


class CreateIn(TariffModel):
    amount: Decimal | None = Field(default=None, ge=0)


class ReservationIn(CamelModel):
    reservation_id: str = Field(min_length=1, max_length=64)
    payment_method: str | None = Field(default=None, max_length=64)


@router.post("/Create")
async def create(body: CreateIn, request: Request, who: User):
    await check_tag_for_start(request.app.state.ctx, body.charge_tag_id)
    assert isinstance(body.charging_tariff, Decimal)  # parsed by TariffModel._tariff (`| str` is for the schema)
    data = await payments.create_reservation(
        request.app.state.ctx,
        station_id=body.charging_station_id,
        connector_id=body.connector_id,
        id_tag=body.charge_tag_id,
        tariff=body.charging_tariff,
        amount=body.amount,
        may_set_price=may_set_price(who.role),
    )
    return ok(data, "Reservation created; confirm the payment to start")


@router.post("/Confirm")
async def confirm(body: ReservationIn, request: Request, who: User):
    data = await payments.confirm_reservation(request.app.state.ctx, body.reservation_id, body.payment_method)
    return ok(data, "Payment confirmed; charging start requested")


@router.post("/Cancel")
async def cancel(body: ReservationIn, request: Request, who: User):
    return ok(await payments.cancel_reservation(request.app.state.ctx, body.reservation_id), "Reservation cancelled")
