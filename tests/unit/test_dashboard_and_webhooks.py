"""The pure parts of issue 12: session cookies and CSRF, the board's words, webhook signing and events, fee policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.config import ApiToken
from csms.core.billing import settle
from csms.core.fee_policy import apply_waiver, waiver_reason
from csms.core.webhooks import (
    AuditRow,
    backoff_seconds,
    connector_changes,
    events_from_audit,
    parse_webhook,
    presence_changes,
    sign,
    verify,
)
from csms.ui import auth
from csms.ui.words import TxActivity, age, board_row, reason_words, suspicions

KEY = b"k" * 32
ALICE = ApiToken("admin", "alice-secret-token", "alice")
NOW = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)


# ---------------------------------------------------------------- sign-in
def test_a_cookie_proves_who_signed_in_until_it_expires():
    value, session = auth.issue(KEY, ALICE, now=1000, lifetime=60)
    assert auth.read(KEY, value, 1059, [ALICE]) == session and session.name == "alice"
    assert auth.read(KEY, value, 1060, [ALICE]) is None  # expired
    assert auth.read(b"x" * 32, value, 1001, [ALICE]) is None  # another process's key (a restart)
    assert auth.read(KEY, value, 1001, [ApiToken("admin", "rotated-secret!", "alice")]) is None  # token changed
    assert auth.read(KEY, value, 1001, [ApiToken("user", "alice-secret-token", "alice")]) is None  # role changed
    payload, mac = value.split(".")
    assert auth.read(KEY, payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + mac, 1001, [ALICE]) is None
    assert auth.read(KEY, None, 1001, [ALICE]) is None and auth.read(KEY, "garbage", 1001, [ALICE]) is None
    assert "alice-secret-token" not in value


def test_csrf_tokens_belong_to_one_session():
    _, one = auth.issue(KEY, ALICE, now=1000)
    _, two = auth.issue(KEY, ALICE, now=1000)
    assert auth.csrf_ok(KEY, one, auth.csrf_token(KEY, one))
    assert not auth.csrf_ok(KEY, one, auth.csrf_token(KEY, two))
    assert not auth.csrf_ok(KEY, one, "") and not auth.csrf_ok(KEY, one, None)


def test_find_token_matches_the_secret_only():
    bob = ApiToken("user", "bob-secret-token", "bob")
    assert auth.find_token([ALICE, bob], " bob-secret-token ") is bob
    assert auth.find_token([ALICE, bob], "alice") is None


# ---------------------------------------------------------------- the board's words
def _explain(verdict="busy", reasons=(), *, live=None, stored=None, txs=(), res=(), online=True):
    return {
        "chargePointId": "CP1",
        "connectorId": 1,
        "verdict": verdict,
        "reasons": list(reasons),
        "signals": {
            "websocketPresent": online,
            "liveStatus": live,
            "persistedStatus": stored,
            "openTransactions": list(txs),
            "activeReservations": list(res),
            "freshnessMinutes": 30,
        },
    }


TX = {"transactionId": 42, "idTag": "TAG1", "startTime": "2026-03-01T12:00:00Z", "meterStart": 0, "latestMeterWh": 5000}


def test_reasons_in_plain_words():
    x = _explain(reasons=["open_transaction:42"], txs=[TX])
    quiet = timedelta(minutes=10)
    act = {42: TxActivity(5000, NOW - timedelta(hours=3), NOW - timedelta(hours=3))}
    assert reason_words("open_transaction:42", x, act, NOW, quiet) == (
        "open transaction 42 (TAG1) since 12:00 UTC (3 h), no meter value for 3 h (register 5.000 kWh)"
    )
    assert reason_words("open_transaction:42", x, {}, NOW, quiet).endswith(", no meter value yet")
    live = _explain(live={"status": "Charging", "errorCode": "NoError", "at": "2026-03-01T14:58:00Z"})
    assert (
        reason_words("live_status:Charging", live, {}, NOW, quiet) == "charger reports Charging since 14:58 UTC (2 min)"
    )
    assert reason_words("persisted_status:Occupied:age=12m", x, {}, NOW, quiet) == (
        "stored status Occupied from 12 min ago (no live status from the charger)"
    )
    assert reason_words("websocket:absent", x, {}, NOW, quiet) == "charger offline: it is not connected"
    assert reason_words("websocket:reconnected:1.5s_ago:no_status_yet", x, {}, NOW, quiet) == (
        "charger reconnected 1.5 s ago and has not reported this connector yet (it may be replaying a session "
        "started while it was away)"
    )
    assert reason_words("start_transaction:being_stored", x, {}, NOW, quiet) == (
        "a StartTransaction from the charger is being stored right now"
    )
    res = _explain(res=[{"reservationId": "abcdef123456", "status": "Authorized", "createdAt": "2026-03-01T14:00:00Z"}])
    assert reason_words("active_reservation:abcdef123456:Authorized", res, {}, NOW, quiet) == (
        "payment reservation abcdef12 is Authorized since 14:00 UTC (1 h)"
    )
    assert [age(s) for s in (5, 300, 3900, 7200, 200000)] == ["5 s", "5 min", "1 h 5 min", "2 h", "2 d 7 h"]


def test_suspected_stuck_names_the_seeds_false_positives():
    quiet = timedelta(minutes=10)
    available = {"status": "Available", "errorCode": "NoError", "at": "2026-03-01T14:59:00Z"}
    assert suspicions(_explain(live=available, txs=[TX]), {}, NOW, quiet=quiet)[0] == (
        "open transaction 42 on a connector that reports Available"
    )
    stale = suspicions(_explain(stored={"status": "Occupied", "ageSeconds": 7200}), {}, NOW, quiet=quiet)
    assert "stale stored status Occupied (2 h old), nothing live confirms it" in stale
    lingering = suspicions(
        _explain(
            live=available,
            res=[{"reservationId": "r" * 12, "status": "Authorized", "createdAt": "2026-03-01T14:00:00Z"}],
        ),
        {},
        NOW,
        quiet=quiet,
    )
    assert lingering == ["lingering reservation rrrrrrrr: Authorized for 1 h"]
    assert "silent connector" in suspicions(_explain(), {}, NOW, quiet=quiet)[0]
    charging = {"status": "Charging", "errorCode": "NoError", "at": "2026-03-01T14:59:00Z"}
    assert suspicions(_explain(live=charging), {}, NOW, quiet=quiet) == ["reports Charging but no transaction is open"]
    fine = suspicions(_explain(live=charging, txs=[TX]), {42: TxActivity(1, NOW, NOW)}, NOW, quiet=quiet)
    assert fine == []
    # A free connector is never "stuck", whatever else looks odd.
    assert board_row(_explain("free"), "ST1", {}, None, NOW, quiet=quiet).suspicions == []


# ---------------------------------------------------------------- webhooks
def test_signature_is_hmac_sha256_of_timestamp_and_body():
    body = b'{"type":"connector.freed"}'
    header = sign("s" * 16, body, 1700000000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify("s" * 16, body, header, now=1700000100)
    assert not verify("s" * 16, body, header, now=1700000400)  # older than 5 minutes: a replay
    assert not verify("s" * 16, body + b" ", header, now=1700000000)
    assert not verify("t" * 16, body, header, now=1700000000)
    assert not verify("s" * 16, body, "t=x,v1=00", now=1700000000)


def test_back_off_doubles_up_to_the_cap():
    assert [backoff_seconds(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(20, 1.0) == 300.0


def test_webhook_option():
    hook = parse_webhook("https://user:pw@hooks.example.com:8443/in?x=1,0123456789abcdef")
    assert hook.secret == "0123456789abcdef" and hook.label == "https://hooks.example.com:8443/in"
    assert "0123456789abcdef" not in repr(hook)
    assert parse_webhook("http://127.0.0.1:9/h").secret is None
    for bad in ("ftp://x/h", "not a url", "http://x/h,short"):
        with pytest.raises(ValueError):
            parse_webhook(bad)


def test_events_from_the_audit_trail_and_from_looking():
    rows = [
        AuditRow(
            1,
            NOW,
            "alice",
            "session.force_ended",
            "CP1",
            1,
            "S1",
            {
                "reason": "ForceEnded",
                "transaction_id": 42,
                "energy_wh": 5000,
                "fee": "1.25",
                "meter_source": "meter_values",
                "fee_waived": None,
            },
        ),
        AuditRow(2, NOW, "system:maintenance", "maintenance.close_orphaned", "CP1", 2, "43", {"reason": "r"}),
        AuditRow(3, NOW, "alice", "connector.unlock", "CP1", 1, "ST1", {}),
    ]
    ended, orphaned = events_from_audit(rows)
    assert ended.type == "session.force_ended" and ended.data["sessionId"] == "S1" and ended.data["fee"] == "1.25"
    assert ended.data["actor"] == "alice" and ended.created_at == "2026-03-01T15:00:00Z"
    assert orphaned.type == "transaction.orphaned" and orphaned.data["transactionId"] == 43
    assert [(e.type, e.data) for e in presence_changes({"A", "B"}, {"B", "C"}, "t")] == [
        ("charge_point.online", {"chargePointId": "C"}),
        ("charge_point.offline", {"chargePointId": "A"}),
    ]
    before = {("CP1", 1): ("busy", ("open_transaction:42",)), ("CP1", 2): ("offline", ("websocket:absent",))}
    after = {("CP1", 1): ("free", ()), ("CP1", 2): ("free", ()), ("CP1", 3): ("free", ())}
    [freed] = connector_changes(before, after, "t")  # offline -> free is a reconnect, not a freeing
    assert freed.data == {"chargePointId": "CP1", "connectorId": 1, "previousReasons": ["open_transaction:42"]}
    assert b'"type":"connector.freed"' in freed.body()


# ---------------------------------------------------------------- fee policy
def test_waive_applies_to_an_admins_force_end_only():
    st = settle(1000, Decimal("0.25"), latest_sample_wh=9000)
    assert st.fee == Decimal("2.00")
    waived, why = apply_waiver(st, "waive", "ForceEnded")
    assert waived.fee == Decimal("0.00") and waived.energy_wh == 8000 and "waive" in why
    for reason in ("Orphaned", "Superseded", "IdleTimeout", "InvalidMeterStop"):
        assert apply_waiver(st, "waive", reason) == (st, None)
    assert waiver_reason("charge", "ForceEnded") is None
    with pytest.raises(ValueError):
        waiver_reason("free-for-all", "ForceEnded")
