"""The dashboard's doors without a browser: sign-in, the session cookie, CSRF, sign-out, audit; and the
REST unlock preview (`"dryRun": true`) that the dashboard's preview shows."""

from __future__ import annotations

import re

import httpx
import pytest
import trio
from ocpp.routing import on

from tests.support.chargepoint import Answers, connect
from tests.support.server import ADMIN_TOKEN, USER_TOKEN, CsmsProcess


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def _signed_in(csms: CsmsProcess) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=csms.http, timeout=30, headers={"Origin": csms.http})
    page = await client.get("/ui/login")
    res = await client.post("/ui/login", data={"csrf": _csrf(page.text), "next": "/ui/", "token": ADMIN_TOKEN})
    assert res.status_code == 303 and res.headers["location"] == "/ui/", res.text
    return client


async def test_wrong_tokens_are_refused_with_one_clear_message(csms):
    async with httpx.AsyncClient(base_url=csms.http, timeout=30) as client:
        for token in ("not-a-token-at-all", USER_TOKEN):  # unknown, and a valid token without the admin role
            page = await client.get("/ui/login")
            res = await client.post("/ui/login", data={"csrf": _csrf(page.text), "token": token})
            assert res.status_code == 401
            assert "Sign-in failed: that admin token is not valid." in res.text
            assert "unstuck_ui=" not in res.headers.get("set-cookie", "")
        res = await client.get("/ui/")
        assert res.status_code == 303 and res.headers["location"] == "/ui/login?next=/ui/"
        # The sign-in form itself carries a CSRF token.
        res = await client.post("/ui/login", data={"token": ADMIN_TOKEN})
        assert res.status_code == 403 and "unstuck_ui=" not in res.headers.get("set-cookie", "")


async def test_session_cookie_csrf_and_sign_out(csms):
    client = await _signed_in(csms)
    try:
        cookie = next(h for h in client.cookies.jar if h.name == "unstuck_ui")
        raw = [v for k, v in (await _raw_login_headers(csms)) if k == "set-cookie" and v.startswith("unstuck_ui=")][0]
        assert "HttpOnly" in raw and "SameSite=strict" in raw and "Max-Age=28800" in raw and "Path=/ui" in raw
        board = await client.get("/ui/")
        assert board.status_code == 200 and "Connectors" in board.text
        assert "default-src 'self'" in board.headers["content-security-policy"]
        csrf = _csrf(board.text)

        # Every POST needs this session's CSRF token, from this origin.
        for data, headers in (({}, {}), ({"csrf": "forged"}, {}), ({"csrf": csrf}, {"Origin": "https://evil.example"})):
            res = await client.post("/ui/maintenance/run", data=data, headers=headers)
            assert res.status_code == 403 and "CSRF" in res.text, (data, headers)
        res = await client.post("/ui/maintenance/preview", data={"csrf": csrf})
        assert res.status_code == 200 and "Dry run:" in res.text and "Nothing was changed." in res.text
        res = await client.post("/ui/connectors/NOPE/1/trigger", data={"csrf": csrf})
        assert res.status_code == 404 and "No active station or charge point" in res.text

        # Another session's token does not do.
        other = await _signed_in(csms)
        res = await other.post("/ui/maintenance/run", data={"csrf": csrf})
        await other.aclose()
        assert res.status_code == 403

        # A tampered cookie is no session.
        value = cookie.value
        client.cookies.set("unstuck_ui", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/ui")
        assert (await client.get("/ui/")).status_code == 303
        assert (await client.get("/ui/board/rows", headers={"X-UI-Poll": "1"})).status_code == 401
        client.cookies.set("unstuck_ui", value, path="/ui")

        # Sign-out revokes the cookie itself, not only the browser's copy.
        res = await client.post("/ui/logout", data={"csrf": csrf})
        assert res.status_code == 303 and res.headers["location"] == "/ui/login?why=signed_out"
        client.cookies.set("unstuck_ui", value, path="/ui")
        assert (await client.get("/ui/")).status_code == 303

    finally:
        await client.aclose()
    events = await _audit(csms)
    assert ("tests", "ui.signed_in") in events and ("tests", "ui.signed_out") in events


async def _raw_login_headers(csms: CsmsProcess) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(base_url=csms.http, timeout=30) as client:
        page = await client.get("/ui/login")
        res = await client.post("/ui/login", data={"csrf": _csrf(page.text), "token": ADMIN_TOKEN})
        return list(res.headers.multi_items())


async def _audit(csms: CsmsProcess) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from csms.db.models import AuditEvent
    from tests.support.db import with_db

    await trio.sleep(0.3)  # audit rows of UI actions are queued writes
    return with_db(csms.db_url, lambda s: [(e.actor, e.action) for e in s.scalars(select(AuditEvent))])


# The car has gone in this story; its sample of a moment ago is not live evidence here (time is compressed).
@pytest.mark.parametrize(
    "csms_args", [["--allow-unknown-chargers", "--force-end-fee", "waive", "--live-evidence-seconds", "0"]]
)
async def test_unlock_dry_run_answers_what_it_would_clean_and_changes_nothing(csms):
    async with csms.client() as admin, connect(csms.ocpp, "DRY1") as cp:
        await cp.status(1, "Available")
        start = await admin.post(
            "/api/ChargingSession/start-charging-session",
            json={"chargingStationId": "DRY1", "connectorId": 1, "chargeTagId": "TAG1", "chargingTariff": "0.40"},
        )
        session_id = start.json()["data"]["sessionId"]
        tx = await cp.start(1, "TAG1", meter_start=2000)
        await cp.meter(1, tx, 9500)
        await trio.sleep(0.3)
        body = {"chargingStationId": "DRY1", "connectorId": 1, "dryRun": True}
        res = await admin.post("/api/ChargingSession/unlock-connector", json=body)
        assert res.status_code == 200, res.text
        answer = res.json()
        data = answer["data"]
        assert answer["message"] == (
            "Dry run: unlock would force-end 1 session(s), close 1 transaction(s), cancel 0 "
            "reservation(s); nothing was changed"
        )
        [ses] = data["sessionsToEnd"]
        assert (ses["sessionId"], ses["transactionId"], ses["energyWh"], ses["meterSource"]) == (
            session_id,
            tx,
            7500,
            "meter_values",
        )
        assert ses["fee"] == "0.00" and "waive" in ses["feeWaived"]  # 7.5 kWh x 0.40 = 3.00, waived
        [closing] = data["transactionsToClose"]
        assert (closing["transactionId"], closing["closingMeterWh"]) == (tx, 9500)
        assert data["reservationsToCancel"] == [] and data["thenSends"] == "UnlockConnector"
        assert [a for a, _ in cp.answers.received if a == "UnlockConnector"] == []
        again = await admin.post("/api/ChargingSession/unlock-connector", json=body)
        assert again.json()["data"] == data  # nothing changed in between
        occupancy = (await admin.get("/api/connectors/DRY1/1/occupancy")).json()["data"]
        assert occupancy["reasons"] == [f"open_transaction:{tx}"]
        user = await csms.client("user").__aenter__()
        try:
            assert (await user.post("/api/ChargingSession/unlock-connector", json=body)).status_code == 403
        finally:
            await user.__aexit__(None, None, None)
        # The real unlock does what the preview said.
        done = (await admin.post("/api/ChargingSession/unlock-connector", json={**body, "dryRun": False})).json()
        assert done["success"] and done["data"]["cleanedSessions"] == [session_id]
        session = (await admin.get(f"/api/ChargingSession/{session_id}")).json()["data"]
    assert (session["energyWh"], session["chargingTotalFee"], session["endReason"]) == (7500, "0.00", "ForceEnded")
    assert "waive" in session["feeWaived"]


class _Resettable(Answers):
    @on("Reset")
    def on_reset(self, type):  # noqa: A002 - the OCPP field's name
        self.received.append(("Reset", {"type": type}))
        return {"status": "Accepted"}


async def test_ask_for_status_and_a_confirmed_soft_reset(csms):
    client = await _signed_in(csms)
    try:
        async with connect(csms.ocpp, "ACT1", answers=_Resettable()) as cp:
            await cp.status(1, "Available")
            page = await client.get("/ui/connectors/ACT1/1")
            assert page.status_code == 200 and "Ask for status" in page.text and "Soft reset" in page.text
            csrf = _csrf(page.text)
            res = await client.post("/ui/connectors/ACT1/1/trigger", data={"csrf": csrf})
            assert res.status_code == 303 and res.headers["location"] == "/ui/connectors/ACT1/1"
            assert (
                "Asked ACT1 for connector 1&#39;s status: Accepted." in (await client.get("/ui/connectors/ACT1/1")).text
            )
            assert (
                "TriggerMessage",
                {"requested_message": "StatusNotification", "connector_id": 1},
            ) in cp.answers.received

            # The connector page's Soft reset is the charger's (confirmed first, listing what it ends).
            assert 'action="/ui/chargers/ACT1/reset/confirm"' in page.text
            confirm = await client.post("/ui/chargers/ACT1/reset/confirm", data={"csrf": csrf, "kind": "Soft"})
            assert confirm.status_code == 200 and [a for a, _ in cp.answers.received if a == "Reset"] == []
            unconfirmed = await client.post("/ui/chargers/ACT1/reset", data={"csrf": csrf, "kind": "Soft"})
            assert unconfirmed.status_code == 400 and [a for a, _ in cp.answers.received if a == "Reset"] == []
            res = await client.post("/ui/chargers/ACT1/reset", data={"csrf": csrf, "confirm": "yes", "kind": "Soft"})
            assert res.status_code == 303
            assert ("Reset", {"type": "Soft"}) in cp.answers.received
            assert "Soft reset of ACT1:" in (await client.get(res.headers["location"])).text
    finally:
        await client.aclose()
    events = await _audit(csms)
    assert ("tests", "ui.trigger_status") in events and ("tests", "ui.soft_reset") in events
