"""The price a start is billed at: the site's tariff (csms.core.tariffs), read from the database."""

from __future__ import annotations

import logging
from decimal import Decimal

from csms.context import Context
from csms.core import tariffs
from csms.core.tariffs import SiteTariff, TariffRefusal
from csms.db.occupancy_store import StationRef
from csms.db.tariff_store import station_tariffs
from csms.errors import ConflictError

__all__ = ["TariffRefusedError", "applicable", "price_for_start"]

log = logging.getLogger("csms.tariffs")


class TariffRefusedError(ConflictError):
    """The start asked for a price that is not the site's (or the site has none) and may not set one."""

    def __init__(self, message: str, code: str, **data: object) -> None:
        super().__init__(message, **data)
        self.code = code


async def applicable(ctx: Context, station_id: str, connector_id: int) -> SiteTariff | None:
    """The site's tariff of a station's connector: its own, the station's, else --tariff."""
    rows = await ctx.db.read(lambda s: station_tariffs(s, station_id))
    return tariffs.site_tariff(rows, connector_id, ctx.settings.default_tariff)


async def price_for_start(
    ctx: Context, station: StationRef, connector_id: int, requested: Decimal | None, *, may_set_price: bool
) -> Decimal:
    """The tariff to bill, or TariffRefusedError (409) naming the site's and the asked price."""
    site = await applicable(ctx, station.id, connector_id)
    verdict = tariffs.price(requested, site, may_set_price=may_set_price)
    if isinstance(verdict, TariffRefusal):
        log.warning(
            "start.refused code=%s station=%s connector=%s tariff=%s site_tariff=%s",
            verdict.code,
            station.id,
            connector_id,
            requested,
            None if site is None else site.tariff,
        )
        raise TariffRefusedError(
            verdict.message,
            code=verdict.code,
            siteTariff=None if site is None else str(site.tariff),
            requestedTariff=None if requested is None else str(requested),
        )
    return verdict
