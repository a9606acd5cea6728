"""The id tags page in Debian's chromium against `csms serve`: every action done in the page, its effect read back
through the REST API (`GET /api/id-tags/...`), an OCPP Authorize or the database.

An admin adds a tag (status, expiry, parent), is refused a duplicate and an empty one, blocks it (a charge
point's Authorize is answered Blocked), unblocks it, sets and clears an expiry and a parent, searches, blocks
and deletes a tag that is charging (asked first; the open transaction goes on) and deletes one that is not.
An operator sees the list read-only and is refused a change; a viewer does not see it.
Screenshots: console-idtags-*.png.
"""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent, Transaction
from tests.support.chargepoint import connect
from tests.support.console import CHROMIUM, DESKTOP, PHONE, SCREENSHOTS, add_user, browser_sign_in, launch
from tests.support.db import with_db
from tests.support.server import ADMIN_TOKEN

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium"),
    # The console on SQLite only: its database work is the REST API's, tested on both databases elsewhere.
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def accept_unknown_id_tags():
    return False  # a site: a tag not in the list (a deleted one) is Invalid


def _tag(api: httpx.Client, tag: str) -> dict | None:
    """The tag as the REST API has it, None when it is not listed."""
    res = api.get(f"/api/id-tags/{tag}")
    if res.status_code == 404:
        return None
    assert res.status_code == 200, res.text
    return res.json()["data"]


def _shot(page, name: str, **kw) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"console-idtags-{name}.png"), **kw)


_WIDER = """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1
    && !e.closest('.table-wrap')).map(e => e.tagName + '.' + e.className).slice(0, 8)"""


def _no_page_scroll(page, width: int) -> None:
    """No page-level horizontal scroll: wide tables scroll inside their .table-wrap."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, page.evaluate(_WIDER, width)


def _admin_in_the_browser(http: str, authorize, tx_id: int) -> None:
    """ada, an admin: every action, each checked through the REST API, Authorize or the page itself."""
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with (
        sync_playwright() as p,
        httpx.Client(base_url=http, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api,
    ):
        browser = launch(p)
        try:
            page = browser.new_context(viewport=DESKTOP).new_page()
            browser_sign_in(page, http, "ada", next_path="/ui/id-tags")
            ok, warn, alert = page.locator(".flash.ok"), page.locator(".flash.warn"), page.get_by_role("alert")
            busy = page.locator('tr[data-tag="BUSY1"]')
            expect(busy.locator(".tag-charging")).to_contain_text(f"charging #{tx_id}")
            expect(page.locator('tr[data-tag="KEEP1"] .tag-charging')).to_have_text("no")

            # Add: status, expiry date, parent; read back through the REST API.
            page.get_by_label("Id tag (up to 20").fill("new1")
            page.get_by_label("Status").select_option("Accepted")
            page.get_by_label("Expires on (UTC; empty: never)").fill("2031-05-01")
            page.get_by_label("Parent id tag").fill("family")
            page.get_by_role("button", name="Add id tag").click()
            expect(ok).to_contain_text("Added NEW1 (Accepted): chargers are answered Accepted for it from now.")
            new = page.locator('tr[data-tag="NEW1"]')
            expect(new.locator(".tag-expiry")).to_have_text("2031-05-01 00:00:00 UTC")
            assert _tag(api, "NEW1") == {
                "idTag": "NEW1",
                "status": "Accepted",
                "expiryDate": "2031-05-01T00:00:00Z",
                "parentIdTag": "FAMILY",
                "openTransactions": [],
                "answerNow": "Accepted",
            }
            _shot(page, "added", full_page=True)

            # The REST API's rules: a duplicate (any case) and an empty tag are refused, in words.
            page.get_by_label("Id tag (up to 20").fill("New1")
            page.get_by_role("button", name="Add id tag").click()
            expect(alert).to_have_text("Not added: NEW1 is in the list already.")
            page.get_by_label("Id tag (up to 20").fill("   ")
            page.get_by_role("button", name="Add id tag").click()
            expect(alert).to_have_text("Not added: an id tag is not empty.")
            page.goto(f"{http}/ui/id-tags")

            # Block: a charge point's Authorize is refused. Unblock: accepted again, with expiry and parent.
            new.get_by_role("button", name="Block NEW1").click()
            expect(ok).to_have_text("Blocked NEW1: chargers are answered Blocked for it from now.")
            expect(new.locator(".tag-status")).to_contain_text("Blocked")
            assert _tag(api, "NEW1")["status"] == "Blocked"
            assert authorize("NEW1")["status"] == "Blocked"
            new.get_by_role("button", name="Unblock NEW1").click()
            expect(ok).to_have_text("Unblocked NEW1: chargers are answered Accepted for it from now.")
            assert authorize("new1") == {
                "status": "Accepted",
                "expiryDate": "2031-05-01T00:00:00Z",
                "parentIdTag": "FAMILY",
            }

            # Expiry: a past date makes an Accepted tag answer Expired; cleared, Accepted again.
            keep = page.locator('tr[data-tag="KEEP1"]')
            keep.locator("summary").click()
            keep.get_by_label("Expires on (UTC) for KEEP1").fill("2020-01-01")
            _shot(page, "edit-open", full_page=True)
            keep.get_by_role("button", name="Set expiry").click()
            expect(ok).to_contain_text("Set the expiry date of KEEP1: chargers are answered Expired for it from now.")
            expect(keep.locator(".tag-status")).to_contain_text("answered Expired: past its expiry")
            assert (_tag(api, "KEEP1")["expiryDate"], _tag(api, "KEEP1")["answerNow"]) == (
                "2020-01-01T00:00:00Z",
                "Expired",
            )
            assert authorize("KEEP1")["status"] == "Expired"
            keep.locator("summary").click()
            keep.get_by_role("button", name="No expiry").click()
            expect(ok).to_have_text("Cleared the expiry date of KEEP1: chargers are answered Accepted for it from now.")
            assert _tag(api, "KEEP1")["expiryDate"] is None

            # Parent: set, then cleared.
            keep.locator("summary").click()
            keep.get_by_label("Parent of KEEP1").fill("grp")
            keep.get_by_role("button", name="Set parent").click()
            expect(ok).to_contain_text("Set parent GRP of KEEP1")
            expect(keep.locator(".tag-parent")).to_have_text("GRP")
            assert _tag(api, "KEEP1")["parentIdTag"] == "GRP"
            keep.locator("summary").click()
            keep.get_by_role("button", name="No parent").click()
            expect(ok).to_contain_text("Cleared the parent of KEEP1")
            assert _tag(api, "KEEP1")["parentIdTag"] is None

            # Search: a substring of the tag or its parent, any case.
            page.get_by_label("Search id tags").fill("ew")
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator("tbody tr[data-tag]")).to_have_count(1)
            expect(new).to_be_visible()
            expect(page.locator(".tag-count")).to_have_text("1 tag matching “ew”.")
            page.get_by_label("Search id tags").fill("FAMI")
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator("tbody tr[data-tag]")).to_have_count(1)
            page.get_by_label("Search id tags").fill("nothing-like-it")
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator("tbody")).to_contain_text("No id tag matches “nothing-like-it”.")
            page.get_by_role("link", name="Show all").click()
            expect(page.locator("tbody tr[data-tag]")).to_have_count(3)

            # Block a tag that is charging: said, the session goes on.
            busy.get_by_role("button", name="Block BUSY1").click()
            expect(warn).to_contain_text("Blocked BUSY1: chargers are answered Blocked for it from now.")
            expect(warn).to_contain_text(f"BUSY1 is charging now (transaction #{tx_id}): that session goes on")
            assert _tag(api, "BUSY1")["openTransactions"] == [tx_id]

            # Delete it: asked first, saying the open session is NOT ended; Cancel changes nothing.
            busy.get_by_role("button", name="Delete BUSY1").click()
            expect(page.get_by_role("heading", name="Delete BUSY1?")).to_be_visible()
            expect(page.locator(".callout.warn")).to_contain_text("Deleting the tag does not end that session")
            expect(page.locator(".callout.warn")).to_contain_text(f"transaction #{tx_id}")
            _shot(page, "delete-confirm", full_page=True)
            page.get_by_role("link", name="Cancel").click()
            expect(busy).to_be_visible()
            assert _tag(api, "BUSY1") is not None
            busy.get_by_role("button", name="Delete BUSY1").click()
            page.get_by_role("button", name="Delete BUSY1, leave the session running").click()
            expect(warn).to_contain_text("Deleted BUSY1: chargers are answered Invalid for it from now.")
            expect(warn).to_contain_text(f"Its open session (transaction #{tx_id}) was NOT ended")
            expect(busy).to_have_count(0)
            assert _tag(api, "BUSY1") is None
            assert authorize("BUSY1") == {"status": "Invalid"}

            # A tag that is not charging is deleted at once.
            keep.get_by_role("button", name="Delete KEEP1").click()
            expect(ok).to_have_text("Deleted KEEP1: chargers are answered Invalid for it from now.")
            expect(keep).to_have_count(0)
            assert _tag(api, "KEEP1") is None
            _shot(page, "desktop", full_page=True)

            phone = browser.new_context(**PHONE).new_page()
            browser_sign_in(phone, http, "ada", next_path="/ui/id-tags")
            expect(phone.locator('tr[data-tag="NEW1"]')).to_be_visible()
            _no_page_scroll(phone, 390)
            _shot(phone, "phone", full_page=True)
        finally:
            browser.close()


def _viewer_in_the_browser(http: str) -> None:
    """vic, an operator: the list read-only, and a change refused; vera, a viewer, is not shown the list."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(**PHONE)
            page = context.new_page()
            browser_sign_in(page, http, "vic", next_path="/ui/id-tags")
            expect(page.locator('tr[data-tag="NEW1"] .tag-status')).to_contain_text("Accepted")
            expect(page.get_by_text("Only admins change this list: you see it read-only.")).to_be_visible()
            expect(page.get_by_role("button", name="Block NEW1")).to_have_count(0)
            expect(page.get_by_role("heading", name="Add an id tag")).to_have_count(0)
            expect(page.locator("form[method=post][action^='/ui/id-tags']")).to_have_count(0)
            _no_page_scroll(page, 390)
            _shot(page, "viewer-phone", full_page=True)
            refused = context.request.post(f"{http}/ui/id-tags/block", form={"tag": "NEW1"})
            assert refused.status == 403, refused.text()
            viewer = browser.new_context(**PHONE).new_page()
            browser_sign_in(viewer, http, "vera")
            expect(viewer.get_by_role("link", name="Id tags")).to_have_count(0)
            shown = viewer.goto(f"{http}/ui/id-tags")
            assert shown is not None and shown.status == 403
        finally:
            browser.close()


async def test_id_tags_page_in_the_browser(csms):
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "ada", "admin"))
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "vic", "operator"))
    await trio.to_thread.run_sync(partial(add_user, csms.db_url, "vera", "viewer"))
    async with csms.client() as admin:
        for tag in ("BUSY1", "KEEP1"):
            assert (await admin.post("/api/id-tags", json={"idTag": tag})).status_code == 201
    async with connect(csms.ocpp, "IDT1") as cp:
        tx_id = await cp.start(1, "BUSY1")

        def authorize(tag: str) -> dict:
            """An OCPP Authorize from the charge point, from the browser's thread."""
            answer = trio.from_thread.run(partial(cp.conn.call_raw, "Authorize", {"idTag": tag}))
            return answer["idTagInfo"]

        await trio.to_thread.run_sync(partial(_admin_in_the_browser, csms.http, authorize, tx_id))
        await trio.to_thread.run_sync(partial(_viewer_in_the_browser, csms.http))

    def stored(s):
        tx = s.get(Transaction, tx_id)
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.like("id_tag.%")).order_by(AuditEvent.id))
        return tx.stop_time, [(a.actor, a.action, a.subject) for a in rows]

    stop_time, audit = await trio.to_thread.run_sync(partial(with_db, csms.db_url, stored))
    assert stop_time is None  # blocking and deleting its tag ended no transaction
    assert audit == [
        ("tests", "id_tag.created", "BUSY1"),
        ("tests", "id_tag.created", "KEEP1"),
        ("ada", "id_tag.created", "NEW1"),
        ("ada", "id_tag.updated", "NEW1"),  # blocked
        ("ada", "id_tag.updated", "NEW1"),  # unblocked
        ("ada", "id_tag.updated", "KEEP1"),  # expiry set
        ("ada", "id_tag.updated", "KEEP1"),  # expiry cleared
        ("ada", "id_tag.updated", "KEEP1"),  # parent set
        ("ada", "id_tag.updated", "KEEP1"),  # parent cleared
        ("ada", "id_tag.updated", "BUSY1"),  # blocked while charging
        ("ada", "id_tag.deleted", "BUSY1"),
        ("ada", "id_tag.deleted", "KEEP1"),
    ]
