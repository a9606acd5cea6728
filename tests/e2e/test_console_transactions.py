"""The console's transactions pages in Debian's chromium against `csms serve` and two simulated chargers.

A 1.6 charger (TXA0001) and a 2.0.1 station (TXB0001) each charge once, started from the app (REST),
sampling every second, and are stopped; the second one's id tag would be a spreadsheet formula. A viewer
signs in and narrows the list by charger, tag and state, downloads the CSV (its numbers match the REST
API's), opens a transaction and finds its meter chart, and the list fits a 390 px phone.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from functools import partial

import pytest
import trio
from sqlalchemy import func, select

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.support.console import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    add_user,
    browser_sign_in,
    http_sign_in,
    launch,
)
from tests.support.db import with_db
from tests.support.server import CsmsProcess

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium")

FORMULA_TAG = "=1+2"


@pytest.fixture
def csms_args() -> list[str]:
    return ["--allow-unknown-chargers", "--meter-sample-seconds", "1"]


def _sample_count(db_url: str, tx_id: int) -> int:
    from csms.db.models import MeterSample

    return with_db(db_url, lambda s: s.scalar(select(func.count()).where(MeterSample.transaction_id == tx_id)))


async def _charge(nursery: trio.Nursery, csms: CsmsProcess) -> dict[str, int]:
    """Both chargers charge until each transaction has 3 kept samples, then stop: charger id -> transaction id."""
    spec = FleetSpec(
        seed=5,
        groups=(
            GroupSpec(prefix="TXA", count=1, connectors=1, config={"MeterValueSampleInterval": "1"}, driven=False),
            GroupSpec(
                prefix="TXB",
                count=1,
                connectors=1,
                config={"MeterValueSampleInterval": "1"},
                driven=False,
                ocpp="2.0.1",
            ),
        ),
        driver=None,
        ramp=1000.0,
        call_timeout=5.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(15):
        await fleet.wait_online()
    sessions, txs = {}, {}
    async with csms.client() as admin:
        for cp_id, tag in (("TXA0001", "TAGA"), ("TXB0001", FORMULA_TAG)):
            res = await admin.post(
                "/api/ChargingSession/start-charging-session",
                json={"chargingStationId": cp_id, "connectorId": 1, "chargeTagId": tag, "chargingTariff": "0.30"},
            )
            assert res.status_code == 200, res.text
            sessions[cp_id] = res.json()["data"]["sessionId"]
        with trio.fail_after(20):
            while len(txs) < 2:
                for t in (await admin.get("/api/transactions")).json()["data"]:
                    txs[t["chargePointId"]] = t["transactionId"]
                await trio.sleep(0.2)
        with trio.fail_after(30):  # samples every second: a few seconds of charging
            for tx in txs.values():
                while await trio.to_thread.run_sync(_sample_count, csms.db_url, tx) < 3:
                    await trio.sleep(0.2)
        for session_id in sessions.values():
            res = await admin.post("/api/ChargingSession/stop-charging-session", json={"sessionId": session_id})
            assert res.status_code == 200, res.text
        with trio.fail_after(20):
            while any(t["stopTime"] is None for t in (await admin.get("/api/transactions")).json()["data"]):
                await trio.sleep(0.2)
    return txs


def _browse(http: str, txs: dict[str, int], rest: list[dict]) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = lambda page, name, **kw: page.screenshot(path=str(SCREENSHOTS / f"console-transactions-{name}.png"), **kw)  # noqa: E731
    with sync_playwright() as p:
        browser = launch(p)
        try:
            desk = browser.new_context(viewport=DESKTOP, accept_downloads=True)
            page = desk.new_page()
            browser_sign_in(page, http, "vera", next_path="/ui/transactions")
            rows = page.locator("table.tx-list tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.first).to_contain_text(f"#{txs['TXB0001']}")  # newest first
            shot(page, "list", full_page=True)

            page.get_by_label("Charger id starts with").fill("TXA")
            page.get_by_role("button", name="Filter").click()
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("TAGA")
            page.get_by_label("Charger id starts with").fill("")
            page.get_by_label("Id tag").fill(FORMULA_TAG)
            page.get_by_role("button", name="Filter").click()
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("TXB0001")
            page.get_by_label("Id tag").fill("")
            page.get_by_label("State").select_option("open")
            page.get_by_role("button", name="Filter").click()
            expect(page.get_by_text("No transaction matches.")).to_be_visible()
            page.get_by_label("State").select_option("closed")
            page.get_by_label("Stop reason").fill("NoSuchReason")
            page.get_by_role("button", name="Filter").click()
            expect(rows).to_have_count(0)
            page.get_by_label("Stop reason").fill("")
            page.get_by_label("From", exact=True).fill("2001-01-01")
            page.get_by_label("To", exact=True).fill("2001-01-02")
            page.get_by_role("button", name="Filter").click()
            expect(rows).to_have_count(0)
            page.get_by_role("link", name="Clear").click()
            expect(rows).to_have_count(2)

            # The CSV: the filters it carries, both units, the fee, and the formula tag made text.
            with page.expect_download() as got:
                page.get_by_role("link", name="Download CSV").click()
            download = got.value
            assert download.suggested_filename.startswith("transactions-") and download.suggested_filename.endswith(
                ".csv"
            )
            text = open(download.path(), encoding="utf-8").read()
            table = list(csv.DictReader(io.StringIO(text)))
            by_id = {int(r["transaction_id"]): r for r in table}
            assert set(by_id) == set(txs.values())
            for t in rest:
                row = by_id[t["transactionId"]]
                wh = t["meterStop"] - t["meterStart"]
                assert row["energy_wh"] == str(wh) and Decimal(row["energy_kwh"]) == Decimal(wh) / 1000
                assert row["fee"] == (t["session"]["fee"] if t["session"] else "")
                assert row["start_time_utc"] == t["startTime"] and row["stop_time_utc"] == t["stopTime"]
                assert row["meter_start_wh"] == str(t["meterStart"]) and row["stop_reason"] == t["stopReason"]
                assert row["charge_point_id"] == t["chargePointId"]
            assert by_id[txs["TXB0001"]]["id_tag"] == "'" + FORMULA_TAG
            assert by_id[txs["TXB0001"]]["station_transaction_id"]  # 2.0.1: the station's own id too

            # A transaction's page: its facts, a link to its connector, and the chart of its samples.
            page.get_by_role("link", name=f"#{txs['TXA0001']}").click()
            expect(page.get_by_role("heading", level=1)).to_contain_text(f"Transaction #{txs['TXA0001']}")
            expect(page.get_by_role("link", name="Connector 1")).to_have_attribute("href", "/ui/connectors/TXA0001/1")
            chart = page.get_by_role("img", name="Energy delivered over time")
            expect(chart).to_be_visible()
            points = page.locator("svg.chart-wide polyline.energy").get_attribute("points") or ""
            assert len(points.split()) >= 3, points
            expect(page.locator("svg.chart-wide title")).to_have_text("Energy delivered over time")
            page.get_by_text("Readings (").click()
            expect(page.locator("table.tx-readings tbody tr").first).to_contain_text("meterStart")
            shot(page, "detail", full_page=True)
            page.goto(f"{http}/ui/transactions/{txs['TXB0001']}")
            expect(page.locator("svg.chart-wide")).to_be_visible()
            shot(page, "detail-201", full_page=True)
            page.goto(f"{http}/ui/transactions/999999")
            expect(page.get_by_role("heading", level=1)).to_have_text("Not found")

            phone = browser.new_context(**PHONE)
            mobile = phone.new_page()
            browser_sign_in(mobile, http, "vera", next_path="/ui/transactions")
            expect(mobile.locator("table.tx-list tbody tr")).to_have_count(2)
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-list", full_page=True)
            mobile.goto(f"{http}/ui/transactions/{txs['TXA0001']}")
            expect(mobile.locator("svg.chart-narrow")).to_be_visible()
            expect(mobile.locator("svg.chart-wide")).to_be_hidden()
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-detail", full_page=True)
        finally:
            browser.close()


async def test_a_viewer_filters_downloads_and_charts_transactions(csms: CsmsProcess, nursery):
    await trio.to_thread.run_sync(add_user, csms.db_url, "vera", "viewer")
    txs = await _charge(nursery, csms)
    async with csms.client() as admin:
        rest = (await admin.get("/api/transactions")).json()["data"]
    viewer = await http_sign_in(csms.http, "vera")
    try:
        res = await viewer.get("/ui/transactions", params={"format": "csv", "cp": "TXA"})
    finally:
        await viewer.aclose()
    assert res.status_code == 200 and res.headers["content-type"] == "text/csv; charset=utf-8"
    assert res.headers["content-disposition"].startswith("attachment; filename=transactions-")
    assert "default-src 'self'" in res.headers["content-security-policy"] and res.headers["x-frame-options"] == "DENY"
    assert [r["charge_point_id"] for r in csv.DictReader(io.StringIO(res.text))] == ["TXA0001"]
    await trio.to_thread.run_sync(partial(_browse, csms.http, txs, rest))
