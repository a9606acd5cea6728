"""axe-core (npm) on the console's main pages, desktop and phone: no serious or critical violations.

Skipped, saying why, when node/npm or Debian's chromium are absent.
"""

from __future__ import annotations

import shutil
from functools import partial

import pytest
import trio

from tests.support.chargepoint import connect
from tests.support.console import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    add_user,
    axe_problems,
    axe_source,
    browser_sign_in,
    http_sign_in,
    launch,
)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium"),
    pytest.mark.skipif(shutil.which("npm") is None, reason="axe-core comes from npm: apt-get install -y nodejs npm"),
    # The console on SQLite only: its database work is the REST API's, tested on both databases elsewhere.
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]

PAGES = ("/ui/login", "/ui/", "/ui/connectors/AXE1/1", "/ui/chargers", "/ui/transactions", "/ui/id-tags", "/ui/users")


@pytest.fixture
def csms_args() -> list[str]:
    return ["--allow-unknown-chargers", "--quiet-transaction-seconds", "1"]


def _audit(http: str, source: str) -> dict[str, list[str]]:
    from playwright.sync_api import sync_playwright

    found: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = launch(p)
        try:
            for name, options in (("desktop", {"viewport": DESKTOP}), ("phone", PHONE)):
                page = browser.new_context(bypass_csp=True, **options).new_page()  # axe is injected as a script
                page.goto(f"{http}/ui/login")
                found[f"{name} /ui/login"] = axe_problems(page, source)
                browser_sign_in(page, http, "ada")
                for path in PAGES[1:]:
                    page.goto(f"{http}{path}")
                    page.wait_for_load_state("networkidle")
                    found[f"{name} {path}"] = axe_problems(page, source)
        finally:
            browser.close()
    return found


async def test_no_serious_or_critical_accessibility_violations(csms):
    source = await trio.to_thread.run_sync(axe_source)
    assert source is not None
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "ada", "admin"))
    async with connect(csms.ocpp, "AXE1") as cp, connect(csms.ocpp, "AXE2") as free:
        await free.status(1, "Available")
        await cp.status(1, "Finishing")  # a suspected-stuck connector, so the board shows its warnings
        await cp.start(2, "TAGAXE")
        client = await http_sign_in(csms.http, "ada")
        try:
            with trio.fail_after(15):  # until the board shows the suspicion (its status older than the quiet 1 s)
                while 'class="stuck-list"' not in (await client.get("/ui/board/rows")).text:
                    await trio.sleep(0.2)
        finally:
            await client.aclose()
        found = await trio.to_thread.run_sync(partial(_audit, csms.http, source))
    problems = {page: lines for page, lines in found.items() if lines}
    assert not problems, "\n".join(f"{page}: {line}" for page, lines in problems.items() for line in lines)
