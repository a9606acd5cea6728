"""Issue 10, item 2 on a real `csms serve`: who may charge, answered from the id tag list."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import trio
from sqlalchemy import select

from csms.db.models import AuditEvent, ChargingSession, IdTag, Transaction
from tests.support.chargepoint import NOW, connect
from tests.support.db import with_db

START = "/api/ChargingSession/start-charging-session"
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()
FUTURE = "2099-01-01T00:00:00Z"


@pytest.fixture
def accept_unknown_id_tags():
    return False  # a site: tags not in the list are Invalid


async def _tags(csms, *rows) -> None:
    async with csms.client() as admin:
        for row in rows:
            r = await admin.post("/api/id-tags", json=row)
            assert r.status_code == 201, r.text


async def _authorize(cp, tag: str) -> dict:
    return (await cp.conn.call_raw("Authorize", {"idTag": tag}))["idTagInfo"]


async def _start(cp, connector: int, tag: str, meter: int = 0) -> dict:
    return await cp.conn.call_raw(
        "StartTransaction", {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": NOW}
    )


def _start_body(cp_id: str, tag: str) -> dict:
    return {"chargingStationId": cp_id, "connectorId": 1, "chargeTagId": tag, "chargingTariff": "0.25"}


async def test_authorize_and_start_answer_from_the_list(csms):
    await _tags(
        csms,
        {"idTag": "GOOD1"},
        {"idTag": "BLOCKED1", "status": "Blocked"},
        {"idTag": "OLD1", "status": "Accepted", "expiryDate": PAST},
        {"idTag": "KID1", "status": "Accepted", "expiryDate": FUTURE, "parentIdTag": "FAMILY"},
    )
    async with connect(csms.ocpp, "TAGS1") as cp:
        assert await _authorize(cp, "GOOD1") == {"status": "Accepted"}
        assert await _authorize(cp, "good1") == {"status": "Accepted"}  # idTokens are case-insensitive
        assert await _authorize(cp, "BLOCKED1") == {"status": "Blocked"}
        assert (await _authorize(cp, "OLD1"))["status"] == "Expired"
        assert await _authorize(cp, "STRANGER") == {"status": "Invalid"}
        assert await _authorize(cp, "KID1") == {
            "status": "Accepted",
            "expiryDate": "2099-01-01T00:00:00Z",
            "parentIdTag": "FAMILY",
        }
        blocked = await _start(cp, 1, "BLOCKED1")
        expired = await _start(cp, 2, "OLD1")
        assert blocked["idTagInfo"]["status"] == "Blocked" and expired["idTagInfo"]["status"] == "Expired"
        # Stored all the same: the charge point stops it (StopTransactionOnInvalidId) with this id.
        stop = await cp.conn.call_raw(
            "StopTransaction",
            {
                "transactionId": blocked["transactionId"],
                "meterStop": 10,
                "timestamp": NOW,
                "idTag": "BLOCKED1",
                "reason": "DeAuthorized",
            },
        )
        assert stop == {"idTagInfo": {"status": "Blocked"}}
        assert await cp.stop(expired["transactionId"], 10) == {
            "idTagInfo": {"status": "Accepted"}
        }  # no idTag: as before
    closed = with_db(csms.db_url, lambda s: [t.stop_time is not None for t in s.scalars(select(Transaction))])
    assert closed == [True, True]
    log = csms.log()
    assert "id_tag.not_accepted message=StartTransaction charge_point=TAGS1 id_tag=BLOCKED1 status=Blocked" in log


async def test_a_tag_in_an_open_transaction_gets_concurrent_tx(csms):
    await _tags(csms, {"idTag": "BUSY1"})
    async with connect(csms.ocpp, "CTX1") as cp, connect(csms.ocpp, "CTX2") as other, csms.client() as admin:
        first = await _start(cp, 1, "BUSY1")
        assert first["idTagInfo"] == {"status": "Accepted"}
        assert (await _start(cp, 1, "BUSY1"))["transactionId"] == first["transactionId"]  # the same one again
        second = await _start(other, 1, "busy1")
        assert second["idTagInfo"] == {"status": "ConcurrentTx"}
        assert await _authorize(other, "BUSY1") == {"status": "Accepted"}  # Authorize may be the driver stopping
        await other.status(1, "Available")
        r = await admin.post(START, json=_start_body("CTX2", "BUSY1"))
        assert r.status_code == 403
        assert r.json()["data"] == {"code": "IdTagNotAccepted", "idTag": "BUSY1", "idTagStatus": "ConcurrentTx"}
        assert not any(name == "RemoteStartTransaction" for name, _ in other.answers.received)
        await cp.stop(first["transactionId"], 500)
        await other.stop(second["transactionId"], 0)
        r = await admin.post(START, json=_start_body("CTX2", "BUSY1"))
        assert r.status_code == 200, r.text


async def test_the_rest_start_checks_the_tag_before_remote_start(csms):
    await _tags(csms, {"idTag": "NOPE1", "status": "Blocked"}, {"idTag": "OLD2", "expiryDate": PAST}, {"idTag": "OK2"})
    async with connect(csms.ocpp, "RST1") as cp, csms.client("user") as user:
        await cp.status(1, "Available")
        for tag, status in [("NOPE1", "Blocked"), ("OLD2", "Expired"), ("UNLISTED", "Invalid")]:
            r = await user.post(START, json=_start_body("RST1", tag))
            assert r.status_code == 403 and r.json()["data"]["idTagStatus"] == status, r.text
            r = await user.post("/api/Payments/Create", json=_start_body("RST1", tag))
            assert r.status_code == 403
        assert cp.answers.received == []
        assert with_db(csms.db_url, lambda s: list(s.scalars(select(ChargingSession)))) == []
        r = await user.post(START, json=_start_body("RST1", "OK2"))
        assert r.status_code == 200 and cp.answers.received[0][0] == "RemoteStartTransaction"


async def test_a_tag_blocked_mid_session_is_logged_not_force_ended(csms):
    await _tags(csms, {"idTag": "MID1"})
    async with connect(csms.ocpp, "MID1CP") as cp, csms.client() as admin:
        await cp.status(1, "Available")
        sid = (await admin.post(START, json=_start_body("MID1CP", "MID1"))).json()["data"]["sessionId"]
        tx = await cp.start(1, "MID1", 1000)
        r = await admin.put("/api/id-tags/mid1", json={"status": "Blocked"})
        assert r.status_code == 200 and r.json()["data"]["status"] == "Blocked"
        session = (await admin.get(f"/api/ChargingSession/{sid}")).json()["data"]
        assert session["endTime"] is None and session["status"] == "Charging"
        assert with_db(csms.db_url, lambda s: s.get(Transaction, tx).stop_time) is None
        assert await _authorize(cp, "MID1") == {"status": "Blocked"}
    line = next(x for x in csms.log().splitlines() if "id_tag.not_accepted_mid_session" in x)
    assert " WARNING " in line and f"id_tag=MID1 status=Blocked transactions={tx}" in line and "by tests" in line


async def test_id_tag_crud_for_admins_with_the_token_name_as_actor(csms):
    async with csms.client() as admin, csms.client("user") as user:
        r = await admin.post(
            "/api/id-tags", json={"idTag": "crud1", "status": "Accepted", "expiryDate": FUTURE, "parentIdTag": "grp"}
        )
        assert r.status_code == 201
        assert r.json()["data"] == {
            "idTag": "CRUD1",
            "status": "Accepted",
            "expiryDate": "2099-01-01T00:00:00Z",
            "parentIdTag": "GRP",
        }
        assert (await admin.post("/api/id-tags", json={"idTag": "CRUD1"})).status_code == 409
        r = await admin.post("/api/id-tags", json={"idTag": "X", "status": "Maybe"})
        assert r.status_code == 400 and "status" in r.json()["message"]
        assert (await admin.post("/api/id-tags", json={"idTag": "X" * 21})).status_code == 400
        assert (await user.get("/api/id-tags")).status_code == 403
        assert (await user.post("/api/id-tags", json={"idTag": "U1"})).status_code == 403
        r = await admin.put("/api/id-tags/CRUD2", json={"status": "Invalid"})
        assert r.status_code == 201
        r = await admin.put("/api/id-tags/CRUD1", json={"status": "Blocked"})
        assert r.status_code == 200 and r.json()["data"]["expiryDate"] is None
        listed = (await admin.get("/api/id-tags")).json()["data"]
        assert [(t["idTag"], t["status"]) for t in listed] == [("CRUD1", "Blocked"), ("CRUD2", "Invalid")]
        one = (await admin.get("/api/id-tags/crud1")).json()["data"]
        assert one["openTransactions"] == [] and one["answerNow"] == "Blocked"
        assert (await admin.delete("/api/id-tags/CRUD2")).status_code == 200
        assert (await admin.delete("/api/id-tags/CRUD2")).status_code == 404
        assert (await admin.get("/api/id-tags/CRUD2")).status_code == 404
    audits = with_db(
        csms.db_url,
        lambda s: [
            (a.actor, a.action, a.subject)
            for a in s.scalars(select(AuditEvent).where(AuditEvent.action.like("id_tag.%")).order_by(AuditEvent.id))
        ],
    )
    assert audits == [
        ("tests", "id_tag.created", "CRUD1"),
        ("tests", "id_tag.created", "CRUD2"),
        ("tests", "id_tag.updated", "CRUD1"),
        ("tests", "id_tag.deleted", "CRUD2"),
    ]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True, text=True, timeout=60)


async def test_csv_import(csms, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("idTag,status,expiryDate\nIMP1,Accepted,\nIMP2,Sometimes,\n")
    done = await trio.to_thread.run_sync(lambda: _cli("id-tags", "import", str(bad), "--db", csms.db_url))
    assert done.returncode == 2 and "line 3" in done.stderr
    assert with_db(csms.db_url, lambda s: list(s.scalars(select(IdTag)))) == []  # nothing, not half
    good = tmp_path / "tags.csv"
    good.write_text("idTag,status,expiryDate,parentIdTag\nIMP1,Accepted,,\nimp2,Blocked,2099-01-01T00:00:00Z,GRP\n")
    done = await trio.to_thread.run_sync(lambda: _cli("id-tags", "import", str(good), "--db", csms.db_url))
    assert done.returncode == 0 and "2 tag(s) imported: 2 new, 0 replaced" in done.stdout, done.stderr
    listed = await trio.to_thread.run_sync(lambda: _cli("id-tags", "list", "--db", csms.db_url))
    assert ["IMP2", "Blocked", "2099-01-01T00:00:00Z", "GRP"] in [line.split() for line in listed.stdout.splitlines()]
    async with connect(csms.ocpp, "IMPCP") as cp:  # a running CSMS answers from the imported list at once
        assert await _authorize(cp, "IMP1") == {"status": "Accepted"}
        assert (await _authorize(cp, "IMP2"))["status"] == "Blocked"


async def test_a_padded_tag_is_not_the_listed_one_and_cannot_bypass_concurrent_tx(csms):
    """ " GOODTAG", "GOODTAG " or "GOODTAG\u00a0" once passed as GOODTAG (the look-up stripped) while the
    ConcurrentTx check (which compares spellings) missed it: a second car charged on one tag."""
    await _tags(csms, {"idTag": "GOODTAG"})
    async with connect(csms.ocpp, "PAD1") as cp, connect(csms.ocpp, "PAD2") as other:
        assert (await _start(cp, 1, "GOODTAG"))["idTagInfo"] == {"status": "Accepted"}
        for padded in (" GOODTAG", "GOODTAG ", "GOODTAG\u00a0"):
            answer = await _start(other, 1, padded)
            assert answer["idTagInfo"]["status"] == "Invalid", (padded, answer)
            assert (await _authorize(other, padded))["status"] == "Invalid", padded
        assert (await _start(other, 2, "goodtag"))["idTagInfo"] == {"status": "ConcurrentTx"}  # case does not count


async def test_a_mixed_case_start_does_not_hide_the_tag_from_concurrent_tx(csms):
    """A transaction opened as "GoodTag" was missed by the ConcurrentTx check of a "GOODTAG" start (it compared
    the spellings as given, upper- and lower-case): the same listed tag charged twice at once."""
    await _tags(csms, {"idTag": "GOODTAG"})
    async with connect(csms.ocpp, "MIX1") as cp, connect(csms.ocpp, "MIX2") as other:
        assert (await _start(cp, 1, "GoodTag"))["idTagInfo"] == {"status": "Accepted"}
        for spelling in ("GOODTAG", "gOODtAG", "goodtag"):
            assert (await _start(other, 1, spelling))["idTagInfo"] == {"status": "ConcurrentTx"}, spelling


async def test_an_id_tag_cannot_add_fields_to_its_log_line(csms):
    """`id_tag=%s` wrote an idTag "X status=Accepted" as two fields: the line read as an accepted tag X."""
    async with connect(csms.ocpp, "LOGF1") as cp:
        assert (await _authorize(cp, 'X status=Accepted"'))["status"] == "Invalid"
    log = csms.log()
    assert 'id_tag="X status=Accepted\\"" status=Invalid' in log, log[-2000:]
