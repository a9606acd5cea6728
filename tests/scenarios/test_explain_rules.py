"""The pure rules of `unstuck-scenarios explain` (scenarios/explain_rules.py): small inline frame lists, no sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios.adapters.base import Verdict
from scenarios.explain_rules import (
    BUSY_FINISHING,
    BUSY_UNREPORTED,
    BUSY_WHILE_FREE,
    FREE_WHILE_OCCUPIED,
    NOT_SUPPORTED,
    REFUSED,
    Ask,
    AuditMark,
    Reenacted,
    VerdictSample,
    clock,
    describe_finding,
    explained_window,
    find_findings,
    moment_at,
    parse_log_time,
    read_charger_log,
    reenactment_words,
    what_to_ask,
    window_prelude,
)
from simulator.fieldlog.frames import FrameRecord, LinkRecord
from simulator.fieldlog.playbook import AppAction

CP = "ABB-TERRA-0042"
EPOCH = "2026-03-02T21:48:12.000Z"


def out(t: float, uid: str, action: str, payload: dict) -> FrameRecord:
    return FrameRecord(t, CP, "out", [2, uid, action, payload])


def answer(t: float, uid: str, payload: dict) -> FrameRecord:
    return FrameRecord(t, CP, "in", [3, uid, payload])


def status(t: float, uid: str, connector: int, st: str) -> list[FrameRecord]:
    return [
        out(t, uid, "StatusNotification", {"connectorId": connector, "status": st, "errorCode": "NoError"}),
        answer(t + 0.1, uid, {}),
    ]


def session(t: float, tx: int = 58231) -> list[FrameRecord]:
    """Preparing, StartTransaction (answered with `tx`), Charging."""
    return [
        *status(t, "a", 1, "Preparing"),
        out(t + 10, "b", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0}),
        answer(t + 10.2, "b", {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}),
        *status(t + 11, "c", 1, "Charging"),
    ]


def samples(*points: tuple[float, str, tuple[str, ...]], connector: int = 1) -> list[VerdictSample]:
    return [VerdictSample(t, CP, connector, Verdict(v, reasons)) for t, v, reasons in points]


def every(start: float, end: float, verdict: str, reasons: tuple[str, ...] = (), step: float = 15.0):
    t, out_ = start, []
    while t < end:
        out_.append((t, verdict, reasons))
        t += step
    return out_


# ------------------------------------------------------------------ the charger's word
def test_a_transaction_holds_the_connector_until_its_stop_and_available_frees_it():
    log = read_charger_log(
        [
            *status(0, "0", 1, "Available"),
            *session(100),
            out(900, "d", "StopTransaction", {"transactionId": 58231}),
            *status(901, "e", 1, "Finishing"),
            *status(960, "f", 1, "Available"),
        ]
    )
    key = (CP, 1)
    assert log.word_at(key, 50).state == "free"
    assert log.word_at(key, 105).state == "occupied" and log.word_at(key, 105).status == "Preparing"
    w = log.word_at(key, 500)
    assert (w.state, w.status, w.transaction) == ("occupied", "Charging", "58231")
    assert log.word_at(key, 930).state == "finishing_no_tx"  # Finishing, stop sent: only the site can tell
    assert log.word_at(key, 1000).state == "free"


def test_available_ends_a_transaction_the_charger_never_stopped_and_says_so():
    log = read_charger_log([*session(0), *status(500, "x", 1, "Available")])
    assert log.word_at((CP, 1), 501).state == "free"
    assert any(e.name == "available_open" and "58231" in e.text for e in log.events)


def test_a_boot_leaves_unreported_connectors_unreported():
    log = read_charger_log(
        [
            *status(0, "0", 1, "Available"),
            *status(1, "1", 2, "Preparing"),
            LinkRecord(50, CP, "disconnect"),
            LinkRecord(60, CP, "connect"),
            out(61, "b", "BootNotification", {}),
            answer(61.1, "b", {}),
            *status(62, "s", 1, "Available"),
        ]
    )
    assert log.word_at((CP, 2), 40).state == "occupied"
    assert log.word_at((CP, 2), 100).state == "unreported_since_boot"
    assert log.word_at((CP, 1), 100).state == "free"
    assert not log.connected_at(CP, 55) and log.connected_at(CP, 61)


def test_a_201_station_speaks_per_evse_and_transaction_event():
    frames = [
        out(0, "1", "StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Occupied"}),
        out(
            5,
            "2",
            "TransactionEvent",
            {"eventType": "Started", "transactionInfo": {"transactionId": "abc"}, "evse": {"id": 1}},
        ),
        out(50, "3", "TransactionEvent", {"eventType": "Ended", "transactionInfo": {"transactionId": "abc"}}),
        out(51, "4", "StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Available"}),
    ]
    log = read_charger_log(frames)
    assert log.word_at((CP, 1), 10).transaction == "abc"
    assert log.word_at((CP, 1), 50.5).state == "occupied"  # Occupied still (the cable)
    assert log.word_at((CP, 1), 52).state == "free"


# ------------------------------------------------------------------ findings
def stuck_log():
    """A dropped StopTransaction: Charging, then Available with the transaction never stopped."""
    return read_charger_log([*status(0, "0", 1, "Available"), *session(100), *status(3000, "z", 1, "Available")])


def test_first_stuck_moment_and_the_rule_that_healed_it():
    log = stuck_log()
    s = samples(
        *every(0, 100, "free"),
        *every(100, 3030, "busy", ("open_transaction:1",)),
        *every(3030, 3300, "busy", ("open_transaction:1",)),
        *every(3300, 4000, "free"),
    )
    audit = [AuditMark(3290, "maintenance.close_orphaned", CP, 1, "1", {"reason": "Available but no stop"})]
    [f] = find_findings(log, s, audit)
    assert f.kind == BUSY_WHILE_FREE
    assert f.since == 3010  # the first sample after the charger said Available at 3000 (samples every 15 s)
    assert f.verdict.reasons == ("open_transaction:1",)
    assert f.healed and f.until == 3300 and f.rule == "maintenance.close_orphaned"
    assert "orphan rule" in f.healed_by
    text = describe_finding(f, EPOCH)
    assert "stuck busy" in text and clock(3000, EPOCH) in text and "open_transaction:1" in text


def test_nothing_heals_it_by_the_logs_end():
    log = stuck_log()
    s = samples(*every(100, 5000, "busy", ("open_transaction:1",)))
    [f] = find_findings(log, s)
    assert not f.healed and f.rule is None
    assert f.healed_by.startswith("nothing would have") and "transaction 1 stayed open" in f.healed_by


def test_a_short_disagreement_is_a_message_in_flight_not_a_finding():
    log = stuck_log()
    s = samples(*every(100, 3030, "busy", ("open_transaction:1",)), *every(3030, 4000, "free"))
    assert find_findings(log, s, grace=60) == []


def test_free_while_the_charger_charges():
    log = read_charger_log([*status(0, "0", 1, "Available"), *session(100)])
    [f] = find_findings(log, samples(*every(0, 2000, "free")))
    assert f.kind == FREE_WHILE_OCCUPIED and f.since == 105


def test_busy_on_a_status_from_before_the_boot_healed_by_freshness():
    log = read_charger_log(
        [*status(0, "1", 2, "Preparing"), out(60, "b", "BootNotification", {}), *status(62, "s", 1, "Available")]
    )
    s = samples(
        *every(75, 1860, "busy", ("persisted_status:Preparing:age=0m",)), *every(1860, 2500, "free"), connector=2
    )
    [f] = find_findings(log, s)
    assert f.kind == BUSY_UNREPORTED and f.healed and f.rule is None
    assert "freshness" in f.healed_by


def test_a_status_request_is_not_a_heal_but_is_mentioned():
    log = stuck_log()
    s = samples(*every(3000, 3600, "busy", ("open_transaction:1",)), *every(3600, 4000, "free"))
    audit = [AuditMark(3100, "maintenance.probe_quiet_transaction", CP, 1, "1")]
    [f] = find_findings(log, s, audit)
    assert f.rule is None and f.asked and "status request" in describe_finding(f, EPOCH)


def test_finishing_with_no_transaction_is_noted_only_when_it_lasts():
    frames = [
        *session(0),
        out(600, "d", "StopTransaction", {"transactionId": 58231}),
        *status(601, "e", 1, "Finishing"),
    ]
    short = read_charger_log([*frames, *status(700, "f", 1, "Available")])
    assert find_findings(short, samples(*every(600, 700, "busy", ("live_status:Finishing",)))) == []
    stuck = read_charger_log(frames)
    [f] = find_findings(stuck, samples(*every(615, 9000, "busy", ("live_status:Finishing",))))
    assert f.kind == BUSY_FINISHING and not f.healed and "site" in f.healed_by


def test_offline_while_the_charger_is_gone_is_right_and_an_unknown_station_is_not_judged():
    log = read_charger_log([*status(0, "0", 1, "Available"), LinkRecord(100, CP, "disconnect")])
    assert find_findings(log, samples(*every(100, 3000, "offline", ("websocket:absent",)))) == []
    assert find_findings(log, samples(*every(0, 100, "offline", ("station:unknown",)), *every(100, 200, "free"))) == []


# ------------------------------------------------------------------ one moment, times
def test_moment_at_gives_the_last_verdict_and_the_word():
    log = stuck_log()
    s = samples(*every(100, 4000, "busy", ("open_transaction:1",)))
    [m] = moment_at(log, s, 3100.0, log.words)
    assert m.verdict is not None and m.verdict.reasons == ("open_transaction:1",)
    assert m.sampled_at == 3100 and m.word.state == "free" and m.connected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5400", 5400.0), ("03:12", 5 * 3600 + 23 * 60 + 48), ("21:50:12", 120.0), ("2026-03-02T22:48:12Z", 3600.0)],
)
def test_parse_log_time(text, expected):
    assert parse_log_time(text, EPOCH) == pytest.approx(expected)


def test_parse_log_time_names_what_it_wanted():
    with pytest.raises(ValueError, match="clock time"):
        parse_log_time("tomorrow", EPOCH)


# ------------------------------------------------------------------ a window (--from/--to)
def test_the_window_is_clipped_to_the_log_and_must_hold_something():
    assert explained_window(None, None, 0.0, 9000.0) == (0.0, 9000.0)
    assert explained_window(-50.0, 20000.0, 0.0, 9000.0) == (0.0, 9000.0)
    assert explained_window(3600.0, 7200.0, 0.0, 9000.0) == (3600.0, 7200.0)
    with pytest.raises(ValueError, match="after the log's end"):
        explained_window(9000.0, None, 0.0, 9000.0)
    with pytest.raises(ValueError, match="before the log's start"):
        explained_window(None, -1.0, 0.0, 9000.0)
    with pytest.raises(ValueError, match="not after --from"):
        explained_window(5000.0, 4000.0, 0.0, 9000.0)


def kept(prelude) -> list[tuple[str, str, object]]:
    """The prelude as (direction, action or answer, payload) in order."""
    return [
        ("link", r.event, None)
        if isinstance(r, LinkRecord)
        else (r.direction, r.frame[2] if r.frame[0] == 2 else "answer", r.frame[-1])
        for r in prelude
    ]


def test_the_prelude_keeps_the_boot_an_open_transaction_and_the_last_statuses_restamped():
    log = [
        out(0, "b0", "BootNotification", {"chargePointVendor": "ABB"}),
        answer(0.1, "b0", {"status": "Accepted"}),
        *status(1, "s0", 1, "Available"),
        out(60, "h", "Heartbeat", {}),
        *session(100),
        out(400, "m1", "MeterValues", {"connectorId": 1, "transactionId": 58231, "meterValue": [1]}),
        out(700, "m2", "MeterValues", {"connectorId": 1, "transactionId": 58231, "meterValue": [2]}),
        LinkRecord(800, CP, "disconnect"),
        LinkRecord(900, CP, "connect"),
        *status(901, "s9", 1, "Available"),  # the stop was lost: the CSMS still holds the transaction
        out(5000, "late", "StatusNotification", {"connectorId": 1, "status": "Charging"}),
    ]
    prelude = window_prelude(log, 3600.0, 3500.0)
    assert {r.t for r in prelude} == {3500.0}
    assert kept(prelude) == [
        ("out", "BootNotification", {"chargePointVendor": "ABB"}),
        ("out", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0}),
        ("in", "answer", {"transactionId": 58231, "idTagInfo": {"status": "Accepted"}}),  # names the log's id
        ("out", "MeterValues", {"connectorId": 1, "transactionId": 58231, "meterValue": [2]}),
        ("out", "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}),
    ]


def test_a_stopped_transaction_is_not_told_and_an_offline_charger_goes_after_its_prelude():
    log = [
        out(0, "b0", "BootNotification", {}),
        *session(100),
        out(400, "m1", "MeterValues", {"connectorId": 1, "transactionId": 58231, "meterValue": [1]}),
        out(900, "d", "StopTransaction", {"transactionId": 58231}),
        *status(901, "e", 1, "Finishing"),
        LinkRecord(950, CP, "disconnect"),
        LinkRecord(4000, CP, "connect"),
    ]
    prelude = window_prelude(log, 3600.0, 3000.0)
    assert kept(prelude) == [
        ("out", "BootNotification", {}),
        ("out", "StatusNotification", {"connectorId": 1, "status": "Finishing", "errorCode": "NoError"}),
        ("link", "disconnect", None),  # offline at the window's start: told, then gone
    ]
    assert window_prelude(log, 0.0, -10.0) == []  # a window from the log's start: nothing before it


def test_a_201_transaction_is_told_with_its_last_update_until_it_ended():
    def tx_event(t: float, uid: str, event: str, tx: str) -> FrameRecord:
        return out(
            t,
            uid,
            "TransactionEvent",
            {"eventType": event, "evse": {"id": 1}, "transactionInfo": {"transactionId": tx}},
        )

    log = [tx_event(10, "1", "Started", "A"), tx_event(20, "2", "Updated", "A"), tx_event(30, "3", "Updated", "A")]
    assert [r.frame[1] for r in window_prelude(log, 100.0, 90.0)] == ["1", "3"]
    ended = [*log, tx_event(40, "4", "Ended", "A")]
    assert window_prelude(ended, 100.0, 90.0) == []


def test_a_drop_the_csms_saw_just_after_its_sample_was_stamped_is_still_the_drop():
    frames = [
        *session(0),
        out(600, "d", "StopTransaction", {"transactionId": 58231}),
        *status(601, "e", 1, "Finishing"),
        FrameRecord(3995, CP, "in", [2, "R1", "Reset", {"type": "Soft"}]),
        FrameRecord(3995.5, CP, "out", [3, "R1", {"status": "Accepted"}]),
        LinkRecord(4000, CP, "disconnect"),
    ]
    log = read_charger_log(frames)
    # the last busy sample at 3980, the next stamped 3990 (asked then) but answered after the drop at 4000
    s = samples(*every(615, 3990, "busy", ("live_status:Finishing",)), (3990, "offline", ("websocket:absent",)))
    [f] = find_findings(log, s)
    assert f.healed and "connection dropping after the log's CSMS sent Reset: Accepted" in f.healed_by


# ------------------------------------------------------------------ the app's actions, asked again
APP_START = AppAction(600, CP, "start", "RemoteStartTransaction", 1, "APP-1", answer="Rejected")


def rejected_start_log():
    """Available all along; the log's CSMS asked a remote start at 600, the charger rejected it."""
    return read_charger_log([*status(0, "0", 1, "Available"), *status(3000, "h", 1, "Available")])


def reenacted(outcome: str = REFUSED, said: str = "HTTP 409 RemoteStartRejected") -> Reenacted:
    return Reenacted(APP_START, 600.5, 601.0, outcome, said)


def test_what_to_ask_the_csms_under_test_for_each_app_action():
    assert what_to_ask(APP_START, {}) == Ask("start", CP, 1, "APP-1")
    assert what_to_ask(replace(APP_START, connector=None), {}).skip == (
        "the log's RemoteStartTransaction names no connector or id tag"
    )
    stop = AppAction(900, CP, "stop", "RemoteStopTransaction", 1, transaction_id="77")
    assert what_to_ask(stop, {(CP, 1): "s-1"}) == Ask("stop", CP, 1, session_id="s-1")
    assert "transaction 77 of the log was not started by a re-enacted remote start" in (
        what_to_ask(stop, {}).skip or ""
    )
    assert what_to_ask(AppAction(950, CP, "unlock", "UnlockConnector", 1), {}) == Ask("unlock", CP, 1)


def test_a_rejected_start_the_csms_did_not_hold_busy():
    s = samples(*every(0, 4000, "free"))
    text = reenactment_words(reenacted(), rejected_start_log(), s, [], EPOCH)
    assert text.startswith(f"{clock(600, EPOCH)} {CP}: the log's CSMS sent RemoteStartTransaction for connector 1")
    assert "(idTag APP-1), the charger answered Rejected" in text
    assert "re-enacted (asked of the CSMS under test at " in text and "HTTP 409 RemoteStartRejected" in text
    assert "Before the request the CSMS said free (no reasons); after the answer it said free" in text
    assert text.endswith("It did not hold the connector busy after the rejection.")


def test_a_rejected_start_the_csms_held_busy_with_no_car_and_nothing_freed_it():
    """The seed's bug: Occupied written for the start, kept after the charger's Rejected."""
    log = rejected_start_log()
    s = samples(*every(0, 600, "free"), *every(615, 4000, "busy", ("live_status:Occupied",)))
    findings = find_findings(log, s)
    assert [f.kind for f in findings] == [BUSY_WHILE_FREE]
    text = reenactment_words(reenacted(), log, s, findings, EPOCH)
    assert "after the answer it said busy (live_status:Occupied)" in text
    assert f"It held the connector busy with no car after the rejection from {clock(615, EPOCH)}" in text
    assert "never freed by the log's end: nothing would have: the CSMS kept the charger's last live status" in text


def test_a_rejected_start_held_busy_until_a_rule_freed_it_or_only_briefly():
    log = rejected_start_log()
    s = samples(
        *every(0, 600, "free"), *every(615, 2400, "busy", ("persisted_status:Occupied",)), *every(2400, 4000, "free")
    )
    findings = find_findings(log, s, [AuditMark(2395, "maintenance.release_status", CP, 1)])
    text = reenactment_words(reenacted(), log, s, findings, EPOCH)
    assert f"healed at {clock(2400, EPOCH)} by the status release" in text
    s = samples(*every(0, 600, "free"), *every(615, 640, "busy", ("pending_start",)), *every(640, 4000, "free"))
    text = reenactment_words(reenacted(), log, s, find_findings(log, s), EPOCH)
    assert f"free again at {clock(640, EPOCH)} (25 s: too short for a finding)" in text


def test_an_action_not_asked_says_why():
    text = reenactment_words(
        reenacted(NOT_SUPPORTED, "this CSMS's adapter cannot start (NotSupportedError)"),
        rejected_start_log(),
        [],
        [],
        EPOCH,
    )
    assert text.endswith(
        "the charger answered Rejected; not re-enacted: this CSMS's adapter cannot start (NotSupportedError)."
    )
