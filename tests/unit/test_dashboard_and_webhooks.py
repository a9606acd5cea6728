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
def _read(key, value, now, secret):
    parsed = auth.parse(key, value, now)
    if parsed is None:
        return None
    session, fingerprint = parsed
    return session if auth.fingerprint_ok(key, session, fingerprint, secret) else None


def test_a_cookie_proves_who_signed_in_until_it_expires():
    value, session = auth.issue(KEY, "user", "alice", "operator", "hash-1", now=1000, lifetime=60)
    assert _read(KEY, value, 1059, "hash-1") == session and (session.name, session.role) == ("alice", "operator")
    assert _read(KEY, value, 1060, "hash-1") is None  # expired
    assert _read(b"x" * 32, value, 1001, "hash-1") is None  # another site's key
    assert _read(KEY, value, 1001, "hash-2") is None  # password (or token) changed
    payload, mac = value.split(".")
    assert _read(KEY, payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + mac, 1001, "hash-1") is None
    assert auth.parse(KEY, None, 1001) is None and auth.parse(KEY, "garbage", 1001) is None
    assert "hash-1" not in value
    # A token session's fingerprint is not a user's of the same secret.
    tvalue, tsession = auth.issue(KEY, "token", "alice", "admin", "hash-1", now=1000)
    parsed = auth.parse(KEY, tvalue, 1001)
    assert parsed is not None and parsed[0].kind == "token"
    assert not auth.fingerprint_ok(KEY, session, parsed[1], "hash-1")


def test_csrf_tokens_belong_to_one_session():
    _, one = auth.issue(KEY, "user", "alice", "admin", "h", now=1000)
    _, two = auth.issue(KEY, "user", "alice", "admin", "h", now=1000)
    assert auth.csrf_ok(KEY, one, auth.csrf_token(KEY, one))
    assert not auth.csrf_ok(KEY, one, auth.csrf_token(KEY, two))
    assert not auth.csrf_ok(KEY, one, "") and not auth.csrf_ok(KEY, one, None)


def test_passwords_are_argon2_hashes_and_an_unknown_user_is_checked_against_a_dummy_hash():
    encoded = auth.hash_password("a long passphrase")
    assert encoded.startswith("$argon2id$") and "passphrase" not in encoded
    assert auth.verify_password(encoded, "a long passphrase")
    assert not auth.verify_password(encoded, "a long passphrasE")
    assert not auth.verify_password(None, "a long passphrase")  # unknown user: checked against a dummy
    assert not auth.verify_password("not-a-hash", "x")


def test_roles_include_the_ones_below_them():
    from csms.core.web_access import may

    assert may("admin", "operator") and may("operator", "viewer") and may("viewer", "viewer")
    assert not may("viewer", "operator") and not may("operator", "admin") and not may("root", "viewer")


def test_sign_in_throttle_per_name_and_address_per_address_and_per_name():
    from csms.core.web_access import SignInThrottle

    t = SignInThrottle(window=300, per_name_and_address=5, per_address=20, per_name=50)
    for i in range(5):
        assert t.wait("alice", "10.0.0.1", 100 + i) == 0
        t.begin("alice", "10.0.0.1", 100 + i)
    assert t.wait("alice", "10.0.0.1", 105) == 295  # the guesser is throttled ...
    assert t.wait("ALICE", "10.0.0.1", 105) == 295  # ... whatever the case of the name
    assert t.wait("alice", "10.0.0.9", 105) == 0  # alice herself, elsewhere, is not locked out
    assert t.wait("bob", "10.0.0.1", 105) == 0
    assert t.wait("alice", "10.0.0.1", 400.5) == 0  # the oldest attempt aged out
    for i in range(20):
        t.begin(f"user{i}", "10.0.0.2", 500)
    assert t.wait("carol", "10.0.0.2", 501) == 299  # one address guessing many names
    for i in range(50):
        t.begin("dave", f"10.1.0.{i}", 600)
    assert t.wait("dave", "10.9.9.9", 601) == 299  # one name guessed from many addresses


def test_sign_in_attempts_count_from_their_start_and_a_success_takes_its_own_back():
    from csms.core.web_access import SignInThrottle

    t = SignInThrottle(window=300, per_name_and_address=5, per_address=20, per_name=50)
    for _ in range(5):  # five at once, none answered yet: the sixth waits
        t.begin("alice", "10.0.0.1", 100)
    assert t.wait("alice", "10.0.0.1", 100) == 300
    t.succeeded("alice", "10.0.0.1", 100)
    assert t.wait("alice", "10.0.0.1", 100) == 0
    for i in range(25):  # an office of people signing in right, one address
        t.begin(f"p{i}", "10.0.0.3", 200 + i)
        t.succeeded(f"p{i}", "10.0.0.3", 200 + i)
    assert t.wait("q", "10.0.0.3", 230) == 0


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
        "open transaction 42 (TAG1) since 12:00:00 UTC (3 h), no meter value for 3 h (register 5.000 kWh)"
    )
    assert reason_words("open_transaction:42", x, {}, NOW, quiet).endswith(", no meter value yet")
    live = _explain(live={"status": "Charging", "errorCode": "NoError", "at": "2026-03-01T14:58:00Z"})
    assert (
        reason_words("live_status:Charging", live, {}, NOW, quiet)
        == "charger reports Charging since 14:58:00 UTC (2 min)"
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
        "payment reservation abcdef12 is Authorized since 14:00:00 UTC (1 h)"
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
    at = {"A": (NOW, 0), "B": (NOW, 0), "C": (NOW, 0)}
    changes = presence_changes({k: at[k] for k in "AB"}, {k: at[k] for k in "BC"}, "t")
    assert [(e.type, e.data) for e in changes] == [
        ("charge_point.online", {"chargePointId": "C"}),
        ("charge_point.offline", {"chargePointId": "A"}),
    ]
    # Whoever sees a fact gives its event one id (two nodes write one outbox row); another fact, another id.
    assert [e.id for e in events_from_audit(rows)] == [e.id for e in (ended, orphaned)]
    again = presence_changes({}, {"C": (NOW, 0)}, "later")
    assert again[0].id == changes[0].id
    later = NOW + timedelta(seconds=1)
    assert presence_changes({}, {"C": (later, 0)}, "t")[0].id != again[0].id  # another connection
    assert presence_changes({}, {"C": (NOW, 1)}, "t")[0].id != again[0].id  # its node came back from a lapse
    assert len({ended.id, orphaned.id, changes[0].id, changes[1].id}) == 4
    # A reconnect between two looks: the old connection goes offline, the new one comes online.
    moved = presence_changes({"C": (NOW, 0)}, {"C": (later, 0)}, "t")
    assert [e.type for e in moved] == ["charge_point.offline", "charge_point.online"]
    assert moved[1].id == presence_changes({}, {"C": (later, 0)}, "t")[0].id
    assert moved[0].id == presence_changes({"C": (NOW, 0)}, {}, "t")[0].id
    assert presence_changes({"C": (NOW, 0)}, {"C": (NOW, 1)}, "t") == []  # same connection, new epoch: no news
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
