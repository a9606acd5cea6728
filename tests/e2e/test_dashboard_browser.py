"""The dashboard in a real browser against `csms serve` and a simulated charger that got stuck.

The charger drops its StopTransaction and never reports its connector's status, and it
ignores TriggerMessage: the CSMS cannot heal it by itself (its maintenance tries every
half second here). An operator signs in, sees the connector `busy` with its reason, opens
it, previews the unlock, confirms it, and the board open in another tab turns `free`
without a reload. Headless Debian chromium through the playwright package (never a
downloaded browser); screenshots in reports/screenshots/ (ignored by git).
"""

from __future__ import annotations

import re
from functools import partial

import httpx
import pytest
import trio

from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option
from tests.support.console import CHROMIUM, PASSWORD, SCREENSHOTS, add_user, browser_sign_in, launch
from tests.support.server import ADMIN_TOKEN, CsmsProcess

STUCK = ("drop_stop_transaction=1,available=false", "silent_connector=1,ignore_trigger=true")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium")


@pytest.fixture
def csms_args() -> list[str]:
    # Maintenance runs every half second and probes quickly: the connector stays stuck anyway.
    # A meter sample older than 2 s is no live evidence (samples come every second here).
    return [
        "--allow-unknown-chargers",
        "--maintenance-interval-seconds",
        "0.5",
        "--status-grace-seconds",
        "1",
        "--quiet-transaction-seconds",
        "2",
        "--orphan-grace-seconds",
        "1",
        "--live-evidence-seconds",
        "2",
    ]


async def _stuck_connector(nursery: trio.Nursery, csms: CsmsProcess) -> tuple[Fleet, int, str]:
    """UI0001 connector 1: a session started from the app, charged, then the car left and no stop came."""
    spec = FleetSpec(
        seed=3,
        groups=(GroupSpec(prefix="UI", count=1, connectors=2, config={"MeterValueSampleInterval": "1"}),),
        faults=tuple(parse_fault_option(f) for f in STUCK),
        driver=None,
        ramp=1000.0,
        call_timeout=3.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    cp = fleet["UI0001"]
    with trio.fail_after(10):
        await fleet.wait_online()
        await cp.flush()
    async with csms.client() as admin:
        res = await admin.post(
            "/api/ChargingSession/start-charging-session",
            json={"chargingStationId": "UI0001", "connectorId": 1, "chargeTagId": "TAG0001", "chargingTariff": "0.25"},
        )
        assert res.status_code == 200, res.text
        session_id = res.json()["data"]["sessionId"]
    with trio.fail_after(10):
        while cp.connector_truth(1).transaction_id is None:
            await trio.sleep(0.1)
    tx_id = cp.connector_truth(1).transaction_id
    await trio.sleep(3)  # meter samples every second
    await cp.unplug(1)  # the car leaves; StopTransaction is never sent, nor any status
    await trio.sleep(3)  # the CSMS's own probes (trigger ignored) change nothing
    async with csms.client() as admin:
        row = (await admin.get("/api/connectors/UI0001/1/occupancy")).json()["data"]
    assert row["verdict"] == "busy" and row["reasons"] == [f"open_transaction:{tx_id}"], row
    return fleet, tx_id, session_id


def _browse(http: str, tx_id: int) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = lambda page, name, **kw: page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), **kw)  # noqa: E731
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            desk = browser.new_context(viewport={"width": 1280, "height": 900})
            board = desk.new_page()
            board.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            board.goto(f"{http}/ui/")
            expect(board).to_have_url(f"{http}/ui/login?next=/ui/")

            shot(board, "login")
            # A wrong password: refused with a clear message, no session cookie; the name stays filled in.
            board.get_by_label("User name").fill("olga")
            board.get_by_label("Password").fill("not her password")
            board.get_by_role("button", name="Sign in", exact=True).click()
            expect(board.get_by_role("alert")).to_contain_text("Sign-in failed")
            assert not [c for c in desk.cookies() if c["name"] == "unstuck_ui"]
            shot(board, "login-refused")

            expect(board.get_by_label("User name")).to_have_value("olga")
            board.get_by_label("Password").fill(PASSWORD)
            board.get_by_role("button", name="Sign in", exact=True).click()
            expect(board).to_have_url(f"{http}/ui/")
            cookie = next(c for c in desk.cookies() if c["name"] == "unstuck_ui")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0, cookie

            # The board: busy, with its reason in plain words, and suspected stuck.
            card = board.locator('[data-connector="UI0001/1"]')
            expect(card.locator(".verdict")).to_have_text("busy")
            expect(card.locator(".reasons")).to_contain_text(f"open transaction {tx_id} (TAG0001) since")
            expect(card.locator(".suspect")).to_contain_text("silent connector")
            shot(board, "board-busy", full_page=True)
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
            )
            mobile = phone.new_page()
            browser_sign_in(mobile, http, "olga")
            expect(mobile.locator('[data-connector="UI0001/1"] .verdict')).to_have_text("busy")
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-board-busy")
            mobile.goto(f"{http}/ui/connectors/UI0001/1")
            expect(mobile.locator("#verdict-h")).to_have_text("busy")
            shot(mobile, "phone-connector-busy")

            board.get_by_label("Suspected stuck").check()  # the filters: only connectors that look stuck ...
            expect(board).to_have_url(re.compile(r"/ui/\?q=&stuck=1"))
            expect(board.locator("[data-connector]")).to_have_count(1)
            expect(card).to_be_visible()
            board.get_by_label("Suspected stuck").uncheck()
            board.get_by_label("Busy only").check()  # ... only busy ones
            expect(board.locator("[data-connector]")).to_have_count(1)
            board.get_by_label("Busy only").uncheck()
            expect(board).to_have_url(re.compile(r"/ui/\?q=&sort=state&view=table$"))
            expect(board.locator("[data-connector]")).to_have_count(1)  # connector 2 never said a word: unknown
            loaded_at = board.evaluate("performance.timeOrigin")

            # The connector page, in a second tab: every raw signal and the timeline.
            page = desk.new_page()
            page.goto(f"{http}{card.locator('a').get_attribute('href')}")
            expect(page.locator("#verdict-h")).to_have_text("busy")
            expect(page.locator(".signals")).to_contain_text(f"#{tx_id} · id tag TAG0001")
            expect(page.locator(".signals")).to_contain_text("none reported since the charger connected")
            expect(page.locator(".timeline")).to_contain_text(f"transaction {tx_id} started")
            expect(page.locator(".timeline")).to_contain_text("maintenance: trigger status")
            shot(page, "connector-busy", full_page=True)

            # Unlock: the preview first, changing nothing.
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", name="Unlock UI0001 connector 1?")).to_be_visible()
            expect(page.locator(".steps")).to_contain_text("Force-end 1 session")
            expect(page.locator(".steps")).to_contain_text("Close 1 transaction")
            expect(page.locator(".steps")).to_contain_text(f"#{tx_id} (id tag TAG0001")
            expect(page.locator(".steps")).to_contain_text("Send UnlockConnector to UI0001")
            shot(page, "unlock-preview", full_page=True)
            with httpx.Client(base_url=http, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
                still = api.get("/api/connectors/UI0001/1/occupancy").json()["data"]
            assert still["verdict"] == "busy", still

            page.get_by_role("button", name="Confirm unlock").click()
            expect(page.locator(".flash.ok")).to_contain_text(
                "Unlocked: connector 1 is free. 1 stuck session(s) force-ended."
            )
            expect(page.locator("#verdict-h")).to_have_text("free")
            expect(page.locator(".timeline")).to_contain_text("connector: unlock by olga")
            shot(page, "connector-freed", full_page=True)

            # The board in the first tab turns free by itself: no reload.
            expect(card.locator(".verdict")).to_have_text("free", timeout=10_000)
            assert board.evaluate("performance.timeOrigin") == loaded_at
            expect(card.locator(".reasons")).to_have_count(0)
            shot(board, "board-freed", full_page=True)
            board.goto(f"{http}/ui/?busy=1")
            expect(board.locator(".empty")).to_be_visible()

            # A POST without the CSRF token is refused, with the session cookie and all.
            refused = desk.request.post(f"{http}/ui/connectors/UI0001/1/unlock", form={"x": "1"})
            assert refused.status == 403 and "CSRF" in refused.text(), refused.text()

            # Sign-out ends the session.
            board.get_by_role("button", name="Sign out").click()
            expect(board).to_have_url(f"{http}/ui/login?why=signed_out")
            expect(board.get_by_role("status")).to_contain_text("You signed out.")
            board.goto(f"{http}/ui/")
            expect(board.get_by_label("User name")).to_be_visible()

            # The phone, after the unlock.
            mobile.goto(f"{http}/ui/")
            expect(mobile.locator('[data-connector="UI0001/1"] .verdict')).to_have_text("free")
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-board-freed")
            mobile.goto(f"{http}/ui/connectors/UI0001/1")
            expect(mobile.locator("#verdict-h")).to_have_text("free")
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-connector", full_page=True)
            mobile.goto(f"{http}/ui/audit")
            expect(mobile.locator("table.log")).to_contain_text("connector: unlock")
            assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
            shot(mobile, "phone-audit", full_page=True)
            mobile.goto(f"{http}/ui/maintenance")
            mobile.get_by_role("button", name="Preview (dry run)").click()
            expect(mobile.get_by_role("heading", name="Dry run")).to_be_visible()
            shot(mobile, "phone-maintenance", full_page=True)
        finally:
            browser.close()
    assert dialogs == []


async def test_operator_frees_a_stuck_connector_in_the_browser(csms, nursery):
    _fleet, tx_id, session_id = await _stuck_connector(nursery, csms)
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "olga", "operator"))
    await trio.to_thread.run_sync(partial(_browse, csms.http, tx_id))
    async with csms.client() as admin:
        tx = {
            t["transactionId"]: t
            for t in (await admin.get("/api/transactions", params={"chargePointIdPrefix": "UI"})).json()["data"]
        }[tx_id]
        session = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
        audit = (await admin.get("/api/connectors/UI0001/1/occupancy")).json()["data"]
    assert tx["stopReason"] == "ForceEnded" and tx["session"]["sessionId"] == session_id
    assert session["energyWh"] > 0 and session["meterSource"] == "meter_values", session  # the last sample
    assert session["feeWaived"] is None and audit["verdict"] == "free"


def _browse_live(http: str, tx_id: int) -> None:
    """The car on connector 1 is still charging: the preview says so, leaves it open, and only a second,
    explicit confirmation stops it."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            # Machines may still sign in with an admin API token.
            page.goto(f"{http}/ui/login")
            page.get_by_text("Sign in with an admin API token instead").click()
            page.get_by_label("Admin token").fill(ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in with token").click()
            expect(page).to_have_url(f"{http}/ui/")
            page.goto(f"{http}/ui/connectors/LV0001/1")
            page.get_by_role("button", name="Unlock").click()
            callout = page.locator(".callout.warn")
            expect(callout).to_contain_text("Still charging: left open")
            expect(callout).to_contain_text(f"Transaction #{tx_id}")
            expect(callout).to_contain_text("still delivering energy: last meter sample")
            expect(page.locator(".steps")).to_contain_text("Not send UnlockConnector")
            expect(page.locator(".steps")).not_to_contain_text("Force-end")
            expect(page.get_by_role("button", name="Clean only what is stuck")).to_have_count(0)  # nothing is
            page.screenshot(path=str(SCREENSHOTS / "dashboard-unlock-live.png"), full_page=True)

            page.get_by_role("button", name="End the live session too…").click()  # the second, explicit step
            expect(page.locator(".callout.danger")).to_contain_text("This ends a session that is still charging")
            expect(page.locator(".steps")).to_contain_text(f"Ask the charger to stop transaction #{tx_id}")
            expect(page.locator(".steps")).to_contain_text("Send UnlockConnector to LV0001")
            page.screenshot(path=str(SCREENSHOTS / "dashboard-unlock-live-confirm.png"), full_page=True)
            page.get_by_role("button", name="Stop the live session and unlock").click()
            # Free at once, or still held while the car's cable is in (the charger says Finishing): either is said.
            flash = page.locator(".flash")
            expect(flash).to_contain_text(
                re.compile(
                    r"Unlocked: connector 1 is free\.|The charger unlocked connector 1, but it still counts as busy"
                ),
                timeout=20_000,
            )
            expect(flash).to_contain_text("the charger was asked to stop it first")
            page.screenshot(path=str(SCREENSHOTS / "dashboard-unlock-live-done.png"), full_page=True)
        finally:
            browser.close()


async def test_operator_is_asked_twice_before_a_session_still_charging_is_ended(csms, nursery):
    spec = FleetSpec(
        seed=5,
        groups=(
            GroupSpec(
                prefix="LV",
                count=1,
                connectors=1,
                power_kw=(22.0, 22.0),
                target_kwh=(40.0, 40.0),
                config={"MeterValueSampleInterval": "1"},
            ),
        ),
        driver=None,
        ramp=1000.0,
        call_timeout=3.0,
    )
    fleet = Fleet(spec, csms.ocpp, trace=TraceWriter(keep=True))
    await nursery.start(fleet.run)
    cp = fleet["LV0001"]
    with trio.fail_after(10):
        await fleet.wait_online()
    async with csms.client() as admin:
        res = await admin.post(
            "/api/ChargingSession/start-charging-session",
            json={"chargingStationId": "LV0001", "connectorId": 1, "chargeTagId": "TAG0001", "chargingTariff": "0.25"},
        )
        session_id = res.json()["data"]["sessionId"]
    with trio.fail_after(10):
        while cp.connector_truth(1).transaction_id is None:
            await trio.sleep(0.1)
    tx_id = cp.connector_truth(1).transaction_id
    await trio.sleep(1.5)  # a meter sample or two
    await trio.to_thread.run_sync(partial(_browse_live, csms.http, tx_id))
    assert not cp.connector_truth(1).transaction_running  # the charger stopped it when asked
    async with csms.client() as admin:
        session = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
    assert (session["endReason"], session["meterSource"]) == ("Remote", "meter_stop"), session
