"""The site sets the price (csms.core.tariffs): which tariff applies, and when a start's own is refused."""

from __future__ import annotations

from decimal import Decimal as D

from csms.core.tariffs import SiteTariff, TariffRefusal, may_set_price, price, site_tariff


def test_the_most_specific_tariff_applies():
    rows = {0: D("0.30"), 2: D("0.45")}
    assert site_tariff(rows, 2, D("0.20")) == SiteTariff(D("0.45"), "connector")
    assert site_tariff(rows, 1, D("0.20")) == SiteTariff(D("0.30"), "station")
    assert site_tariff({2: D("0.45")}, 1, D("0.20")) == SiteTariff(D("0.20"), "default")
    assert site_tariff({}, 1, None) is None


def test_a_start_must_ask_the_sites_tariff_unless_it_may_set_prices():
    site = SiteTariff(D("0.30"), "station")
    assert price(D("0.3"), site, may_set_price=False) == D("0.30")  # the same number, however written
    assert price(None, site, may_set_price=False) == D("0.30")  # the console's empty field: the site's
    cheap = price(D("0"), site, may_set_price=False)
    assert isinstance(cheap, TariffRefusal) and cheap.code == "TariffMismatch"
    assert "0.30" in cheap.message and "admin" in cheap.message
    dear = price(D("0.31"), site, may_set_price=False)  # nor more than the driver was shown
    assert isinstance(dear, TariffRefusal) and dear.code == "TariffMismatch"
    assert price(D("0"), site, may_set_price=True) == D("0")  # an admin's free test charge
    assert price(None, site, may_set_price=True) == D("0.30")


def test_without_a_site_tariff_only_a_pricing_role_may_start():
    refused = price(D("0.25"), None, may_set_price=False)
    assert isinstance(refused, TariffRefusal) and refused.code == "NoSiteTariff"
    assert isinstance(price(None, None, may_set_price=True), TariffRefusal)  # nothing to bill at all
    assert price(D("0.25"), None, may_set_price=True) == D("0.25")


def test_only_admins_may_set_prices_whether_token_or_console_role():
    assert may_set_price("admin")
    assert not any(may_set_price(r) for r in ("user", "operator", "viewer", "", "Admin"))
