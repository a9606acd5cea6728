"""The stale-silent-status rule, pure: which connectors that never report by themselves are asked again.

A connector that sends no StatusNotification of its own keeps whatever it last answered our
TriggerMessage with: Preparing or Finishing (a car was there then) stays live after the car has
left. With no open transaction the CSMS asks again, a grace after the status (or after the
connector's last StopTransaction, if newer), then after twice the grace, four times, ... at most
SILENT_BACKOFF_CAP graces while the answers keep the status; a new status, or a transaction closed
since our last ask, starts again from one grace. Like every maintenance rule it uses a strict `>`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.config import Settings
from csms.core.maintenance import (
    SILENT_BACKOFF_CAP,
    TRANSACTION_STATUSES,
    Action,
    ActionKind,
    LiveConnectorRow,
    SilentAsk,
    Thresholds,
    next_silent_ask,
    select_stale_silent_statuses,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
GRACE = timedelta(seconds=30)
CP = "CP-1"
KEY = (CP, 2)
LONG_AGO = timedelta(days=1)


def live(*, status="Preparing", age=LONG_AGO, cp=CP, connector=2) -> LiveConnectorRow:
    return LiveConnectorRow(cp, connector, status, NOW - age)


def select(
    rows, *, grace=GRACE, online=frozenset({CP}), silent=frozenset({KEY}), open_tx=frozenset(), closed=None, asked=None
):
    """`closed`: age of connector KEY's last StopTransaction; `asked`: (age, status, asks) of our last ask of
    it; None: never."""
    return select_stale_silent_statuses(
        rows,
        now=NOW,
        grace=grace,
        online=set(online),
        silent=set(silent),
        open_tx_connectors=set(open_tx),
        closed_at={} if closed is None else {KEY: NOW - closed},
        asked={} if asked is None else {KEY: SilentAsk(NOW - asked[0], asked[1], asked[2])},
    )


def test_shares_the_status_grace_and_zero_or_below_disables():
    assert Thresholds.from_settings(Settings(status_grace_seconds=1)).status_grace == timedelta(seconds=1)
    for off in (0, 0.0, -1):
        assert Thresholds.from_settings(Settings(status_grace_seconds=off)).status_grace is None
    assert select([live()], grace=None) == []


@pytest.mark.parametrize("status", ["Preparing", "Finishing", "Reserved", "Unavailable", "Faulted", "Occupied"])
def test_every_status_but_available_on_a_silent_connector_is_asked(status):
    [a] = select([live(status=status)])
    assert a == Action(ActionKind.PROBE_STALE_SILENT_STATUS, CP, 2, status, a.reason)


@pytest.mark.parametrize("status", ["Available", *sorted(TRANSACTION_STATUSES)])
def test_available_and_the_contradicted_rules_statuses_are_left_alone(status):
    """Charging, SuspendedEV and SuspendedEVSE without a transaction are the contradicted-status rule's."""
    assert select([live(status=status)]) == []


def test_a_connector_that_reports_by_itself_is_never_asked():
    assert select([live()], silent=set()) == []
    assert select([live()], silent={(CP, 1), ("CP-2", 2)}) == []  # another connector's silence does not count


def test_open_transaction_offline_charge_point_and_connector_zero_are_not_asked():
    assert select([live()], open_tx={KEY}) == []
    assert len(select([live()], open_tx={(CP, 1)})) == 1
    assert select([live()], online=set()) == []
    assert select([live(connector=0)], silent={(CP, 0)}) == []


@pytest.mark.parametrize(("age", "asked"), [(GRACE - US, False), (GRACE, False), (GRACE + US, True)])
def test_first_ask_a_grace_after_the_status(age, asked):
    assert len(select([live(age=age)])) == (1 if asked else 0)


@pytest.mark.parametrize(("unchanged", "factor"), [(1, 2), (2, 4), (3, 8), (4, 16), (5, 16), (40, 16), (10**6, 16)])
def test_the_wait_doubles_after_each_unchanged_answer_up_to_the_cap(unchanged, factor):
    """The answer came at once and kept the status: the wait runs from it, `factor` graces long."""
    assert SILENT_BACKOFF_CAP == 16
    wait = GRACE * factor
    for age, asked in ((wait - US, False), (wait, False), (wait + US, True)):
        actions = select([live(age=age)], asked=(age + US, "Preparing", unchanged))
        assert len(actions) == (1 if asked else 0), (unchanged, age)


def test_the_wait_runs_from_our_ask_when_no_answer_came():
    """A charger that accepts the trigger and sends nothing: the status is older than our ask."""
    assert select([live(age=LONG_AGO)], asked=(2 * GRACE, "Preparing", 1)) == []
    assert len(select([live(age=LONG_AGO)], asked=(2 * GRACE + US, "Preparing", 1))) == 1


@pytest.mark.parametrize(("closed", "asked"), [(GRACE - US, False), (GRACE, False), (GRACE + US, True)])
def test_the_wait_runs_from_the_last_stop_transaction_when_it_is_newer(closed, asked):
    """A Preparing learned before a transaction that has since closed (a charger speaks right after its
    StopTransaction, if at all): a grace after that close."""
    assert len(select([live(age=timedelta(minutes=20))], closed=closed)) == (1 if asked else 0)
    assert len(select([live(age=GRACE + US)], closed=timedelta(days=2))) == 1  # an older close changes nothing


def test_a_transaction_closed_since_our_last_ask_resets_the_back_off():
    """Asked about Preparing four times (16 graces to wait), then a car charged and left: one grace after
    its StopTransaction, as for a status never asked about."""
    asked = (timedelta(minutes=30), "Preparing", 4)
    assert len(select([live(age=timedelta(hours=1))], closed=GRACE + US, asked=asked)) == 1
    assert select([live(age=timedelta(hours=1))], closed=GRACE, asked=asked) == []
    # A close before our last ask does not: the wait is still 16 graces from the ask.
    asked_after_close = (GRACE * 15, "Preparing", 4)
    assert select([live(age=timedelta(hours=1))], closed=GRACE * 20, asked=asked_after_close) == []
    assert len(select([live(age=timedelta(hours=1))], closed=GRACE * 20, asked=(GRACE * 16 + US, "Preparing", 4))) == 1


def test_a_new_status_starts_again_from_one_grace():
    """We asked about Preparing four times; the connector now says Finishing: one grace after that."""
    asked = (GRACE * 5, "Preparing", 4)
    assert select([live(status="Finishing", age=GRACE)], asked=asked) == []
    assert len(select([live(status="Finishing", age=GRACE + US)], asked=asked)) == 1
    assert select([live(status="Preparing", age=GRACE + US)], asked=(GRACE + 2 * US, "Preparing", 4)) == []


def test_next_silent_ask_counts_asks_in_a_row_of_one_status():
    first = next_silent_ask(None, "Preparing", NOW)
    assert first == SilentAsk(NOW, "Preparing", 1)
    second = next_silent_ask(first, "Preparing", NOW + GRACE)
    assert second == SilentAsk(NOW + GRACE, "Preparing", 2)
    assert next_silent_ask(second, "Finishing", NOW + 3 * GRACE) == SilentAsk(NOW + 3 * GRACE, "Finishing", 1)


def test_rounds_against_a_car_that_stays_ask_at_1_2_4_8_16_16_graces():
    """The runner's loop in miniature: a round every second, each ask answered at once with the same
    status (its time refreshed), the ask recorded with next_silent_ask."""
    grace, tick = timedelta(seconds=2), timedelta(seconds=1)
    status_at, record, asks = NOW, None, []
    t = NOW
    while len(asks) < 7:
        t += tick
        row = LiveConnectorRow(CP, 2, "Preparing", status_at)
        if select_stale_silent_statuses(
            [row],
            now=t,
            grace=grace,
            online={CP},
            silent={KEY},
            open_tx_connectors=set(),
            closed_at={},
            asked={} if record is None else {KEY: record},
        ):
            record = next_silent_ask(record, "Preparing", t)
            status_at = t  # the answer: Preparing again
            asks.append(t)
    gaps = [(b - a) / grace for a, b in zip([NOW, *asks], asks, strict=False)]
    # Each gap is the wait rounded up to the next round (strict >): 1 grace + 1 s, 2 graces + 1 s, ...
    assert gaps == [1.5, 2.5, 4.5, 8.5, 16.5, 16.5, 16.5]


def test_reason_names_the_status_the_wait_and_why():
    [a] = select([live(status="Finishing", age=timedelta(minutes=3, seconds=4))])
    assert a.reason == (
        "connector sends no status of its own (each one answered our TriggerMessage); live Finishing "
        "with no open transaction for 3m04s (wait 30s = grace 30s x 1 after 0 unchanged answer(s); "
        "since: StatusNotification): asking for the connector's status"
    )
    [a] = select([live(age=LONG_AGO)], asked=(timedelta(minutes=5), "Preparing", 3))
    assert (
        "for 5m00s (wait 4m00s = grace 30s x 8 after 3 unchanged answer(s); since: our last TriggerMessage)" in a.reason
    )


def test_several_connectors_each_judged_on_its_own():
    rows = [
        live(connector=1),
        live(connector=2, status="Available"),
        live(connector=3, age=timedelta(seconds=1)),
        live(connector=4, status="Finishing"),
        live(cp="CP-2", connector=1, status="Faulted"),
        live(cp="CP-2", connector=2),
    ]
    actions = select_stale_silent_statuses(
        rows,
        now=NOW,
        grace=GRACE,
        online={CP, "CP-2"},
        silent={(CP, 1), (CP, 2), (CP, 3), ("CP-2", 1), ("CP-2", 2)},
        open_tx_connectors={("CP-2", 2)},
        closed_at={(CP, 2): NOW - GRACE},
        asked={(CP, 1): SilentAsk(NOW - GRACE, "Preparing", 1)},
    )
    # CP-1/1 was asked a grace ago (wait now 2 graces); CP-1/2 is Available (its close a grace ago would have
    # held it anyway); CP-1/4 reports by itself; CP-2/2 has a transaction.
    assert [(a.charge_point_id, a.connector_id, a.subject) for a in actions] == [("CP-2", 1, "Faulted")]


def test_naive_times_are_utc():
    naive = LiveConnectorRow(CP, 2, "Preparing", (NOW - GRACE - US).replace(tzinfo=None))
    assert len(select([naive])) == 1
    asked = {KEY: SilentAsk((NOW - GRACE).replace(tzinfo=None), "Preparing", 1)}
    assert (
        select_stale_silent_statuses(
            [live()],
            now=NOW,
            grace=GRACE,
            online={CP},
            silent={KEY},
            open_tx_connectors=set(),
            closed_at={},
            asked=asked,
        )
        == []
    )
    closed = {KEY: (NOW - GRACE).replace(tzinfo=None)}
    assert (
        select_stale_silent_statuses(
            [live()],
            now=NOW,
            grace=GRACE,
            online={CP},
            silent={KEY},
            open_tx_connectors=set(),
            closed_at=closed,
            asked={},
        )
        == []
    )


ages = st.integers(min_value=0, max_value=10**11).map(lambda n: timedelta(microseconds=n))


@given(
    status_age=ages,
    closed=st.none() | ages,
    ask=st.none()
    | st.tuples(ages, st.sampled_from(["Preparing", "Finishing"]), st.integers(min_value=1, max_value=50)),
    silent=st.booleans(),
    open_tx=st.booleans(),
    online=st.booleans(),
    status=st.sampled_from(["Preparing", "Finishing", "Faulted", "Available", "Charging"]),
    grace=st.integers(min_value=1, max_value=10**10).map(lambda n: timedelta(microseconds=n)),
)
def test_property_asked_exactly_when_stale_and_older_than_the_backed_off_wait(
    status_age, closed, ask, silent, open_tx, online, status, grace
):
    actions = select(
        [live(status=status, age=status_age)],
        grace=grace,
        closed=closed,
        asked=ask,
        silent={KEY} if silent else set(),
        open_tx={KEY} if open_tx else set(),
        online={CP} if online else set(),
    )
    unchanged = ask[2] if ask is not None and ask[1] == status and (closed is None or closed >= ask[0]) else 0
    youngest = min(a for a in (status_age, closed, ask[0] if unchanged else None) if a is not None)
    eligible = status not in {"Available", "Charging"} and silent and not open_tx and online
    assert (len(actions) == 1) == (eligible and youngest > grace * min(2**unchanged, 16))
