"""The Users page in Debian's chromium against `csms serve`: people and roles as an admin manages them.

ada (an admin, made with `csms users add`) adds an operator in the page; the operator signs in in a second
browser context; ada makes them a viewer and their next page load sends them to sign-in, saying why. As a
viewer they see no Users link and are refused the page (403). The last admin cannot be demoted or disabled;
disabling a user ends their session; five wrong passwords for one name and the sixth sign-in, even with the
right password, is refused (429). Screenshots: console-users-*.png.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent
from tests.support.console import CHROMIUM, DESKTOP, PASSWORD, PHONE, SCREENSHOTS, add_user, browser_sign_in, launch
from tests.support.db import with_db

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium")

OLLY_PASSWORD = "olly's long password"
ENDED = "Your session ended"


def _shot(page, name: str, **kw) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"console-users-{name}.png"), **kw)


def _no_page_scroll(page, width: int) -> None:
    """No page-level horizontal scroll: a wide table scrolls inside its .table-wrap."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def _sign_in_form(page, name: str, password: str):
    """Fill and send the sign-in form; the POST's response."""
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in", exact=True).click()
    return answer.value


def _set_role(admin, name: str, role: str) -> None:
    row = admin.locator(f'tr[data-user="{name}"]')
    row.get_by_label(f"Role of {name}").select_option(role)
    row.get_by_role("button", name="Set role").click()


def _people(http: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            admin = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(admin, http, "ada", next_path="/ui/users")
            expect(admin.get_by_role("link", name="Users")).to_be_visible()

            # ada adds an operator in the page.
            admin.get_by_label("Name").fill("olly")
            admin.locator("#new-role").select_option("operator")
            admin.get_by_label("Password (at least 10 characters)").fill(OLLY_PASSWORD)
            admin.get_by_role("button", name="Add user").click()
            expect(admin.locator(".flash.ok")).to_have_text("Added olly (operator). They can sign in now.")
            olly_row = admin.locator('tr[data-user="olly"]')
            expect(olly_row).to_contain_text("operator")
            _shot(admin, "desktop", full_page=True)

            # olly signs in in a second browser context; an operator sees no Users link.
            other = browser.new_context(**PHONE)
            olly = other.new_page()
            browser_sign_in(olly, http, "olly", OLLY_PASSWORD)
            expect(olly.get_by_role("link", name="Connectors")).to_be_visible()
            expect(olly.get_by_role("link", name="Users")).to_have_count(0)

            # ada makes olly a viewer: olly's next page load goes to sign-in, saying why.
            _set_role(admin, "olly", "viewer")
            expect(admin.locator(".flash.ok")).to_contain_text("Changed olly: role viewer.")
            expect(olly_row.locator("td").first).to_have_text("viewer")
            olly.goto(f"{http}/ui/")
            expect(olly).to_have_url(f"{http}/ui/login?next=/ui/&why=ended")
            expect(olly.get_by_role("status")).to_contain_text(ENDED)
            _shot(olly, "phone-session-ended", full_page=True)

            # As a viewer: no Users link, and the page itself is refused.
            assert _sign_in_form(olly, "olly", OLLY_PASSWORD).status == 303
            expect(olly).to_have_url(f"{http}/ui/")
            expect(olly.get_by_role("link", name="Users")).to_have_count(0)
            refused = olly.goto(f"{http}/ui/users")
            assert refused is not None and refused.status == 403
            expect(olly.get_by_role("alert")).to_contain_text("this needs the admin role")
            _no_page_scroll(olly, 390)

            # The last admin can be neither demoted nor disabled.
            _set_role(admin, "ada", "operator")
            expect(admin.locator(".flash.warn")).to_have_text(
                "Not changed: ada is the last admin; make another admin first."
            )
            expect(admin).to_have_url(f"{http}/ui/users")  # a refusal is reached by a redirect: reload sends nothing
            admin.locator('tr[data-user="ada"]').get_by_role("button", name="Disable ada").click()
            expect(admin.locator(".flash.warn")).to_have_text(
                "Not changed: ada is the last admin; make another admin first."
            )
            expect(admin.locator('tr[data-user="ada"] td').first).to_have_text("admin")
            _shot(admin, "last-admin", full_page=True)

            # Disabling olly ends their session, and they cannot sign in again.
            admin.goto(f"{http}/ui/users")
            admin.locator('tr[data-user="olly"]').get_by_role("button", name="Disable olly").click()
            expect(admin.locator(".flash.ok")).to_contain_text("Changed olly: disabled.")
            expect(olly_row).to_contain_text("disabled")
            olly.goto(f"{http}/ui/transactions")
            expect(olly).to_have_url(f"{http}/ui/login?next=/ui/transactions&why=ended")
            expect(olly.get_by_role("status")).to_contain_text(ENDED)
            assert _sign_in_form(olly, "olly", OLLY_PASSWORD).status == 401
            expect(olly.get_by_role("alert")).to_contain_text("Sign-in failed")

            # The admin's page on a phone: the table scrolls inside its wrap, not the page.
            phone = browser.new_context(**PHONE).new_page()
            browser_sign_in(phone, http, "ada", next_path="/ui/users")
            expect(phone.locator('tr[data-user="olly"]')).to_contain_text("disabled")
            _shot(phone, "phone", full_page=True)
            _no_page_scroll(phone, 390)

            # The throttle: five wrong passwords for one name, then even the right one is refused.
            guesser = browser.new_context(viewport=DESKTOP).new_page()
            guesser.goto(f"{http}/ui/login")
            for _ in range(5):
                assert _sign_in_form(guesser, "tess", "not her password").status == 401
                expect(guesser.get_by_role("alert")).to_contain_text("Sign-in failed")
            throttled = _sign_in_form(guesser, "tess", PASSWORD)
            assert throttled.status == 429
            expect(guesser.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
            expect(guesser).not_to_have_url(f"{http}/ui/")
            _shot(guesser, "throttled")
            # Another name from the same address still signs in.
            assert _sign_in_form(guesser, "ada", PASSWORD).status == 303
            expect(guesser).to_have_url(f"{http}/ui/")
        finally:
            browser.close()


async def test_users_page_in_the_browser(csms):
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "ada", "admin"))
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "tess", "operator"))
    await trio.to_thread.run_sync(partial(_people, csms.http))

    def audited(s):
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.like("ui.user_%")).order_by(AuditEvent.id))
        return [(a.actor, a.action, a.subject) for a in rows if a.actor == "ada"]  # not `csms users add`

    assert await trio.to_thread.run_sync(partial(with_db, csms.db_url, audited)) == [
        ("ada", "ui.user_added", "olly"),
        ("ada", "ui.user_changed", "olly"),  # role viewer
        ("ada", "ui.user_changed", "olly"),  # disabled
    ]
