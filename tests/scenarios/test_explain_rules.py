"""The pure rules of `unstuck-scenarios explain` (scenarios/explain_rules.py): small inline frame lists, no sockets."""

from __future__ import annotations

import pytest

from scenarios.adapters.base import Verdict
from scenarios.explain_rules import (
    BUSY_FINISHING,
    BUSY_UNREPORTED,
    BUSY_WHILE_FREE,
    FREE_WHILE_OCCUPIED,
    AuditMark,
    VerdictSample,
    clock,
    describe_finding,
    find_findings,
    moment_at,
    parse_log_time,
    read_charger_log,
)
from simulator.fieldlog.frames import FrameRecord, LinkRecord

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
