"""The contradicted-status rule, pure: which connectors get a TriggerMessage StatusNotification.

A live Charging, SuspendedEV or SuspendedEVSE says a transaction is ongoing; with none open
the CSMS asks the connector again. Like every maintenance rule it uses a strict `>`: exactly
the grace is left alone, one microsecond more is asked. The grace runs from the newest of the
status, the connector's last transaction close and our own last ask.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.config import Settings
from csms.core.maintenance import (
    TRANSACTION_STATUSES,
    Action,
    ActionKind,
    LiveConnectorRow,
    Thresholds,
    select_contradicted_statuses,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
GRACE = timedelta(seconds=30)
CP = "CP-1"
KEY = (CP, 2)
LONG_AGO = timedelta(days=1)


def live(*, status="Charging", age=LONG_AGO, cp=CP, connector=2) -> LiveConnectorRow:
    return LiveConnectorRow(cp, connector, status, NOW - age)


def select(rows, *, grace=GRACE, online=frozenset({CP}), open_tx=frozenset(), closed=None, asked=None):
    """`closed` and `asked`: ages (how long ago) for connector KEY; None: never."""
    return select_contradicted_statuses(
        rows,
        now=NOW,
        grace=grace,
        online=set(online),
        open_tx_connectors=set(open_tx),
        closed_at={} if closed is None else {KEY: NOW - closed},
        asked={} if asked is None else {KEY: NOW - asked},
    )


def test_shares_the_status_grace_and_zero_or_below_disables():
    assert Thresholds.from_settings(Settings()).status_grace == timedelta(seconds=30)
    assert Thresholds.from_settings(Settings(status_grace_seconds=1)).status_grace == timedelta(seconds=1)
    for off in (0, 0.0, -1):
        assert Thresholds.from_settings(Settings(status_grace_seconds=off)).status_grace is None
    assert select([live()], grace=None) == []


@pytest.mark.parametrize("status", sorted(TRANSACTION_STATUSES))
def test_each_transaction_status_without_a_transaction_is_asked(status):
    assert select([live(status=status)]) == [
        Action(ActionKind.PROBE_CONTRADICTED_STATUS, CP, 2, status, select([live(status=status)])[0].reason)
    ]


@pytest.mark.parametrize(
    "status", ["Available", "Preparing", "Finishing", "Reserved", "Unavailable", "Faulted", "Occupied", "charging"]
)
def test_statuses_that_need_no_transaction_are_left_alone(status):
    assert select([live(status=status)]) == []


@pytest.mark.parametrize("status", ["Preparing", "Finishing"])
def test_a_preparing_or_finishing_said_before_the_last_transaction_closed_is_asked(status):
    """A silent connector answered a trigger with Preparing, a car then charged and left, and it said
    nothing since: the status predates that transaction (issue 15's chaos runs found it stuck busy)."""
    rows = [live(status=status, age=timedelta(minutes=5))]
    (a,) = select(rows, closed=timedelta(minutes=1))
    assert (a.kind, a.subject) == (ActionKind.PROBE_CONTRADICTED_STATUS, status)
    assert "said before the connector's last transaction closed" in a.reason
    assert select(rows, closed=GRACE) == []  # the grace runs from the close
    assert select(rows, closed=timedelta(minutes=6)) == []  # said after the close: it is the present
    assert select(rows, closed=timedelta(minutes=1), asked=timedelta(seconds=10)) == []
    assert select([live(status="Available", age=timedelta(minutes=5))], closed=timedelta(minutes=1)) == []


def test_open_transaction_on_the_connector_means_no_contradiction():
    assert select([live()], open_tx={KEY}) == []
    assert len(select([live()], open_tx={(CP, 1), ("CP-2", 2)})) == 1  # another connector's does not count


def test_offline_charge_point_and_connector_zero_are_not_asked():
    assert select([live(cp="GONE")]) == []
    assert select([live()], online=set()) == []
    assert select([live(connector=0)]) == []


@pytest.mark.parametrize("field", ["status", "closed", "asked"])
@pytest.mark.parametrize(
    ("age", "asked"),
    [
        (GRACE - US, False),
        (GRACE, False),  # exactly the grace: not yet
        (GRACE + US, True),
        (GRACE * 3, True),
    ],
)
def test_boundary_on_each_moment(field, age, asked):
    """The newest of status, close and last ask decides; the others are far older."""
    ages = {"status": LONG_AGO, "closed": LONG_AGO, "asked": LONG_AGO, field: age}
    actions = select([live(age=ages["status"])], closed=ages["closed"], asked=ages["asked"])
    assert len(actions) == (1 if asked else 0)


def test_grace_runs_from_the_close_when_the_status_is_older():
    """The trigger answered Charging during the transaction; after its StopTransaction the charger gets a
    grace to send its own status before it is asked."""
    assert select([live(age=timedelta(minutes=20))], closed=timedelta(seconds=5)) == []
    assert len(select([live(age=timedelta(minutes=20))], closed=timedelta(seconds=31))) == 1


def test_asked_once_per_status_then_at_most_once_per_grace():
    rows = [live(age=timedelta(minutes=20))]
    assert len(select(rows)) == 1
    assert select(rows, asked=timedelta(seconds=1)) == []  # asked, no answer yet (or an ignored trigger)
    assert len(select(rows, asked=GRACE + US)) == 1  # a grace later: asked again
    # The answer is a new status (here Charging again): its own grace first.
    assert select([live(age=timedelta(seconds=2))], asked=timedelta(seconds=3)) == []
    other = select_contradicted_statuses(
        rows,
        now=NOW,
        grace=GRACE,
        online={CP},
        open_tx_connectors=set(),
        closed_at={},
        asked={(CP, 1): NOW, ("CP-2", 2): NOW},
    )
    assert len(other) == 1  # another connector's ask does not count


def test_reason_says_what_contradicts_what_for_how_long_and_since_when():
    [a] = select([live(status="SuspendedEV", age=timedelta(minutes=3, seconds=4))])
    assert a.reason == (
        "live status SuspendedEV says a transaction is ongoing but none is open, for 3m04s "
        "(grace 30s; since: StatusNotification): asking for the connector's status"
    )
    [a] = select([live()], closed=timedelta(seconds=45))
    assert "for 45s (grace 30s; since: transaction closed)" in a.reason
    [a] = select([live()], closed=timedelta(hours=1), asked=timedelta(minutes=2))
    assert "for 2m00s (grace 30s; since: our last TriggerMessage)" in a.reason


def test_several_connectors_each_judged_on_its_own():
    rows = [
        live(connector=1),
        live(connector=2, status="Available"),
        live(connector=3, age=timedelta(seconds=1)),
        live(cp="CP-2", connector=1, status="SuspendedEVSE"),
        live(cp="CP-2", connector=2),
    ]
    actions = select_contradicted_statuses(
        rows, now=NOW, grace=GRACE, online={CP, "CP-2"}, open_tx_connectors={("CP-2", 2)}, closed_at={}, asked={}
    )
    assert [(a.charge_point_id, a.connector_id, a.subject) for a in actions] == [
        (CP, 1, "Charging"),
        ("CP-2", 1, "SuspendedEVSE"),
    ]


def test_naive_times_are_utc():
    naive = LiveConnectorRow(CP, 2, "Charging", (NOW - GRACE - US).replace(tzinfo=None))
    assert len(select([naive])) == 1
    naive_close = select_contradicted_statuses(
        [live()],
        now=NOW,
        grace=GRACE,
        online={CP},
        open_tx_connectors=set(),
        closed_at={KEY: (NOW - GRACE).replace(tzinfo=None)},
        asked={},
    )
    assert naive_close == []


ages = st.integers(min_value=0, max_value=10**11).map(lambda n: timedelta(microseconds=n))


@given(
    status_age=ages,
    closed=st.none() | ages,
    asked=st.none() | ages,
    open_tx=st.booleans(),
    online=st.booleans(),
    status=st.sampled_from(["Charging", "SuspendedEV", "SuspendedEVSE", "Available", "Finishing", "Faulted"]),
    grace=st.integers(min_value=1, max_value=10**10).map(lambda n: timedelta(microseconds=n)),
)
def test_property_asked_exactly_when_contradicted_and_everything_is_older_than_the_grace(
    status_age, closed, asked, open_tx, online, status, grace
):
    actions = select(
        [live(status=status, age=status_age)],
        grace=grace,
        closed=closed,
        asked=asked,
        open_tx={KEY} if open_tx else set(),
        online={CP} if online else set(),
    )
    youngest = min(a for a in (status_age, closed, asked) if a is not None)
    outlived = status == "Finishing" and closed is not None and closed < status_age
    contradicted = (status in TRANSACTION_STATUSES or outlived) and not open_tx and online
    assert (len(actions) == 1) == (contradicted and youngest > grace)
