"""/api/tariffs: the site's prices per kWh. Admins set them; any token reads the one a start must ask."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from csms.api.auth import Admin, User
from csms.api.envelope import ApiError, CamelModel, ok
from csms.core.billing import InvalidTariffError, parse_tariff
from csms.core.tariffs import STATION_WIDE
from csms.core.times import iso
from csms.db.tariff_store import list_tariffs, set_tariff
from csms.services import tariffs

router = APIRouter(prefix="/api/tariffs", tags=["tariffs"])


class TariffIn(CamelModel):
    charging_station_id: str = Field(min_length=1, max_length=64)
    connector_id: int | None = Field(
        default=None, ge=1, le=100, description="one connector; omitted: the whole station's tariff"
    )
    charging_tariff: Decimal | str | None = Field(
        description="price per kWh, e.g. 0.30; null removes it (the station's, else --tariff, then applies)"
    )

    @field_validator("charging_tariff", mode="before")
    @classmethod
    def _tariff(cls, value: Any):
        if value is None:
            return None
        try:
            return parse_tariff(value)
        except InvalidTariffError as exc:
            raise ValueError(f"must be a non-negative number per kWh ({exc})") from None


@router.get("")
async def get_tariffs(request: Request, who: User):
    """The tariffs admins set and the default (`--tariff`); connectorId null is a whole station's."""
    ctx = request.app.state.ctx
    rows = await ctx.db.read(list_tariffs)
    default = ctx.settings.default_tariff
    return ok(
        {
            "defaultTariff": None if default is None else str(default),
            "tariffs": [
                {
                    "chargingStationId": r.station_id,
                    "connectorId": None if r.connector_id == STATION_WIDE else r.connector_id,
                    "chargingTariff": str(r.tariff),
                    "updatedAt": iso(r.updated_at),
                    "updatedBy": r.updated_by,
                }
                for r in rows
            ],
        }
    )


@router.get("/{station_id}/{connector_id}")
async def get_connector_tariff(station_id: str, connector_id: int, request: Request, who: User):
    """What a start on this connector must ask (`chargingTariff`), and where it is set."""
    site = await tariffs.applicable(request.app.state.ctx, station_id, connector_id)
    return ok(
        {
            "chargingStationId": station_id,
            "connectorId": connector_id,
            "chargingTariff": None if site is None else str(site.tariff),
            "source": None if site is None else site.source,
        }
    )


@router.put("")
async def put_tariff(body: TariffIn, request: Request, who: Admin):
    ctx = request.app.state.ctx
    tariff = body.charging_tariff
    assert tariff is None or isinstance(tariff, Decimal)  # parsed by TariffIn._tariff (`| str` is for the schema)
    connector = STATION_WIDE if body.connector_id is None else body.connector_id
    existed = await ctx.db.write(
        lambda s: set_tariff(s, body.charging_station_id, connector, tariff, actor=who.name, now=ctx.clock.now())
    )
    if existed is None:
        raise ApiError(404, f"Charging station {body.charging_station_id} not found")
    where = "the whole station" if body.connector_id is None else f"connector {body.connector_id}"
    data = {"chargingStationId": body.charging_station_id, "connectorId": body.connector_id}
    if tariff is None:
        message = f"Tariff of {where} removed" if existed else f"{where.capitalize()} had no tariff of its own"
        return ok(data | {"chargingTariff": None}, message)
    return ok(data | {"chargingTariff": str(tariff)}, f"Tariff of {where} set to {tariff} per kWh")
