"""Who sets the price of a session: the site, not the caller. Pure (no IO).

A site's tariff per kWh is set by an admin for a connector, for a whole station (connector 0), or
as the process's `--tariff`; the most specific one applies. A start names a tariff (the seed's
`chargingTariff`: the price the app showed the driver); it must be the site's, or it is refused,
so a caller can neither undercut the site nor bill a driver more than they were shown. Only a
role with the pricing permission (an admin) may start a session at another price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["STATION_WIDE", "PRICING_ROLES", "may_set_price", "SiteTariff", "site_tariff", "TariffRefusal", "price"]

STATION_WIDE = 0  # the connector id under which a station's own tariff is kept
PRICING_ROLES = frozenset({"admin"})  # API token roles and console roles alike


def may_set_price(role: str) -> bool:
    """Whether `role` may start a session at a tariff other than the site's."""
    return role in PRICING_ROLES


@dataclass(frozen=True)
class SiteTariff:
    tariff: Decimal
    source: str  # "connector", "station" or "default" (--tariff): where it was set


def site_tariff(
    station_tariffs: Mapping[int, Decimal], connector_id: int, default: Decimal | None
) -> SiteTariff | None:
    """The tariff of `connector_id` given its station's tariffs (connector id -> tariff, 0: the whole station)."""
    if connector_id != STATION_WIDE and connector_id in station_tariffs:
        return SiteTariff(station_tariffs[connector_id], "connector")
    if STATION_WIDE in station_tariffs:
        return SiteTariff(station_tariffs[STATION_WIDE], "station")
    if default is not None:
        return SiteTariff(default, "default")
    return None


@dataclass(frozen=True)
class TariffRefusal:
    code: str  # "TariffMismatch" or "NoSiteTariff"
    message: str


def price(requested: Decimal | None, site: SiteTariff | None, *, may_set_price: bool) -> Decimal | TariffRefusal:
    """The tariff a start is billed at, or why it is refused. `requested` None: whatever the site's is."""
    if requested is not None and may_set_price:
        return requested
    if site is None:
        return TariffRefusal(
            "NoSiteTariff",
            "No tariff is set for this connector: an admin sets one (PUT /api/tariffs, or csms serve --tariff)",
        )
    if requested is None or requested == site.tariff:  # Decimal equality: 0.3 == 0.30
        return site.tariff
    return TariffRefusal(
        "TariffMismatch",
        f"The tariff of this connector is {site.tariff} per kWh, not {requested}: only an admin may set another price",
    )
