"""The quiet-transaction rule, pure: which open transactions get a TriggerMessage StatusNotification.

Like every maintenance rule it uses a strict `>`: silent for exactly the quiet period is left
alone, one microsecond more is asked. The newest of StartTransaction, MeterValues,
StatusNotification and our own last trigger is what counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.config import Settings
from csms.core.maintenance import (
    Action,
    ActionKind,
    Thresholds,
    TransactionActivityRow,
    select_quiet_transactions,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
QUIET = timedelta(minutes=10)
CP = "CP-1"


def row(*, opened=timedelta(hours=1), meter=None, status=None, tx=7, cp=CP, connector=2) -> TransactionActivityRow:
    """Ages (how long ago) of each kind of message; None: never heard."""
    return TransactionActivityRow(
        tx,
        cp,
        connector,
        NOW - opened,
        meter_at=None if meter is None else NOW - meter,
        status_at=None if status is None else NOW - status,
    )


def select(rows, *, quiet=QUIET, online=frozenset({CP}), probed=None):
    return select_quiet_transactions(rows, now=NOW, quiet=quiet, online=set(online), probed=probed or {})


def test_default_settings_probe_after_ten_minutes_and_zero_or_below_disables():
    assert Thresholds.from_settings(Settings()).quiet_transaction == timedelta(seconds=600)
    assert Thresholds.from_settings(Settings(quiet_transaction_seconds=2)).quiet_transaction == timedelta(seconds=2)
    for off in (0, 0.0, -1):
        assert Thresholds.from_settings(Settings(quiet_transaction_seconds=off)).quiet_transaction is None


@pytest.mark.parametrize("field", ["opened", "meter", "status"])
@pytest.mark.parametrize(
    ("age", "probed"),
    [
        (QUIET - US, False),
        (QUIET, False),  # exactly the quiet period: not yet
        (QUIET + US, True),
        (QUIET * 3, True),
    ],
)
def test_boundary_on_each_kind_of_activity(field, age, probed):
    """The newest message decides, whichever kind it is; the others are far older."""
    ages = {"opened": timedelta(days=1), "meter": timedelta(days=1), "status": timedelta(days=1), field: age}
    actions = select([row(**ages)])
    if probed:
        assert actions == [Action(ActionKind.PROBE_QUIET_TRANSACTION, CP, 2, "7", actions[0].reason)]
    else:
        assert actions == []


def test_newest_activity_wins_over_older_ones():
    assert select([row(opened=timedelta(hours=5), meter=timedelta(hours=4), status=timedelta(minutes=9))]) == []
    assert select([row(opened=timedelta(minutes=1), meter=None, status=timedelta(hours=4))]) == []
    assert len(select([row(opened=timedelta(hours=5), meter=timedelta(minutes=11), status=None)])) == 1


def test_offline_charge_point_is_not_probed():
    """No one to ask: the offline verdict and the other rules deal with it."""
    assert select([row(cp="GONE")]) == []
    assert select([row()], online=set()) == []


def test_disabled_rule_does_nothing():
    assert select([row(opened=timedelta(days=30))], quiet=None) == []


@pytest.mark.parametrize(
    ("probe_age", "again"),
    [
        (QUIET - US, False),
        (QUIET, False),
        (QUIET + US, True),
    ],
)
def test_at_most_once_per_quiet_period(probe_age, again):
    """Our own unanswered trigger counts as activity: the next one only a quiet period later."""
    rows = [row(opened=timedelta(hours=3), meter=timedelta(hours=2))]
    assert len(select(rows)) == 1
    assert len(select(rows, probed={7: NOW - probe_age})) == (1 if again else 0)
    assert len(select(rows, probed={8: NOW})) == 1  # another transaction's probe does not count


def test_reason_says_how_long_what_was_heard_last_and_why():
    [a] = select([row(opened=timedelta(hours=2), meter=timedelta(minutes=12, seconds=5), status=timedelta(hours=1))])
    assert a.reason == (
        "open transaction but no MeterValues, StatusNotification or transaction message for 12m05s "
        "(limit 10m00s; last: MeterValues): asking for the connector's status"
    )
    [a] = select([row(opened=timedelta(hours=2))], probed={7: NOW - timedelta(minutes=11)})
    assert "last: our last TriggerMessage" in a.reason
    [a] = select([row(opened=timedelta(seconds=3))], quiet=timedelta(seconds=2))
    assert "for 3s (limit 2s; last: StartTransaction)" in a.reason


def test_several_transactions_each_judged_on_its_own_connector():
    rows = [
        row(tx=1, connector=1, meter=timedelta(minutes=1)),
        row(tx=2, connector=2, status=timedelta(hours=1)),
        row(tx=3, cp="CP-2", connector=1),
    ]
    actions = select(rows, online={CP, "CP-2"})
    assert [(a.charge_point_id, a.connector_id, a.subject) for a in actions] == [(CP, 2, "2"), ("CP-2", 1, "3")]


def test_naive_database_times_are_utc():
    naive = TransactionActivityRow(1, CP, 1, (NOW - QUIET - US).replace(tzinfo=None))
    assert len(select([naive])) == 1


ages = st.integers(min_value=0, max_value=10**11).map(lambda n: timedelta(microseconds=n))


@given(
    opened=ages,
    meter=st.none() | ages,
    status=st.none() | ages,
    probe=st.none() | ages,
    quiet=st.integers(min_value=1, max_value=10**10).map(lambda n: timedelta(microseconds=n)),
)
def test_property_probed_exactly_when_every_signal_is_older_than_the_quiet_period(opened, meter, status, probe, quiet):
    probed = {} if probe is None else {7: NOW - probe}
    actions = select([row(opened=opened, meter=meter, status=status)], quiet=quiet, probed=probed)
    youngest = min(a for a in (opened, meter, status, probe) if a is not None)
    assert (len(actions) == 1) == (youngest > quiet)
