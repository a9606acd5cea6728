"""The oracle's judgement, case by case: hand-made traces, samples and stored rows; no sockets, no clock.

Each invariant is shown firing exactly when it should: at its boundary, and
not a moment before; excused where the simulator's faults leave the CSMS blind.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.adapters.base import (
    BUSY,
    FREE,
    OFFLINE,
    UNKNOWN,
    StoredSession,
    StoredTransaction,
    Verdict,
)
from scenarios.oracle import KINDS, Hold, Rules, Sample, Violation, expected_fee, judge
from scenarios.timeline import SimTransaction, Timeline
from simulator.truth import truth_at

from .tracebuild import STEPS, TraceBuilder, random_story


def sample(
    t: float,
    verdict: str,
    *,
    c: int = 1,
    cp: str = "CP1",
    until: float = -1.0,
    reasons: tuple[str, ...] = (),
    signals: dict | None = None,
) -> Sample:
    return Sample(t, cp, c, Verdict(verdict, reasons, signals), until)


def run(
    b: TraceBuilder | list, samples=(), stored=None, *, window: float = 5.0, end: float | None = None, **rules
) -> list[tuple[str, str, int]]:
    records = b.records if isinstance(b, TraceBuilder) else b
    tl = Timeline.from_records(records, connectors={"CP1": 2}, end=end)
    j = judge(list(samples), tl, stored, Rules(recovery_window=window, **rules))
    return [(v.kind, v.cp, v.connector) for v in j.violations]


def judged(b: TraceBuilder, samples=(), stored=None, *, window: float = 5.0, end: float | None = None, **rules):
    tl = Timeline.from_records(b.records, connectors={"CP1": 2}, end=end)
    return judge(list(samples), tl, stored, Rules(recovery_window=window, **rules))


def row(x: SimTransaction, **kw) -> StoredTransaction:
    """What an honest CSMS stores for a real transaction (override fields with `kw`)."""
    fields = dict(
        transaction_id=x.transaction_id,
        cp=x.cp,
        connector=x.connector,
        id_tag=x.id_tag,
        meter_start=x.meter_start,
        meter_stop=x.meter_end,
        stop_reason=x.reason,
        closed=x.ended_at is not None,
        session=None,
    )
    fields.update(kw)
    return StoredTransaction(**fields)


def honest_rows(b: TraceBuilder, **kw) -> list[StoredTransaction]:
    return [row(x, **kw) for x in Timeline.from_records(b.records).transactions if x.transaction_id is not None]


FREE_ONLY = {"check_busy": False, "check_stored": False}
BUSY_ONLY = {"check_free": False, "check_stored": False}


def charging_from(t0: float) -> TraceBuilder:
    b = TraceBuilder()
    b.online(0.0)
    b.start(t0, meter=0, transaction_id=1)
    return b


def idle_from(t0: float) -> TraceBuilder:
    """A session that ends with the car leaving at t0; the charger online all along."""
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=1)
    b.end(t0, 1, 500, unplug=True)
    return b


# ------------------------------------------------------------ falsely free
def test_free_while_charging_past_the_grace_is_falsely_free():
    b = charging_from(10.0)
    assert run(b, [sample(11.0, FREE)], **FREE_ONLY) == []  # 1.0 s: within the 1.5 s grace
    assert run(b, [sample(11.49, FREE)], **FREE_ONLY) == []
    assert run(b, [sample(11.5, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]  # exactly the grace
    assert run(b, [sample(50.0, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]
    assert run(b, [sample(50.0, BUSY), sample(50.0, OFFLINE), sample(50.0, UNKNOWN)], **FREE_ONLY) == []
    assert run(b, [sample(50.0, FREE, c=2)], **FREE_ONLY) == []  # the other connector is idle
    assert run(b, [sample(50.0, FREE)], check_free=False, check_busy=False, check_stored=False) == []


def _silent_start(t0: float, told_at: float, *, online: bool = True) -> TraceBuilder:
    """A car starts at t0 on a connector that sends no status; its StartTransaction leaves at told_at."""
    from simulator.model import Event

    b = TraceBuilder()
    b.online(0.0)
    if not online:
        b.closed(t0 - 1.0)
    b.apply(t0, 1, Event.PLUG, 0)
    b.apply(t0, 1, Event.START, 0)
    b.write(t0, "tx", connector=1, event="start", local_id=1, tag="TAG1", remote=False, meter=0)
    b.call(
        told_at,
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2024-01-01T00:00:00Z"},
    )
    return b


def test_online_all_along_the_grace_runs_from_when_the_charger_told():
    # Queued behind its other calls, the StartTransaction left 2 s after the car started: nothing
    # could tell the CSMS before that (no status either).
    b = _silent_start(10.0, 12.0)
    assert run(b, [sample(12.5, FREE)], **FREE_ONLY) == []
    assert run(b, [sample(13.5, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]
    (v,) = judged(b, [sample(13.5, FREE)], **FREE_ONLY).violations
    assert "since t=10.0s" in v.message  # the message still names when the car really started
    # Told busy by a status before the start (Preparing at plug): judged from the start, as ever.
    b = _silent_start(10.0, 12.0)
    b.call(9.0, "StatusNotification", {"connectorId": 1, "status": "Preparing", "errorCode": "NoError"})
    b.records.sort(key=lambda r: r["t"])
    assert run(b, [sample(11.5, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]


def test_a_silent_connectors_earlier_transaction_does_not_count_as_telling():
    # Its last transaction's StartTransaction said busy, its StopTransaction said it ended (no Available
    # follows from a silent connector): the next car is known only from its own StartTransaction.
    from simulator.model import Event

    b = TraceBuilder()
    b.online(0.0)
    b.session(1.0, 1, transaction_id=1, meter_start=0, energy=100, samples=0)
    b.apply(30.0, 1, Event.PLUG, 100)
    b.apply(30.0, 1, Event.START, 100)
    b.write(30.0, "tx", connector=1, event="start", local_id=9, tag="TAG1", remote=False, meter=100)
    b.call(
        32.0,
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": "2024-01-01T00:00:00Z"},
    )
    assert run(b, [sample(31.6, FREE)], **FREE_ONLY) == []
    assert run(b, [sample(33.6, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]


def test_offline_the_charger_cannot_tell_and_free_is_still_false():
    # Away since t=9 with the car started at 10: whatever it queued, "free" is wrong (it is offline).
    b = _silent_start(10.0, 30.0, online=False)
    assert run(b, [sample(11.5, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]


def test_a_car_that_went_from_charging_to_suspended_is_still_in_its_transaction():
    """SuspendedEV right after Charging: the grace counts from the transaction's start, not the car_full."""
    b = charging_from(10.0)
    b.car_full(30.0, 1, 5000)
    assert run(b, [sample(30.5, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]
    (v,) = judged(b, [sample(30.5, FREE)], **FREE_ONLY).violations
    assert "in its transaction since t=10.0s (suspended since t=30.0s)" in v.message


def test_a_plugged_or_finishing_connector_reported_free_is_not_falsely_free():
    b = TraceBuilder()
    b.online(0.0)
    b.plug(1.0)
    assert run(b, [sample(9.0, FREE)], **FREE_ONLY) == []
    b.start(10.0, meter=0, transaction_id=1)
    b.end(20.0, 1, 100)  # Finishing: the cable is in, nothing runs
    assert run(b, [sample(29.0, FREE)], **FREE_ONLY) == []


def test_a_truth_that_changed_while_the_question_was_in_flight_is_not_held_against_the_answer():
    # The car arrived and started while the request was on its way: the answer may predate it.
    b = charging_from(20.5)
    assert run(b, [sample(20.0, FREE, until=21.0)], **FREE_ONLY) == []
    assert run(b, [sample(20.0, FREE, until=30.0)], **FREE_ONLY) == []
    # The car left while the request was on its way: the answer may already know.
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=1)
    b.end(20.5, 1, 100, unplug=True)
    assert run(b, [sample(20.0, FREE, until=21.0)], **FREE_ONLY) == []
    assert run(b, [sample(20.0, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]  # asked and answered at 20


def test_a_granted_hold_is_never_free():
    b = TraceBuilder()
    b.online(0.0)
    hold = (Hold("CP1", 1, 5.0, 30.0),)
    assert run(b, [sample(6.0, FREE)], holds=hold, **FREE_ONLY) == []  # within the grace of the grant
    assert run(b, [sample(6.5, FREE)], holds=hold, **FREE_ONLY) == [("falsely_free", "CP1", 1)]
    assert run(b, [sample(30.0, FREE)], holds=hold, **FREE_ONLY) == [("falsely_free", "CP1", 1)]
    assert run(b, [sample(30.1, FREE)], holds=hold, **FREE_ONLY) == []
    assert run(b, [sample(20.0, FREE, c=2)], holds=hold, **FREE_ONLY) == []
    assert run(b, [sample(20.0, FREE)], holds=(Hold("CP2", 1, 5.0, 30.0),), **FREE_ONLY) == []
    (v,) = judged(b, [sample(20.0, FREE)], holds=hold, **FREE_ONLY).violations
    assert "reservation granted at t=5.0s" in v.message


def test_a_hold_that_ended_while_the_question_was_in_flight_is_not_held_against_the_answer():
    b = TraceBuilder()
    b.online(0.0)
    hold = (Hold("CP1", 1, 5.0, 30.0),)
    assert run(b, [sample(29.9, FREE, until=30.5)], holds=hold, **FREE_ONLY) == []
    assert run(b, [sample(29.0, FREE, until=30.0)], holds=hold, **FREE_ONLY) == [("falsely_free", "CP1", 1)]


def test_a_transaction_a_hung_charger_never_announced_is_not_falsely_free():
    b = TraceBuilder()
    b.online(0.0)
    b.fault(5.0, "heartbeat_stop", None)
    b.start(10.0, meter=0)  # queued behind the hang: the CSMS never hears of it
    assert run(b, [sample(20.0, FREE)], **FREE_ONLY) == []
    b2 = TraceBuilder()
    b2.online(0.0)
    b2.start(3.0, meter=0, transaction_id=1)  # announced before the hang
    b2.fault(5.0, "heartbeat_stop", None)
    assert run(b2, [sample(20.0, FREE)], **FREE_ONLY) == [("falsely_free", "CP1", 1)]


# ------------------------------------------------------------ falsely busy
def test_busy_after_the_window_while_idle_and_online_is_falsely_busy():
    b = idle_from(10.0)  # idle since 10, online since 0; window 5
    assert run(b, [sample(14.9, BUSY)], **BUSY_ONLY) == []  # idle for 4.9 s only
    assert run(b, [sample(15.0, BUSY)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]  # exactly the window
    assert run(b, [sample(15.0, FREE)], **BUSY_ONLY) == []
    assert run(b, [sample(15.0, OFFLINE)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]
    assert run(b, [sample(15.0, UNKNOWN)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]
    assert run(b, [sample(15.0, BUSY)], check_busy=False, check_free=False, check_stored=False) == []
    (v,) = judged(b, [sample(15.0, OFFLINE)], **BUSY_ONLY).violations
    assert "reported offline" in v.message and "idle since t=10.0s" in v.message


def test_not_idle_for_the_whole_window_is_not_judged():
    b = idle_from(10.0)
    b.plug(13.0)  # another car, no transaction
    assert run(b, [sample(30.0, BUSY)], **BUSY_ONLY) == []
    b.unplug(20.0)
    assert run(b, [sample(24.9, BUSY)], **BUSY_ONLY) == []
    assert run(b, [sample(25.0, BUSY)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]


def test_the_charger_must_have_been_connected_for_the_whole_window():
    b = idle_from(2.0)
    b.closed(11.0)
    b.connected(12.0)  # back after a second away: the CSMS gets a full window again
    assert run(b, [sample(16.9, BUSY)], **BUSY_ONLY) == []
    assert run(b, [sample(17.0, BUSY)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]
    # reconnected while the question was in flight
    b2 = idle_from(2.0)
    b2.closed(11.0)
    b2.connected(30.5)
    assert run(b2, [sample(30.0, BUSY, until=31.0)], **BUSY_ONLY) == []


def test_nothing_is_falsely_busy_before_recovery_from_plus_the_window():
    b = idle_from(2.0)
    assert run(b, [sample(24.9, BUSY)], recovery_from=20.0, **BUSY_ONLY) == []
    assert run(b, [sample(25.0, BUSY)], recovery_from=20.0, **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]


def test_a_held_connector_may_be_busy_until_the_window_after_its_hold():
    b = idle_from(2.0)
    hold = (Hold("CP1", 1, 10.0, 20.0),)
    assert run(b, [sample(25.0, BUSY)], holds=hold, **BUSY_ONLY) == []
    assert run(b, [sample(25.1, BUSY)], holds=hold, **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]


def test_busy_while_the_reservation_is_being_granted_is_no_fault():
    """concurrent_starts under load: the CSMS held the connector before its answer to the payer arrived."""
    b = idle_from(2.0)
    assert run(b, [sample(9.0, BUSY)], holds=(Hold("CP1", 1, 10.0, 20.0),), **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]
    assert run(b, [sample(9.0, BUSY)], holds=(Hold("CP1", 1, 10.0, 20.0, asked=8.5),), **BUSY_ONLY) == []
    # Free is still judged from the grant only.
    assert run(b, [sample(9.0, FREE)], holds=(Hold("CP1", 1, 10.0, 20.0, asked=5.0),), **FREE_ONLY) == []


def test_a_gone_charger_must_be_reported_offline():
    b = idle_from(2.0)
    b.closed(20.0)  # gone for good
    assert run(b, [sample(24.9, BUSY), sample(24.9, FREE)], **BUSY_ONLY) == []  # within the window
    assert run(b, [sample(25.0, OFFLINE)], **BUSY_ONLY) == []
    assert run(b, [sample(25.0, BUSY)], **BUSY_ONLY) == [("not_offline", "CP1", 1)]
    assert run(b, [sample(25.0, FREE)], **BUSY_ONLY) == [("not_offline", "CP1", 1)], (
        "a charger gone for the whole window is never free"
    )
    (v,) = judged(b, [sample(25.0, FREE)], **BUSY_ONLY).violations
    assert "gone since t=20.0s" in v.message and "says free" in v.message


def test_a_charger_that_never_connected_is_gone_from_the_start():
    b = TraceBuilder()
    assert run(b, [sample(5.0, FREE)], **BUSY_ONLY) == [("not_offline", "CP1", 1)]
    assert run(b, [sample(5.0, OFFLINE)], **BUSY_ONLY) == []


@pytest.mark.parametrize(
    ("faults", "blind"),
    [
        ([("stuck_status", 1, {"status": "Finishing"})], True),
        ([("stuck_status", 1, {"status": "Charging"})], True),
        ([("silent_connector", 1, {}), ("drop_stop_transaction", 1, {"available": False})], True),
        ([("silent_connector", 1, {"ignore_trigger": True}), ("drop_stop_transaction", 1, {})], True),
        ([("silent_connector", 1, {"ignore_trigger": False}), ("drop_stop_transaction", 1, {})], False),
        ([("drop_stop_transaction", 1, {"available": False})], False),  # a TriggerMessage gets the truth
        ([("silent_connector", 1, {})], False),  # transactions still tell it
        ([("stuck_status", 2, {})], False),  # another connector's
    ],
)
def test_blinding_faults_excuse_a_busy_connector_unless_an_admin_told_the_csms(faults, blind):
    b = idle_from(2.0)
    for name, connector, params in faults:
        b.fault(1.5, name, connector, **params)
    samples = [sample(20.0, BUSY)]
    j = judged(b, samples, **BUSY_ONLY)
    assert [v.kind for v in j.violations] == ([] if blind else ["falsely_busy"])
    assert j.checked["excused_connectors"] == (1 if blind else 0)
    strict = judged(b, samples, excuse_blinded=False, **BUSY_ONLY)
    assert [v.kind for v in strict.violations] == ["falsely_busy"]


def test_a_fault_that_fires_after_the_sample_excuses_nothing():
    b = idle_from(2.0)
    b.fault(30.0, "stuck_status", 1, status="Finishing")
    assert run(b, [sample(20.0, BUSY)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]


def test_a_muted_charger_excuses_its_connectors_until_it_reboots():
    b = idle_from(2.0)
    b.fault(5.0, "heartbeat_stop", None, answer_calls=False)
    assert run(b, [sample(20.0, BUSY), sample(20.0, OFFLINE, c=2)], **BUSY_ONLY) == []
    b.closed(25.0)  # the CSMS closed the silent socket; the hung charger comes back, still silent
    b.connected(26.0)
    assert run(b, [sample(40.0, BUSY)], **BUSY_ONLY) == []
    b.reboot(50.0, connector=None, back_at=55.0)
    assert run(b, [sample(59.9, BUSY)], **BUSY_ONLY) == []
    assert run(b, [sample(60.0, BUSY)], **BUSY_ONLY) == [("falsely_busy", "CP1", 1)]


# ------------------------------------------------------------ stored rows
def clean_story() -> TraceBuilder:
    b = TraceBuilder()
    b.online(0.0)
    b.session(1.0, 1, transaction_id=11, meter_start=1000, energy=600)
    b.session(12.0, 1, transaction_id=12, meter_start=1600, energy=900, tag="TAG2")
    b.session(3.0, 2, transaction_id=13, meter_start=0, energy=300, tag="TAG3")
    return b


def test_an_honest_store_passes():
    b = clean_story()
    j = judged(b, [], honest_rows(b), end=100.0)
    assert j.passed, [v.describe() for v in j.violations]
    assert j.checked == {"samples": 0, "transactions": 3, "stored": 3, "excused_connectors": 0}


def test_nothing_stored_is_judged_without_rows():
    b = clean_story()
    assert run(b, [], None, end=100.0) == []
    assert run(b, [], [], end=100.0, check_stored=False) == []


def test_an_acknowledged_start_that_was_not_stored_is_lost():
    b = clean_story()
    rows = honest_rows(b)
    assert run(b, [], [r for r in rows if r.transaction_id != 12], end=100.0) == [("lost_transaction", "CP1", 1)]
    rows[1] = row(Timeline.from_records(b.records).transactions[1], transaction_id=99)  # stored under another id
    assert run(b, [], rows, end=100.0) == [("lost_transaction", "CP1", 1)]


def test_a_start_that_never_reached_the_csms_is_not_judged():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0)  # never answered
    b.end(5.0, 1, 100, unplug=True)
    assert run(b, [], [], end=100.0) == []


def test_one_real_transaction_stored_twice_is_a_duplicate():
    b = clean_story()
    rows = honest_rows(b)
    twin = row(Timeline.from_records(b.records).transactions[0], transaction_id=77)
    assert run(b, [], [*rows, twin], end=100.0) == [("duplicate_transaction", "CP1", 1)]
    (v,) = judged(b, [], [*rows, twin], end=100.0).violations
    assert "11, 77" in v.message


def test_two_real_transactions_that_look_alike_are_not_duplicates():
    """Same tag, same meterStart (the first delivered nothing): two transactions, each stored once."""
    b = TraceBuilder()
    b.online(0.0)
    b.session(1.0, 1, transaction_id=1, meter_start=500, energy=0, samples=0)
    b.session(20.0, 1, transaction_id=2, meter_start=500, energy=400, samples=0)
    assert run(b, [], honest_rows(b), end=100.0) == []


def test_a_look_alike_whose_start_was_never_answered_owns_its_row():
    """chaos_under_load on PostgreSQL: a 0 Wh transaction, then another with the same tag and meterStart whose
    StartTransaction was stored but never answered (a reboot lost it): two rows of one shape, no duplicate."""
    b = TraceBuilder()
    b.online(0.0)
    b.session(1.0, 1, transaction_id=1, meter_start=500, energy=0, samples=0)
    b.start(20.0, meter=500)  # sent, stored by the CSMS as 2, never answered
    b.end(25.0, 1, 500, unplug=True)
    first = Timeline.from_records(b.records).transactions[0]
    rows = [row(first), row(first, transaction_id=2)]
    assert run(b, [], rows, end=100.0) == []
    # ... but a third row of that shape is one too many.
    assert run(b, [], [*rows, row(first, transaction_id=3)], end=100.0) == [("duplicate_transaction", "CP1", 1)]


def dropped_stop() -> TraceBuilder:
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.sample(2.0, 1, 300)
    b.sample(3.0, 1, 600)
    b.end(4.0, 1, 700, unplug=True, drop=True, available=False)  # ended at 4.0, never told
    return b


def test_a_transaction_still_open_after_the_recovery_window_is_unclosed():
    b = dropped_stop()
    open_row = honest_rows(b, closed=False, meter_stop=None, stop_reason=None)
    assert run(b, [], open_row, window=10.0, end=13.9) == []  # ended 9.9 s before the end
    assert run(b, [], open_row, window=10.0, end=14.0) == [("unclosed_transaction", "CP1", 1)]
    assert run(b, [], open_row, window=10.0, end=100.0) == [("unclosed_transaction", "CP1", 1)]
    assert run(b, [], honest_rows(b, meter_stop=600), window=10.0, end=100.0) == []  # closed by the CSMS


def test_an_unclosed_transaction_gets_the_window_from_recovery_from():
    b = dropped_stop()
    open_row = honest_rows(b, closed=False, meter_stop=None, stop_reason=None)
    assert run(b, [], open_row, window=10.0, end=29.9, recovery_from=20.0) == []
    assert run(b, [], open_row, window=10.0, end=30.0, recovery_from=20.0) == [("unclosed_transaction", "CP1", 1)]


def test_a_running_transaction_may_be_open():
    b = charging_from(1.0)
    assert run(b, [], honest_rows(b, closed=False, meter_stop=None), end=100.0) == []


def test_an_unclosed_transaction_behind_a_blinding_fault_is_excused_unless_an_admin_acted():
    b = dropped_stop()
    b.fault(0.5, "silent_connector", 1)
    open_row = honest_rows(b, closed=False, meter_stop=None, stop_reason=None)
    assert run(b, [], open_row, window=10.0, end=100.0) == []
    assert run(b, [], open_row, window=10.0, end=100.0, excuse_blinded=False) == [("unclosed_transaction", "CP1", 1)]


def test_a_lost_transaction_of_a_reboot_must_be_closed_too():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.sample(2.0, 1, 300)
    b.reboot(3.0, {1: 450}, back_at=8.0)
    assert run(b, [], honest_rows(b, closed=False, meter_stop=None), end=100.0) == [("unclosed_transaction", "CP1", 1)]
    assert run(b, [], honest_rows(b, meter_stop=300), end=100.0) == []  # within one sample of the register


def test_an_acknowledged_stop_must_be_stored_as_sent():
    b = clean_story()
    rows = honest_rows(b)
    x = Timeline.from_records(b.records).transactions[0]
    assert x.stop_acked and x.stop_meter_sent == 1600
    rows[0] = row(x, meter_stop=1590, stop_reason="Other")
    assert run(b, [], rows, end=100.0) == [("lost_stop", "CP1", 1)]
    (v,) = judged(b, [], rows, end=100.0).violations
    assert "meterStop=1600 was acknowledged" in v.message and "meterStop=1590" in v.message


def test_a_stop_that_was_sent_but_not_acknowledged_is_judged_like_a_force_end():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.sample(2.0, 1, 200)
    b.sample(2.5, 1, 400)
    b.end(3.0, 1, 500, ack=None, unplug=True)  # sent, never answered: the CSMS may not have it
    assert run(b, [], honest_rows(b, meter_stop=500), end=100.0) == []
    assert run(b, [], honest_rows(b, meter_stop=400), end=100.0) == []  # the last acknowledged sample: allowed
    assert run(b, [], honest_rows(b, meter_stop=399), end=100.0) == []  # 1 Wh of rounding
    # Less than the CSMS had acknowledged evidence of (400 Wh) is wrong, however small the step.
    assert run(b, [], honest_rows(b, meter_stop=398), end=100.0) == [("wrong_energy", "CP1", 1)]


@pytest.mark.parametrize(
    ("meter_stop", "ok"),
    [
        # real 700 Wh; the CSMS acknowledged samples up to 600 Wh (one sample is up to 300 Wh)
        (700, True),
        (600, True),
        (599, True),
        (701, True),
        (598, False),
        (399, False),
        (702, False),
        (0, False),
        (2000, False),
    ],
)
def test_a_force_ended_transaction_is_stored_between_its_evidence_and_the_truth(meter_stop, ok):
    b = dropped_stop()
    x = Timeline.from_records(b.records).transactions[0]
    assert (x.energy_wh, x.sample_step_wh()) == (700, 300)
    expected = [] if ok else [("wrong_energy", "CP1", 1)]
    assert run(b, [], honest_rows(b, meter_stop=meter_stop), end=100.0) == expected


def session_rows(
    b: TraceBuilder,
    *,
    energy: int | None = None,
    tariff: str = "0.30",
    fee: str | None = None,
    reconciled: bool = False,
) -> list[StoredTransaction]:
    out = []
    for x in Timeline.from_records(b.records).transactions:
        e = x.energy_wh if energy is None else energy
        s = StoredSession(
            f"S{x.transaction_id}",
            "Completed",
            Decimal(tariff),
            e,
            expected_fee(e, Decimal(tariff)) if fee is None else Decimal(fee),
            reconciled=reconciled,
        )
        out.append(row(x, session=s))
    return out


def one_session(energy: int) -> TraceBuilder:
    b = TraceBuilder()
    b.online(0.0)
    b.session(1.0, 1, transaction_id=7, meter_start=10_000, energy=energy)
    return b


def test_a_session_bills_its_transactions_energy():
    b = one_session(2345)
    assert run(b, [], session_rows(b), end=100.0) == []
    assert run(b, [], session_rows(b, energy=2000), end=100.0) == [("wrong_energy", "CP1", 1)]
    assert run(b, [], session_rows(b, energy=2000, reconciled=True), end=100.0) == []


def test_expected_fee_rounds_half_up_to_the_cent():
    assert expected_fee(1, Decimal("5")) == Decimal("0.01")  # 0.005 -> 0.01
    assert expected_fee(1, Decimal("4.99")) == Decimal("0.00")  # 0.00499 -> 0.00
    assert expected_fee(2345, Decimal("0.30")) == Decimal("0.70")  # 0.7035
    assert expected_fee(2350, Decimal("0.30")) == Decimal("0.71")  # 0.705 -> 0.71 (banker's would say 0.70)
    assert expected_fee(0, Decimal("0.30")) == Decimal("0.00")


def test_a_fee_that_does_not_follow_energy_times_tariff_is_wrong():
    b = one_session(2350)
    assert run(b, [], session_rows(b, fee="0.71"), end=100.0) == []
    assert run(b, [], session_rows(b, fee="0.70"), end=100.0) == [("wrong_fee", "CP1", 1)]  # rounded half-even
    (v,) = judged(b, [], session_rows(b, fee="0.70"), end=100.0).violations
    assert "fee 0.70 for 2350 Wh at 0.30/kWh, expected 0.71" in v.message


def test_a_tariff_other_than_the_one_asked_for_is_a_wrong_fee():
    b = one_session(1000)
    rows = session_rows(b, tariff="0.40")
    assert run(b, [], rows, end=100.0) == []  # nobody said what was asked
    assert run(b, [], rows, end=100.0, tariffs={"S7": Decimal("0.40")}) == []
    assert run(b, [], rows, end=100.0, tariffs={"S7": Decimal("0.35")}) == [("wrong_fee", "CP1", 1)]
    (v,) = judged(b, [], rows, end=100.0, tariffs={"S7": Decimal("0.35")}).violations
    assert "started at 0.35/kWh, the CSMS bills 0.40" in v.message


# ---------------------------------------------------------- the judgement
def test_many_samples_of_one_fault_are_one_violation_with_count_first_and_last():
    b = charging_from(10.0)
    samples = [sample(t, FREE) for t in (12.0, 12.5, 13.0, 13.5)] + [sample(14.0, FREE, c=2)]
    (v,) = judged(b, samples, **FREE_ONLY).violations
    assert (v.kind, v.count, v.t, v.last_t) == ("falsely_free", 4, 12.0, 13.5)


def test_violations_come_in_the_order_of_kinds():
    b = idle_from(2.0)
    rows = honest_rows(b, closed=False, meter_stop=None)  # unclosed
    j = judged(b, [sample(30.0, BUSY), sample(30.0, BUSY, c=2)], rows, end=100.0)
    assert [(v.kind, v.connector) for v in j.violations] == [
        ("falsely_busy", 1),
        ("falsely_busy", 2),
        ("unclosed_transaction", 1),
    ]
    assert list(KINDS).index("falsely_busy") < list(KINDS).index("unclosed_transaction")
    assert not j.passed


def test_describe_names_the_connector_the_verdict_the_truth_and_the_faults():
    b = charging_from(10.0)
    b.fault(3.0, "silent_connector", 1)
    b.fault(4.0, "slow_responses", None, min=1.0)
    b.fault(99.0, "stuck_status", 1)  # after the samples: not part of this story
    samples = [
        sample(t, FREE, reasons=("status:Available", "tx:none"), signals={"lastStatus": "Available"})
        for t in (12.0, 13.0, 14.0)
    ]
    (v,) = judged(b, samples, **FREE_ONLY).violations
    text = v.describe()
    first, *rest = text.splitlines()
    assert first.startswith(
        "falsely_free: CP1/1 at t=12.0s..14.0s (3 samples): reported free, but a car has been charging since t=10.0s"
    )
    assert "  CSMS said: free reasons=['status:Available', 'tx:none']" in rest
    assert "  raw signals: {'lastStatus': 'Available'}" in rest
    truth = next(line for line in rest if line.startswith("  ground truth: "))
    assert "'state': 'charging'" in truth and "'transactionId': 1" in truth and "'chargerConnected': True" in truth
    assert rest[-1] == "  faults: silent_connector@3.0s(connector 1), slow_responses@4.0s"
    assert v.to_json()["faults"][1] == {"t": 4.0, "name": "slow_responses", "connector": None, "params": {"min": 1.0}}


def test_describe_says_when_no_fault_fired_and_one_sample_has_no_range():
    b = idle_from(2.0)
    (v,) = judged(b, [sample(20.0, BUSY, reasons=("status:Charging",))], **BUSY_ONLY).violations
    lines = v.describe().splitlines()
    assert lines[0].startswith("falsely_busy: CP1/1 at t=20.0s: reported busy")
    assert "raw signals" not in v.describe()
    assert lines[-1] == "  faults: none fired on this connector"
    assert (
        Violation("lost_stop", "CP9", 2, "m").describe()
        == "lost_stop: CP9/2: m\n  faults: none fired on this connector"
    )


def test_stored_violations_of_one_connector_keep_the_first_and_count_all():
    b = clean_story()
    rows = [r for r in honest_rows(b) if r.connector == 2]  # both transactions of connector 1 lost
    (v,) = judged(b, [], rows, end=100.0).violations
    assert (v.kind, v.connector, v.count, v.t) == ("lost_transaction", 1, 2, 1.0)
    assert v.last_t == 20.0  # the second transaction ended at 12 + 8
    assert "transactionId 11" in v.message


# -------------------------------------------------------------- properties
def honest_verdict(records: list[dict], t: float) -> Verdict:
    """What a CSMS that sees the truth itself would answer at t (the simulator's `truth_at`, not the timeline)."""
    link = [r for r in records if r["kind"] == "link" and r["event"] in ("connected", "closed") and r["t"] <= t]
    if not link or link[-1]["event"] == "closed":
        return Verdict(OFFLINE)
    return Verdict(FREE if truth_at(records, "CP1", 1, t)["state"] == "unplugged" else BUSY)


def honest_store(b: TraceBuilder) -> list[StoredTransaction]:
    """Every answered start stored; a stop as sent, a dropped or lost one closed at the last sample."""
    out = []
    for x in Timeline.from_records(b.records).transactions:
        if x.transaction_id is None:
            continue
        if x.ended_at is None:
            out.append(row(x, closed=False, meter_stop=None))
        else:
            out.append(
                row(
                    x,
                    meter_stop=x.stop_meter_sent
                    if x.stop_meter_sent is not None
                    else ([x.meter_start, *x.samples][-1]),
                )
            )
    return out


@settings(max_examples=200, deadline=None)
@given(
    STEPS,
    st.lists(st.tuples(st.floats(0.0, 80.0), st.floats(0.0, 0.5)), max_size=30),
    st.floats(0.5, 10.0),
    st.floats(0.0, 20.0),
)
def test_a_csms_whose_verdicts_are_the_truth_is_never_in_violation(steps, asks, window, recovery_from):
    b = random_story(steps)
    samples = [Sample(t, "CP1", 1, honest_verdict(b.records, t), t + delay) for t, delay in sorted(asks)]
    tl = Timeline.from_records(b.records, end=max([r["t"] for r in b.records] + [t for t, _ in asks]))
    j = judge(samples, tl, honest_store(b), Rules(recovery_window=window, recovery_from=recovery_from))
    assert j.passed, "\n".join(v.describe() for v in j.violations)


@settings(max_examples=200, deadline=None)
@given(STEPS, st.lists(st.floats(0.0, 80.0), min_size=1, max_size=30), st.floats(0.5, 3.0))
def test_a_csms_that_always_says_free_is_caught_exactly_when_a_car_charged_for_the_grace(steps, moments, grace):
    b = random_story(steps)
    samples = [sample(t, FREE) for t in sorted(moments)]
    j = judge(
        samples,
        Timeline.from_records(b.records),
        None,
        Rules(recovery_window=5.0, grace=grace, check_busy=False, check_stored=False),
    )
    caught = [t for t in sorted(moments) if any(s <= t - grace and t < e for s, e in b.intervals)]
    if not caught:
        assert j.passed
    else:
        (v,) = j.violations
        assert (v.kind, v.count, v.t, v.last_t) == ("falsely_free", len(caught), caught[0], caught[-1])


def test_energy_lost_with_a_dropped_queue_is_not_held_against_the_csms():
    """Samples sent but never acknowledged (a reconnect dropped the queue): the CSMS bills its evidence."""
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.sample(2.0, 1, 100)
    b.sample(3.0, 1, 200, ack=False)  # in flight when the link went down; lost
    b.sample(4.0, 1, 300, ack=False)
    b.end(5.0, 1, 400, ack=None, unplug=True)
    x = Timeline.from_records(b.records).transactions[0]
    assert (x.evidenced_wh(), x.energy_wh) == (100, 400)
    assert run(b, [], honest_rows(b, meter_stop=100), end=100.0) == []
    assert run(b, [], honest_rows(b, meter_stop=99), end=100.0) == []
    assert run(b, [], honest_rows(b, meter_stop=98), end=100.0) == [("wrong_energy", "CP1", 1)]


@pytest.mark.parametrize("loss", ["reboot", "disconnect_replay_false"])
def test_a_trigger_ignoring_connector_that_lost_its_stop_is_excused(loss):
    """silent_connector(ignore_trigger) + a fault that loses the StopTransaction: no CSMS can learn the end."""
    from scenarios.oracle import _blinded
    from scenarios.timeline import FaultMark

    tl = Timeline()
    tl.connector("CP1", 1).faults.append(FaultMark(0.1, "silent_connector", 1, {"ignore_trigger": True}))
    mark = (
        FaultMark(2.0, "reboot", None, {})
        if loss == "reboot"
        else FaultMark(2.0, "disconnect_mid_session", None, {"replay": False})
    )
    tl.charge_point("CP1").faults.append(mark)
    assert _blinded(tl, "CP1", 1, 5.0)
    assert not _blinded(tl, "CP1", 1, 1.0)  # before the loss: the CSMS could still have known
    tl.connector("CP1", 1).faults[0] = FaultMark(0.1, "silent_connector", 1, {"ignore_trigger": False})
    assert not _blinded(tl, "CP1", 1, 5.0)  # a connector that answers triggers can be asked


# ------------------------------------------------------------------ claims
def test_what_the_profile_does_not_claim_is_counted_not_failed():
    b = idle_from(10.0)
    busy = [sample(t, BUSY) for t in (15.0, 16.0)]
    claimed = judged(b, busy, claims=frozenset({"occupancy"}), **BUSY_ONLY)
    assert [v.kind for v in claimed.violations] == ["falsely_busy"] and claimed.unclaimed == {}
    unclaimed = judged(b, busy, claims=frozenset({"transactions"}), **BUSY_ONLY)
    assert unclaimed.passed and unclaimed.unclaimed == {"falsely_busy": 1}
    assert judged(b, busy, **BUSY_ONLY).violations == claimed.violations  # no profile: everything is claimed


def test_a_dropped_charger_is_judged_whatever_the_profile_claims():
    v = Violation("dropped_charger", "CP1", 0, "closed")
    assert v.claimed_by is None
    j = judged(idle_from(10.0), answers=(v,), claims=frozenset(), **BUSY_ONLY)
    assert [x.kind for x in j.violations] == ["dropped_charger"]


def test_wrong_answers_are_judged_by_their_own_claim_and_each_stands_alone():
    answers = (
        Violation("wrong_answer", "CP1", 1, "start refused on a free connector"),
        Violation("wrong_answer", "CP1", 1, "unlock ended nothing", claim="unlock_cleanup"),
        Violation("wrong_answer", "CP1", 1, "a second wrong answer on the same connector"),
    )
    everything = judged(idle_from(10.0), answers=answers, **BUSY_ONLY)
    assert [v.message for v in everything.violations] == [a.message for a in answers]  # not merged
    j = judged(idle_from(10.0), answers=answers, claims=frozenset({"occupancy"}), **BUSY_ONLY)
    assert [v.message for v in j.violations] == [answers[0].message, answers[2].message]
    assert j.unclaimed == {"wrong_answer": 1}
    assert j.violations[0].to_json()["claim"] is None and answers[1].to_json()["claim"] == "unlock_cleanup"


def test_every_kind_names_its_claim():
    from scenarios.oracle import KIND_CLAIMS
    from scenarios.profile import CLAIMS

    assert set(KIND_CLAIMS) == set(KINDS)
    assert {c for c in KIND_CLAIMS.values() if c is not None} <= set(CLAIMS)
