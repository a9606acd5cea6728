"""/docs (Swagger UI) and /redoc on a site without internet: every request stays on this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and fonts from Google): offline, both were
blank. Debian's chromium opens each page with a Playwright route that records every request and
refuses any to another origin (as a site without internet would), and the page must still render
the API: Swagger UI lists its operations, ReDoc shows the title.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

import pytest
import trio

from tests.support.console import CHROMIUM, DESKTOP, SCREENSHOTS, launch

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium"),
    # The console on SQLite only: its database work is the REST API's, tested on both databases elsewhere.
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]


def _open_docs(http: str) -> dict[str, list[str]]:
    """Open both pages; the URLs each requested that left this server's origin."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    origin = urlsplit(http).netloc
    foreign: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport=DESKTOP)
            seen: list[str] = []

            def route(r) -> None:
                url = r.request.url
                seen.append(url)
                if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == origin:
                    r.continue_()
                else:
                    r.abort("internetdisconnected")  # no internet here

            context.route("**/*", route)
            page = context.new_page()

            page.goto(f"{http}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("unstuck CSMS")
            expect(page.locator(".opblock-summary-path").first).to_be_visible()
            expect(page.get_by_text("/api/transactions", exact=True).first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "console-docs-swagger.png"))
            foreign["/docs"] = [u for u in seen if urlsplit(u).netloc not in ("", origin)]

            seen.clear()
            page.goto(f"{http}/redoc")
            expect(page.locator("h1").first).to_contain_text("unstuck CSMS")
            expect(page.get_by_text("/api/transactions").first).to_be_attached()
            page.screenshot(path=str(SCREENSHOTS / "console-docs-redoc.png"))
            foreign["/redoc"] = [u for u in seen if urlsplit(u).netloc not in ("", origin)]
            assert any(u.endswith("/openapi.json") for u in seen), seen  # it did load the API's schema
        finally:
            browser.close()
    return foreign


async def test_docs_and_redoc_render_without_internet(csms):
    foreign = await trio.to_thread.run_sync(partial(_open_docs, csms.http))
    assert foreign == {"/docs": [], "/redoc": []}
    async with csms.client() as api:  # the assets are this server's own, with their licences beside them
        for path in ("swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"):
            res = await api.get(f"/docs/static/{path}")
            assert res.status_code == 200, path
