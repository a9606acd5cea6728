"""The console's Chargers pages in a real browser against `csms serve` and simulated chargers.

Every action is done the way an operator does it (headless Debian chromium through playwright's sync API,
in a worker thread) and its effect is checked on the simulated charger's own truth (through
`trio.from_thread`, polled) and in the database through the REST API. Screenshots go to
reports/screenshots/console-chargers-*.png.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from functools import partial

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.support.chargepoint import connect
from tests.support.console import CHROMIUM, DESKTOP, PHONE, SCREENSHOTS, add_user, browser_sign_in, csrf_of, launch
from tests.support.server import ADMIN_TOKEN, CsmsProcess

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium")
# The browser tests on SQLite only: the console's database work is the REST API's, tested on both databases elsewhere.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def csms_args() -> list[str]:
    return ["--allow-unknown-chargers"]


async def _fleet(nursery: trio.Nursery, csms: CsmsProcess, prefix: str, ocpp: str = "1.6") -> Fleet:
    spec = FleetSpec(
        seed=7,
        groups=(
            GroupSpec(
                prefix=prefix,
                count=1,
                connectors=2,
                power_kw=(11.0, 11.0),
                target_kwh=(40.0, 40.0),
                config={"MeterValueSampleInterval": "1"},
                ocpp=ocpp,
            ),
        ),
        driver=None,
        ramp=1000.0,
        call_timeout=3.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    with trio.fail_after(10):
        await fleet.wait_online()
        await fleet[f"{prefix}0001"].flush()
    return fleet


def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """From the browser's thread: poll `check` in the trio thread (where the simulator lives) until it holds."""

    async def wait() -> None:
        with trio.fail_after(timeout):
            while not check():
                await trio.sleep(0.05)

    trio.from_thread.run(wait)


def reload_until(page, locator: Callable[[], object], text: str, timeout: float = 15.0) -> None:
    """Server-rendered pages without a live part: reload until `text` shows (expect polls within each load)."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout
    while True:
        try:
            expect(locator()).to_contain_text(text, timeout=700)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


def _shot(page, name: str, **kw) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-chargers-{name}.png"), **kw)


def _api(http: str) -> httpx.Client:
    return httpx.Client(base_url=http, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def _open_tx(http: str, cp_id: str) -> list[dict]:
    with _api(http) as api:
        rows = api.get("/api/transactions", params={"chargePointIdPrefix": cp_id}).json()["data"]
    return [t for t in rows if t["stopTime"] is None]


# ------------------------------------------------------------------ actions, 1.6 and 2.0.1
def _operate(http: str, fleet: Fleet, cp_id: str, tag: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    cp = fleet[cp_id]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(page, http, "olga", next_path="/ui/chargers")
            row = page.locator(f'tr[data-charger="{cp_id}"]')
            expect(row.locator(".state")).to_have_text("online")
            expect(row.locator("a.plug")).to_have_count(2)
            expect(row.locator("a.plug").first).to_have_attribute("href", f"/ui/connectors/{cp_id}/1")
            expect(row).to_contain_text("none")  # no password (lab mode)
            page.get_by_label("Charger id").fill(cp_id[-3:].lower())  # a part of it, any case
            page.get_by_role("button", name="Search").click()
            expect(page.locator("tbody tr")).to_have_count(1)
            _shot(page, f"list-{cp_id}")

            row.locator("a.cp-link").click()
            expect(page).to_have_url(f"{http}/ui/chargers/{cp_id}")
            expect(page.locator(".charger-history")).to_contain_text("charge point: connected")
            ocpp = "2.0.1" if cp_id.startswith("V2") else "1.6"
            expect(page.locator(".charger-history")).to_contain_text(f"ocpp: {ocpp}")

            # Remote start at the site's tariff (an operator cannot enter another): a session with its fee, as
            # the REST start makes it. A forged form asking another price is refused.
            expect(page.get_by_label("Tariff per kWh")).to_have_count(0)
            forged = page.request.post(
                f"{http}/ui/chargers/{cp_id}/start",
                form={"csrf": csrf_of(page.content()), "connector": "1", "id_tag": tag, "tariff": "0"},
                headers={"Origin": http},
                max_redirects=0,
            )
            assert forged.status == 303  # back to the charger page, whose flash says why
            page.reload()
            expect(page.locator(".flash.warn")).to_contain_text("only an admin may set another price")
            page.get_by_label("Connector", exact=True).select_option("1")
            page.get_by_label("Id tag").fill(tag)
            page.get_by_role("button", name="Remote start").click()
            expect(page.locator(".flash.ok")).to_contain_text(f"Remote start on {cp_id} connector 1 for {tag}")
            until(lambda: cp.connector_truth(1).transaction_running)
            reload_until(page, lambda: page.locator(".charger-transactions"), tag)
            expect(page.locator(".charger-transactions")).to_contain_text("0.4 per kWh")
            _shot(page, f"started-{cp_id}", full_page=True)

            # Remote stop: what will end first (the energy so far), then the stop.
            until(lambda: cp.connector_truth(1).session_energy_wh > 0)
            page.reload()
            page.locator(".charger-transactions").get_by_role("button", name=re.compile("Stop transaction")).click()
            expect(page.get_by_role("heading", name=re.compile(f"Stop transaction .* on {cp_id}"))).to_be_visible()
            expect(page.locator(".stop-facts")).to_contain_text("Energy so far")
            expect(page.locator(".stop-facts")).to_contain_text(tag)
            _shot(page, f"stop-confirm-{cp_id}")
            assert cp.connector_truth(1).transaction_running  # nothing ended before the confirmation
            page.get_by_role("button", name="Confirm stop").click()
            expect(page.locator(".flash.ok")).to_contain_text("Remote stop of transaction")
            until(lambda: not cp.connector_truth(1).transaction_running)
            until(lambda: not _open_tx(http, cp_id))

            # Availability of one connector: the charger's own truth turns inoperative.
            page.reload()
            page.get_by_role("button", name="Inoperative connector 2").click()
            expect(page.locator(".flash.ok")).to_contain_text(f"Inoperative for connector 2 of {cp_id}: accepted")
            until(lambda: not cp.connector_truth(2).operative)
            until(lambda: cp.connector_truth(2).reported_status == "Unavailable")
            page.get_by_role("button", name="Whole charger operative").click()
            expect(page.locator(".flash.ok")).to_contain_text(f"Operative for the whole charger of {cp_id}")
            until(lambda: cp.connector_truth(2).operative)

            # A hard reset with a transaction running: the confirmation names it and the real connectors.
            page.get_by_label("Connector", exact=True).select_option("2")  # 1 still has the car plugged in
            page.get_by_label("Id tag").fill(tag)
            page.get_by_role("button", name="Remote start").click()
            expect(page.locator(".flash.ok")).to_contain_text(f"Remote start on {cp_id} connector 2")
            until(lambda: cp.connector_truth(2).transaction_running)
            until(lambda: bool(_open_tx(http, cp_id)))
            tx_id = _open_tx(http, cp_id)[0]["transactionId"]
            page.get_by_role("button", name="Hard reset…").click()
            expect(page.get_by_role("heading", name=f"Hard reset {cp_id}?")).to_be_visible()
            expect(page.locator(".preview")).to_contain_text("every connector (1, 2)")
            expect(page.locator(".reset-transactions")).to_contain_text(f"Transaction #{tx_id} on connector 2")
            _shot(page, f"reset-confirm-{cp_id}")
            page.get_by_role("button", name="Confirm hard reset").click()
            expect(page.locator(".flash.ok")).to_contain_text(f"Hard reset of {cp_id}: accepted")
            until(lambda: not cp.connector_truth(2).transaction_running)
            until(lambda: not _open_tx(http, cp_id))
            until(lambda: cp.online)  # rebooted and back
            reload_until(page, lambda: page.locator(".charger-history"), "charge point: disconnected")
            expect(page.locator(".charger-history")).to_contain_text("hard reset by olga")
            expect(page.locator(".charger-history")).to_contain_text("remote start (connector 2) by olga")
            _shot(page, f"history-{cp_id}", full_page=True)
        finally:
            browser.close()


@pytest.mark.parametrize("ocpp", ["1.6", "2.0.1"])
@SQLITE_ONLY
async def test_operator_starts_stops_changes_availability_and_resets_a_charger(csms, nursery, ocpp):
    prefix = "V2CH" if ocpp == "2.0.1" else "CH"
    fleet = await _fleet(nursery, csms, prefix, ocpp)
    cp_id = f"{prefix}0001"
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "olga", "operator"))
    async with csms.client() as admin:  # the site's price there, set by an admin
        r = await admin.put("/api/tariffs", json={"chargingStationId": cp_id, "chargingTariff": "0.40"})
        assert r.status_code == 200, r.text
    await trio.to_thread.run_sync(partial(_operate, csms.http, fleet, cp_id, "TAG42"))
    async with csms.client() as admin:
        txs = (await admin.get("/api/transactions", params={"chargePointIdPrefix": cp_id})).json()["data"]
        sessions = [(await admin.get(f"/api/ChargingSession/{t['session']['sessionId']}")).json()["data"] for t in txs]
    first, second = sorted(sessions, key=lambda s: s["createdAt"])
    # The same session the REST start makes: the tariff, the tag, a fee once it ended.
    assert (first["chargingTariff"], first["chargeTagId"], first["endReason"]) == ("0.4", "TAG42", "Remote"), first
    assert first["chargingTotalFee"] is not None and first["energyWh"] > 0, first
    assert second["endReason"] is not None and second["chargingTotalFee"] is not None, second  # the reset ended it


# ------------------------------------------------------------------ offline charger (issue item)
def _offline(http: str, fleet: Fleet, cp_id: str, cut: Callable[[], None]) -> None:
    from playwright.sync_api import expect, sync_playwright

    cp = fleet[cp_id]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(page, http, "olga", next_path=f"/ui/connectors/{cp_id}/1")
            expect(page.get_by_role("button", name="Ask for status")).to_be_enabled()
            # The connector page's reset confirmation lists the real connectors, never connector 0.
            page.get_by_role("button", name="Soft reset").click()
            expect(page.get_by_role("heading", name=f"Soft reset {cp_id}?")).to_be_visible()
            expect(page.locator(".preview")).to_contain_text("every connector (1, 2)")
            expect(page.locator(".preview")).not_to_contain_text("(0, 1")
            page.get_by_role("link", name="Cancel").click()
            expect(page).to_have_url(f"{http}/ui/connectors/{cp_id}/1")

            trio.from_thread.run_sync(cut)  # the charger's TCP connection drops (no close frame), it stays away
            until(lambda: not cp.online)
            page.goto(f"{http}/ui/chargers/{cp_id}")
            reload_until(page, lambda: page.locator("[data-state]"), "offline")
            since = re.compile(r"offline since \d\d:\d\d:\d\d")
            expect(page.locator(".offline-since")).to_have_text(since)
            expect(page.locator(".offline-reason")).to_contain_text(re.compile(r"is offline since \d\d:\d\d:\d\d"))
            for name in ("Remote start", "Soft reset…", "Hard reset…", "Whole charger inoperative"):
                expect(page.get_by_role("button", name=name)).to_be_disabled()
            # Its history: when it came and when it went, newest first.
            history = page.locator(".charger-history li")
            # Written behind (the OCPP side never waits for it): the page shows it once it is stored.
            reload_until(page, lambda: page.locator(".charger-history li").first, "charge point: disconnected")
            expect(history.first).to_contain_text("connection dropped")
            expect(page.locator(".charger-history")).to_contain_text("charge point: connected")
            _shot(page, "offline-charger", full_page=True)

            # Old main fails here (and already above: its reset confirmation said "every connector (0, 1, 2)", and
            # it had no /ui/chargers/{id} page): connector.html offered "Ask for status" and "Soft reset" to an
            # offline charger with no `disabled` attribute and no reason, and both led to a 409 error page, so
            # to_be_disabled() on "Ask for status" fails, as does the "offline since" reason below.
            page.goto(f"{http}/ui/connectors/{cp_id}/1")
            expect(page.get_by_role("button", name="Ask for status")).to_be_disabled()
            expect(page.get_by_role("button", name="Soft reset")).to_be_disabled()
            expect(page.get_by_role("button", name="Unlock")).to_be_enabled()  # it cleans the database offline too
            expect(page.locator(".actions .offline-reason")).to_contain_text(since)
            _shot(page, "offline-connector", full_page=True)
            page.get_by_role("button", name="Unlock").click()  # still reachable: its preview
            expect(page.get_by_role("heading", name=f"Unlock {cp_id} connector 1?")).to_be_visible()

            phone = browser.new_context(**PHONE).new_page()
            browser_sign_in(phone, http, "olga", next_path=f"/ui/chargers/{cp_id}")
            expect(phone.get_by_role("button", name="Remote start")).to_be_disabled()
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            _shot(phone, "phone-offline-charger", full_page=True)
        finally:
            browser.close()


@SQLITE_ONLY
async def test_an_offline_charger_offers_no_action_that_needs_it_and_has_a_history(csms, nursery):
    fleet = await _fleet(nursery, csms, "OF")
    cp = fleet["OF0001"]
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "olga", "operator"))
    await trio.to_thread.run_sync(
        partial(_offline, csms.http, fleet, "OF0001", partial(cp.disconnect, back_after=600, replay=False))
    )


# ------------------------------------------------------------------ roles, password
def _roles(http: str, cp_id: str) -> str:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            viewer = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(viewer, http, "vic", next_path=f"/ui/chargers/{cp_id}")
            expect(viewer.locator("[data-state]")).to_have_text("online")
            actions = viewer.locator("main section button")
            assert actions.count() >= 8
            for i in range(actions.count()):
                expect(actions.nth(i)).to_be_disabled()
            expect(viewer.locator(".offline-reason")).to_contain_text("actions need the operator role")
            _shot(viewer, "viewer")
            csrf = csrf_of(viewer.content())
            for path, form in (
                ("reset", {"confirm": "yes", "kind": "Soft"}),
                ("start", {"connector": "1", "id_tag": "T1", "tariff": "0.1"}),
                ("availability", {"connector": "0", "type": "Inoperative"}),
                ("password", {"confirm": "yes"}),
            ):
                res = viewer.request.post(
                    f"{http}/ui/chargers/{cp_id}/{path}", form={"csrf": csrf, **form}, headers={"Origin": http}
                )
                assert res.status == 403, (path, res.status)

            admin = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(admin, http, "ada", next_path=f"/ui/chargers/{cp_id}")
            admin.get_by_role("button", name="Set a password…").click()
            expect(admin.get_by_role("heading", name=f"A password for {cp_id}?")).to_be_visible()
            admin.get_by_role("button", name="Make the password").click()
            shown = admin.get_by_label(re.compile("Password"))
            password = shown.input_value()
            assert 16 <= len(password) <= 40 and password.isalnum(), password
            assert password not in admin.url
            _shot(admin, "password-once")
            admin.get_by_role("link", name="Done").click()
            expect(admin.locator(".charger-facts")).to_contain_text("set (HTTP Basic)")
            assert password not in admin.content()  # shown once only
            expect(admin.locator(".charger-history")).to_contain_text("charge point: provisioned by ada")
            return password
        finally:
            browser.close()


@SQLITE_ONLY
async def test_a_viewer_may_not_act_and_an_admin_gives_a_charger_a_password(csms, nursery):
    await _fleet(nursery, csms, "PW")
    for name, role in (("vic", "viewer"), ("ada", "admin")):
        await trio.to_thread.run_sync(partial(add_user, csms.db_url, name, role))
    password = await trio.to_thread.run_sync(partial(_roles, csms.http, "PW0001"))
    async with csms.client() as admin:
        rows = {r["id"]: r for r in (await admin.get("/api/charge-points")).json()["data"]}
    assert rows["PW0001"]["passwordSet"] is True
    # The password works at the OCPP handshake (and nothing else does now).
    token = base64.b64encode(f"PW0001:{password}".encode()).decode()
    with trio.fail_after(10):
        async with open_websocket_url(
            csms.url("PW0001"), subprotocols=["ocpp1.6"], extra_headers=[("Authorization", f"Basic {token}")]
        ) as ws:
            assert ws.subprotocol == "ocpp1.6"
    assert password not in csms.log()


# ------------------------------------------------------------------ 200 chargers
def _many(http: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            phone = browser.new_context(**PHONE).new_page()
            browser_sign_in(phone, http, "olga", next_path="/ui/chargers")
            phone.goto(f"{http}/ui/chargers?sort=id&desc=1")
            expect(phone.locator("tbody tr")).to_have_count(200)
            expect(phone.locator("tbody tr").first).to_have_attribute("data-charger", "SITE0200")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            _shot(phone, "phone-200")
            desk = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(desk, http, "olga", next_path="/ui/chargers")
            desk.locator("thead").get_by_role(
                "link", name=re.compile(r"^Charger")
            ).click()  # sorted by id already: now descending
            expect(desk.locator("tbody tr").first).to_have_attribute("data-charger", "SITE0200")
            _shot(desk, "desktop-200")
        finally:
            browser.close()


@SQLITE_ONLY
async def test_two_hundred_chargers_in_one_page(csms, nursery):
    async with csms.client() as admin:
        for n in range(1, 201):
            res = await admin.post("/api/charge-points", json={"id": f"SITE{n:04d}"})
            assert res.status_code == 201, res.text
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "olga", "operator"))
    from tests.support.console import http_sign_in

    client = await http_sign_in(csms.http, "olga")
    try:
        await client.get("/ui/chargers")  # warm
        took = []
        for _ in range(5):
            started = time.perf_counter()
            res = await client.get("/ui/chargers", params={"sort": "seen"})
            took.append(time.perf_counter() - started)
            assert res.status_code == 200 and res.text.count('<tr data-charger="') == 200
        searched = await client.get("/ui/chargers", params={"q": "site01"})
        assert searched.text.count('<tr data-charger="') == 100  # SITE0100..SITE0199
    finally:
        await client.aclose()
    # Two database reads whatever the count: well under a second for 200 on SQLite (about 50 ms here).
    assert min(took) < 0.5, took
    print(f"/ui/chargers with 200 chargers: best {min(took) * 1000:.0f} ms, worst {max(took) * 1000:.0f} ms")
    await trio.to_thread.run_sync(partial(_many, csms.http))


# ------------------------------------------------------------------ the pure parts
def test_the_list_sorts_by_a_column_with_unknown_values_last_and_counts_no_connector_0():
    from datetime import UTC, datetime

    from csms.core.chargepoint_auth import password_problem
    from csms.ocpp.presence import disconnected_details
    from csms.ui.chargers import ChargerLine, new_password, real_connectors, sort_lines
    from csms.ui.chargers_store import ChargerRow

    def line(cp_id: str, vendor: str | None, online: bool) -> ChargerLine:
        row = ChargerRow(cp_id, cp_id, vendor, None, None, None, None, None, None, None, False)
        return ChargerLine(row, online, None, ())

    lines = [line("B", "zeta", False), line("a", None, True), line("C", "Alpha", False)]
    assert [ln.row.id for ln in sort_lines(lines, "vendor", False)] == ["C", "B", "a"]
    assert [ln.row.id for ln in sort_lines(lines, "vendor", True)] == ["B", "C", "a"]  # unknown last either way
    assert [ln.row.id for ln in sort_lines(lines, "state", False)] == ["a", "B", "C"]
    assert [ln.row.id for ln in sort_lines(lines, "nonsense", False)] == ["a", "B", "C"]  # by id
    assert real_connectors([0, 2, 1, 2]) == [1, 2]
    passwords = {new_password() for _ in range(20)}
    assert len(passwords) == 20 and all(password_problem(p) is None for p in passwords)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        disconnected_details(1001, "offline: no heartbeat or no pong", False, at, at, False)["why"] == "heartbeat lost"
    )
    assert disconnected_details(None, None, False, at, at, False)["why"] == "connection dropped (no close frame)"
    assert disconnected_details(1000, "bye", False, at, at, False)["why"] == "closed"


# ------------------------------------------------------------------ a new charger, from the console alone
def _add(http: str, cp_id: str) -> str:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(page, http, "ada", next_path="/ui/chargers")
            page.get_by_label("Charger id").last.fill(cp_id)
            page.get_by_role("button", name="Add charger").click()
            expect(page.get_by_role("heading", name=f"Password for {cp_id}")).to_be_visible()
            password = page.locator("#new-password").input_value()
            _shot(page, "added")
            page.goto(f"{http}/ui/chargers")
            page.get_by_label("Charger id").last.fill(cp_id)
            page.get_by_role("button", name="Add charger").click()
            expect(page.locator(".flash.warn")).to_contain_text(f"Not added: {cp_id} is registered already")
            return password
        finally:
            browser.close()


@pytest.mark.parametrize("csms_args", [[]])  # no lab mode: a charger needs its id and password
@SQLITE_ONLY
async def test_an_admin_adds_a_charger_and_it_connects_with_the_password_shown(csms, csms_args):
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "ada", "admin"))
    password = await trio.to_thread.run_sync(partial(_add, csms.http, "SITE-AC-01"))
    async with csms.client() as admin:
        rows = {r["id"]: r for r in (await admin.get("/api/charge-points")).json()["data"]}
    assert rows["SITE-AC-01"]["passwordSet"] is True
    with trio.fail_after(15):
        async with connect(csms.ocpp, "SITE-AC-01", password=password) as cp:
            assert (await cp.boot())["status"] == "Accepted"
    assert password not in csms.log()
