"""The oracle's dropped_charger rule: the CSMS must not close the connection of a charge point that answers."""

from __future__ import annotations

from scenarios.oracle import Rules, judge
from scenarios.timeline import Timeline


def _story(*extra: dict, by: str | None = "csms") -> Timeline:
    records = [
        {"t": 0.1, "cp": "CP1", "kind": "link", "event": "connected"},
        *extra,
        {"t": 6.0, "cp": "CP1", "kind": "link", "event": "closed", **({} if by is None else {"by": by}), "code": 1001},
        {"t": 7.0, "cp": "CP1", "kind": "link", "event": "connected"},
    ]
    return Timeline.from_records(records, connectors={"CP1": 2}, end=10.0)


def _kinds(tl: Timeline, **rules) -> list[tuple[str, str, int]]:
    j = judge([], tl, None, Rules(recovery_window=2.0, **rules))
    return [(v.kind, v.cp, v.connector) for v in j.violations]


def test_a_charger_the_csms_closed_while_it_answered_is_a_violation_on_each_connector():
    tl = _story(
        {
            "t": 1.0,
            "cp": "CP1",
            "kind": "fault",
            "fault": "heartbeat_stop",
            "connector": None,
            "params": {"answer_calls": True},
        }
    )
    assert _kinds(tl) == [("dropped_charger", "CP1", 1), ("dropped_charger", "CP1", 2)]
    v = judge([], tl, None, Rules(recovery_window=2.0)).violations[0]
    assert v.t == 6.0 and "close code 1001" in v.message and [f.name for f in v.faults] == ["heartbeat_stop"]


def test_a_hung_charger_may_be_dropped():
    tl = _story({"t": 1.0, "cp": "CP1", "kind": "fault", "fault": "heartbeat_stop", "connector": None, "params": {}})
    assert _kinds(tl) == []


def test_cuts_own_closes_and_old_traces_are_not_the_csms_doing():
    assert _kinds(_story(by="fault")) == []
    assert _kinds(_story(by="charge point")) == []
    assert _kinds(_story(by=None)) == []  # a trace from before `by` was recorded


def test_not_judged_without_the_busy_check():
    assert _kinds(_story(), check_busy=False) == []
