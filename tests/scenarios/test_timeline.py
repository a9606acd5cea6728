"""Ground truth rebuilt from hand-made trace records: synchronous, no sockets, no clock."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.timeline import IDLE_STATE, FaultMark, Timeline
from simulator.truth import truth_at

from .tracebuild import STEPS, TraceBuilder, random_story


def timeline(b: TraceBuilder, **kw) -> Timeline:
    return Timeline.from_records(b.records, **kw)


# ------------------------------------------------------------------ states
def test_state_at_says_the_state_and_since_when():
    b = TraceBuilder()
    b.online(0.0)
    b.plug(1.0)
    b.start(2.0, meter=100, transaction_id=7)
    b.car_full(5.0, 1, 900)
    b.end(8.0, 1, 900)
    b.unplug(9.0, 1, 900)
    c = timeline(b).connector("CP1", 1)
    assert c.state_at(0.5) == (IDLE_STATE, 0.0)
    assert c.state_at(1.0) == ("plugged", 1.0)  # a change at exactly t already holds at t
    assert c.state_at(1.999) == ("plugged", 1.0)
    assert c.state_at(2.0) == ("charging", 2.0)
    assert c.state_at(6.0) == ("suspended", 5.0)
    assert c.state_at(8.5) == ("finishing", 8.0)
    assert c.state_at(100.0) == (IDLE_STATE, 9.0)


def test_running_since_spans_charging_and_suspended():
    """A car that went from Charging to SuspendedEV has been in its transaction since it started."""
    b = TraceBuilder()
    b.online(0.0)
    b.start(2.0, meter=100, transaction_id=7)
    b.car_full(5.0, 1, 900)
    b.end(8.0, 1, 900, unplug=True)
    c = timeline(b).connector("CP1", 1)
    assert c.running_since(6.0) == 2.0
    assert c.running_since(3.0) == 2.0
    assert c.running_since(1.0) is None  # plugged, not running
    assert c.running_since(9.0) is None


def test_segments_cover_the_whole_run():
    b = TraceBuilder()
    b.plug(1.0)
    b.start(2.0, transaction_id=1)
    b.end(4.0, 1, 50, unplug=True)
    assert timeline(b).connector("CP1", 1).segments(10.0) == [
        (0.0, 1.0, IDLE_STATE),
        (1.0, 2.0, "plugged"),
        (2.0, 4.0, "charging"),
        (4.0, 10.0, IDLE_STATE),
    ]


def test_connectors_that_never_changed_are_there_and_idle():
    b = TraceBuilder()
    b.online(3.0)
    tl = timeline(b, connectors={"CP1": 2, "CP2": 1})
    assert set(tl.connectors) == {("CP1", 1), ("CP1", 2), ("CP2", 1)}
    assert tl.connector("CP2", 1).state_at(50.0) == (IDLE_STATE, 0.0)
    assert tl.end == 3.0  # the last record, unless told
    assert timeline(b, end=42.0).end == 42.0


# ------------------------------------------------------------ transactions
def test_a_clean_transaction_as_the_charge_point_ran_it():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, tag="TAG9", meter=1000, transaction_id=41, remote=True)
    b.sample(2.0, 1, 1300)
    b.sample(3.0, 1, 1800)
    b.end(4.0, 1, 2000, reason="Remote")
    b.unplug(5.0, 1, 2000)
    (x,) = timeline(b).transactions
    assert (x.cp, x.connector, x.local_id, x.id_tag, x.remote) == ("CP1", 1, 1, "TAG9", True)
    assert (x.transaction_id, x.started_at, x.ended_at, x.end, x.reason) == (41, 1.0, 4.0, "stop", "Remote")
    assert (x.meter_start, x.meter_end, x.energy_wh) == (1000, 2000, 1000)
    assert x.samples == [1300, 1800]
    assert x.stop_acked and x.stop_meter_sent == 2000
    assert x.sample_step_wh() == 500  # 1300 -> 1800 is the largest step the CSMS could have seen


def test_a_dropped_stop_transaction_ended_but_was_never_sent():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.sample(2.0, 1, 400)
    b.end(3.0, 1, 700, unplug=True, drop=True, available=False)
    tl = timeline(b)
    (x,) = tl.transactions
    assert (x.end, x.reason, x.meter_end, x.ended_at) == ("stop", "EVDisconnected", 700, 3.0)
    assert not x.stop_acked and x.stop_meter_sent is None
    (mark,) = tl.connector("CP1", 1).faults
    assert mark == FaultMark(3.0, "drop_stop_transaction", 1)
    assert mark.params == {"available": False}


def test_a_stop_transaction_answered_with_a_call_error_or_not_at_all_is_not_acknowledged():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=5)
    b.end(2.0, 1, 100, ack=False, unplug=True)
    b.start(3.0, meter=100, transaction_id=6)
    b.end(4.0, 1, 200, ack=None, unplug=True)
    b.start(5.0, meter=200, transaction_id=7)
    b.end(6.0, 1, 300, acked_at=9.0, unplug=True)  # answered later: acknowledged all the same
    a, n, late = timeline(b).transactions
    assert (a.stop_acked, a.stop_meter_sent) == (False, 100)
    assert (n.stop_acked, n.stop_meter_sent) == (False, 200)
    assert (late.stop_acked, late.stop_meter_sent) == (True, 300)


def test_a_reboot_loses_the_transaction_and_the_register_at_power_loss_ends_it():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=1000, transaction_id=3)
    b.sample(2.0, 1, 1500)
    b.reboot(4.0, {1: 1777.6}, back_at=9.0)
    tl = timeline(b)
    (x,) = tl.transactions
    assert (x.end, x.ended_at, x.meter_end, x.energy_wh) == ("lost", 4.0, 1777, 777)
    assert not x.stop_acked
    assert tl.connector("CP1", 1).state_at(5.0) == ("plugged", 4.0)  # the cable is still in
    cpt = tl.charge_point("CP1")
    assert cpt.connected_at(5.0) == (False, 4.0)
    assert cpt.connected_at(9.0) == (True, 9.0)
    assert [m.name for m in cpt.faults + tl.connector("CP1", 1).faults] == ["reboot"]


def test_an_unanswered_start_has_no_transaction_id_and_its_samples_are_not_its():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0)  # StartTransaction queued, never answered
    b.sample(2.0, 1, 300)  # MeterValues without a transactionId
    (x,) = timeline(b).transactions
    assert x.transaction_id is None and x.samples == [] and x.ended_at is None


def test_a_late_answer_links_the_transaction_id():
    b = TraceBuilder()
    b.online(0.0)
    tx = b.start(1.0, meter=0)
    b.answer(6.0, tx, 12)
    b.sample(7.0, 1, 500)
    (x,) = timeline(b).transactions
    assert x.transaction_id == 12 and x.samples == [500]


def test_transaction_ids_are_per_charge_point():
    records: list[dict] = []
    one, two = TraceBuilder("CP1", records), TraceBuilder("CP2", records)
    one.online(0.0)
    two.online(0.0)
    one.start(1.0, meter=0, transaction_id=1)
    two.start(1.0, meter=5000, transaction_id=1)  # another CSMS numbering, same number
    one.sample(2.0, 1, 100)
    two.sample(2.0, 1, 5600)
    one.end(3.0, 1, 150)
    two.end(3.0, 1, 5700, ack=None)
    x1, x2 = Timeline.from_records(records).transactions
    assert (x1.cp, x1.samples, x1.stop_meter_sent, x1.stop_acked) == ("CP1", [100], 150, True)
    assert (x2.cp, x2.samples, x2.stop_meter_sent, x2.stop_acked) == ("CP2", [5600], 5700, False)


def test_meter_values_in_kwh_are_read_exactly():
    """1.001 kWh is 1001 Wh, not 1000 (int(1.001 * 1000) is 1000 in binary floating point)."""
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=1)
    b.sample(2.0, 1, 1001, unit="kWh")
    b.sample(3.0, 1, 2675, unit="kWh")
    assert timeline(b).transactions[0].samples == [1001, 2675]


def test_meter_values_other_measurands_and_bad_values_are_ignored():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=1)
    b.call(
        2.0,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 1,
            "meterValue": [
                {
                    "sampledValue": [
                        {"value": "250"},  # no measurand: the default is the energy register
                        {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "n/a", "measurand": "Energy.Active.Import.Register"},
                        {"measurand": "Energy.Active.Import.Register"},
                    ]
                }
            ],
        },
    )
    assert timeline(b).transactions[0].samples == [250]


def test_malformed_frames_and_records_without_a_charge_point_are_ignored():
    b = TraceBuilder()
    b.records.append({"t": 0.0, "cp": None, "kind": "header", "version": 1})
    b.online(0.0)
    b.write(0.5, "out", frame="not json")
    b.write(0.6, "out", frame=json.dumps({"a": 1}))
    b.write(0.7, "in", frame=json.dumps([3]))
    b.write(0.8, "out")
    b.start(1.0, meter=0, transaction_id=1)
    tl = timeline(b)
    assert len(tl.transactions) == 1 and tl.transactions[0].transaction_id == 1


# --------------------------------------------------------------- the link
def test_connected_and_closed():
    b = TraceBuilder()
    cpt = timeline(b).charge_point("CP1")
    assert cpt.connected_at(10.0) == (False, 0.0)  # never connected: gone from the start
    b.online(1.0)
    b.closed(5.0)
    b.connected(8.0)
    cpt = timeline(b).charge_point("CP1")
    assert cpt.connected_at(0.5) == (False, 0.0)
    assert cpt.connected_at(3.0) == (True, 1.0)
    assert cpt.connected_at(6.0) == (False, 5.0)
    assert cpt.connected_at(8.0) == (True, 8.0)


def test_a_hung_charger_stays_hung_across_a_reconnect_until_it_reboots():
    """heartbeat_stop: the link mutes until a reboot (simulator/link.py `cut(reboot=True)`). When the
    CSMS closes the silent socket, the charger connects again but still sends nothing."""
    b = TraceBuilder()
    b.online(0.0)
    b.fault(10.0, "heartbeat_stop", None, answer_calls=False)
    b.closed(40.0)  # the CSMS gave up on the silent socket
    b.connected(41.0)  # ... and the hung charger connects again: no BootNotification, nothing sent
    cpt = timeline(b).charge_point("CP1")
    assert not cpt.muted_at(9.9)
    assert cpt.muted_at(10.0) and cpt.muted_at(30.0)
    assert cpt.muted_at(45.0), "a reconnect does not bring a hung charger back"

    b.reboot(50.0, fault=True, connector=None, back_at=56.0)
    cpt = timeline(b).charge_point("CP1")
    assert not cpt.muted_at(50.0) and not cpt.muted_at(60.0)


def test_a_reset_or_scripted_reboot_of_a_hung_charger_ends_the_mute_at_its_boot():
    b = TraceBuilder()
    b.online(0.0)
    b.fault(10.0, "heartbeat_stop", None, answer_calls=True)
    b.closed(20.0)  # a Reset: the link closes, no fault record
    b.online(22.0)  # BootNotification goes out: the charger is alive again
    cpt = timeline(b).charge_point("CP1")
    assert cpt.muted_at(21.0)
    assert not cpt.muted_at(22.0)


# ------------------------------------------------------------------ faults
def test_faults_of_merges_charge_point_and_connector_faults_in_time_order():
    b = TraceBuilder()
    b.fault(5.0, "stuck_status", 1, status="Charging")
    b.fault(2.0, "heartbeat_stop", None)
    b.fault(3.0, "silent_connector", 2)
    tl = timeline(b)
    assert [m.name for m in tl.faults_of("CP1", 1)] == ["heartbeat_stop", "stuck_status"]
    assert [m.name for m in tl.faults_of("CP1", 1, until=4.0)] == ["heartbeat_stop"]
    assert [m.name for m in tl.faults_of("CP1", 2)] == ["heartbeat_stop", "silent_connector"]


def test_running_at_finds_the_transaction_of_the_moment():
    b = TraceBuilder()
    b.online(0.0)
    b.start(1.0, meter=0, transaction_id=1)
    b.end(3.0, 1, 100, unplug=True)
    b.start(4.0, meter=100, transaction_id=2)
    tl = timeline(b)
    assert tl.running_at("CP1", 1, 0.5) is None
    assert tl.running_at("CP1", 1, 2.0).transaction_id == 1
    assert tl.running_at("CP1", 1, 3.0) is None  # ended at 3.0
    assert tl.running_at("CP1", 1, 99.0).transaction_id == 2


# ------------------------------------------------- against the simulator's own reading
@settings(max_examples=150, deadline=None)
@given(STEPS, st.lists(st.floats(0.0, 80.0), min_size=1, max_size=10))
def test_timeline_agrees_with_the_simulators_truth_at(steps, moments):
    """Two readings of one trace: the harness's index and the simulator's own `truth_at`."""
    b = random_story(steps)
    tl = timeline(b)
    for t in moments:
        truth = truth_at(b.records, "CP1", 1, t)
        state, since = tl.connector("CP1", 1).state_at(t)
        assert state == truth["state"]
        assert since <= t
        running = tl.running_at("CP1", 1, t)
        assert (running is not None) == truth["transaction_running"]
        assert (running.transaction_id if running else None) == truth["transaction_id"]
        assert (tl.connector("CP1", 1).running_since(t) is not None) == truth["transaction_running"]
