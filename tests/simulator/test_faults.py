"""Fault options and fault decisions: parsing, scope, probability, schedules, replay forcing."""

from __future__ import annotations

import pytest

from simulator.errors import ConfigError
from simulator.faults import (
    FAULTS,
    FaultBook,
    FaultSpec,
    Trigger,
    fault_from_mapping,
    parse_fault_option,
)
from simulator.rng import Rng

ALL_FAULTS = {
    "drop_stop_transaction",
    "reject_remote_start",
    "accept_remote_start_never_start",
    "silent_connector",
    "disconnect_mid_session",
    "reboot",
    "unlock_failed",
    "unlock_not_supported",
    "unlock_no_answer",
    "slow_responses",
    "stuck_status",
    "heartbeat_stop",
    "buffered_meter_values",
    "meter_replaced",  # issue 15
}
FIELD_201 = {"replay_after_end", "seq_no_gaps", "no_evse", "slow_replay", "reuse_transaction_ids"}  # 2.0.1's own


def test_the_table_has_every_fault_the_issue_names_with_wire_and_seed_text():
    assert set(FAULTS) == ALL_FAULTS | FIELD_201
    for kind in FAULTS.values():
        # each names what it reproduces: a seed passage, or the field's bug thread (issue 26 names them)
        assert kind.wire and ("seed 00" in kind.reproduces or kind.name in FIELD_201) and kind.reproduces


def test_parse_probability_options_and_scope():
    spec = parse_fault_option("drop_stop_transaction=0.1,available=false,cp=CP0001+CP0002,connectors=2")
    assert spec == FaultSpec(
        "drop_stop_transaction", 0.1, (), frozenset({"CP0001", "CP0002"}), frozenset({2}), {"available": False}
    )
    assert spec.param("available") is False
    assert parse_fault_option("silent_connector=0.05").param("ignore_trigger") is True  # the default
    assert parse_fault_option("slow_responses=1,max=40").param("max") == 40.0
    assert parse_fault_option("reboot=1,after=2:3").param("after") == (2.0, 3.0)
    assert parse_fault_option("stuck_status=1,status=Charging").param("status") == "Charging"


def test_parse_schedule():
    spec = parse_fault_option("reboot=@90+30")
    assert spec.at == (30.0, 90.0) and spec.probability == 0.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope=0.1", "unknown fault 'nope'"),
        ("reboot", "expected NAME=PROBABILITY"),
        ("reboot=often", "not a probability"),
        ("reboot=1.5", "not between 0 and 1"),
        ("reboot=@x", "schedule must look like"),
        ("reboot=1,colour=red", "has no option 'colour'"),
        ("drop_stop_transaction=1,available=maybe", "expected true or false"),
        ("stuck_status=1,status=Available", "expected Finishing or Charging"),
        ("reboot=1,after=9", "LO:HI seconds"),
        ("reboot=1,boot_delay", "must be key=value"),
    ],
)
def test_bad_fault_options_say_how_to_fix_them(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_fault_option(text)


def test_mapping_round_trip():
    spec = parse_fault_option("disconnect_mid_session=0.3,back_after=12,replay=false,after=1:2,connectors=1")
    assert fault_from_mapping(spec.to_mapping()) == spec
    assert fault_from_mapping({"name": "reboot"}).probability == 1.0  # neither probability nor at: always


def _decisions(seed: int, name: str = "drop_stop_transaction", p: float = 0.3, n: int = 200) -> list[bool]:
    book = FaultBook("CP0001", [1, 2], [FaultSpec(name, p)], Rng(seed).child("cp", "CP0001"))
    return [book.decide(name, 1 + i % 2, float(i)) is not None for i in range(n)]


def test_same_seed_same_decisions_other_seed_other_decisions():
    assert _decisions(7) == _decisions(7)
    assert _decisions(7) != _decisions(8)
    assert 30 <= sum(_decisions(7)) <= 90  # p = 0.3 of 200


def test_decision_k_does_not_depend_on_other_connectors_or_faults():
    """Keyed draws: connector 2's k-th decision is the same whether connector 1 was asked or not."""
    specs = [FaultSpec("drop_stop_transaction", 0.5), FaultSpec("stuck_status", 0.5)]
    rng = Rng(3).child("cp", "CP0001")
    alone = FaultBook("CP0001", [1, 2], specs, rng)
    busy = FaultBook("CP0001", [1, 2], specs, rng)
    a = [alone.decide("drop_stop_transaction", 2, 0.0) is not None for _ in range(50)]
    b = []
    for _ in range(50):
        busy.decide("drop_stop_transaction", 1, 0.0)
        busy.decide("stuck_status", 2, 0.0)
        b.append(busy.decide("drop_stop_transaction", 2, 0.0) is not None)
    assert a == b


def test_scope_by_charge_point_and_connector():
    spec = FaultSpec("unlock_failed", 1.0, connectors=frozenset({2}), charge_points=frozenset({"CP0002"}))
    assert FaultBook("CP0001", [1, 2], [spec], Rng(1)).decide("unlock_failed", 2, 0.0) is None
    book = FaultBook("CP0002", [1, 2], [spec], Rng(1))
    assert book.decide("unlock_failed", 1, 0.0) is None
    fired = book.decide("unlock_failed", 2, 0.0)
    assert fired is not None and fired.connector == 2 and fired.index == 0
    assert book.decide("unlock_failed", 2, 0.0).index == 1


def test_schedule_fires_at_the_first_opportunity_at_or_after_each_time():
    book = FaultBook("CP0001", [1], [FaultSpec("reject_remote_start", at=(10.0, 20.0))], Rng(1))
    fired = [t for t in (1.0, 9.9, 10.0, 11.0, 25.0, 26.0) if book.decide("reject_remote_start", 1, t)]
    assert fired == [10.0, 25.0]


def test_timed_faults_lifetime_and_schedules():
    specs = [
        FaultSpec("silent_connector", 1.0, connectors=frozenset({2})),
        FaultSpec("heartbeat_stop", 1.0, params={"within": 10.0}),
        FaultSpec("reboot", at=(5.0, 50.0)),
        FaultSpec("drop_stop_transaction", 1.0),  # not timed
    ]
    timed = FaultBook("CP0001", [1, 2], specs, Rng(1)).timed()
    names = [(f.name, f.connector) for f in timed]
    assert sorted(names) == sorted(
        [("silent_connector", 2), ("heartbeat_stop", None), ("reboot", None), ("reboot", None)]
    )
    assert [f.at for f in timed if f.name == "reboot"] == [5.0, 50.0]
    hb = next(f for f in timed if f.name == "heartbeat_stop")
    assert 0.0 <= hb.at <= 10.0
    assert [f.at for f in timed] == sorted(f.at for f in timed)


def test_transaction_start_faults_draw_a_moment_within_after():
    spec = FaultSpec("disconnect_mid_session", 1.0, params={"after": (2.0, 4.0)})
    assert FAULTS["disconnect_mid_session"].trigger is Trigger.TX_START
    book = FaultBook("CP0001", [1], [spec], Rng(5))
    moments = [book.decide("disconnect_mid_session", 1, 0.0).at for _ in range(20)]
    assert all(2.0 <= m <= 4.0 for m in moments) and len(set(moments)) > 1


def test_forced_replay_fires_exactly_the_recorded_opportunities():
    spec = FaultSpec("drop_stop_transaction", 0.0)  # would never fire by itself
    book = FaultBook("CP0001", [1], [spec], Rng(1), forced=frozenset({("drop_stop_transaction", 1, 2)}))
    assert [book.decide("drop_stop_transaction", 1, 0.0) is not None for _ in range(4)] == [False, False, True, False]
