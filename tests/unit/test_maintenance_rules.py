"""Issue 5's pure maintenance rules with an injected clock: every boundary, guard and switch.

Every rule uses a strict `>`: an age exactly equal to its threshold is left alone, one
microsecond more is acted on. A threshold of None (0 or below in the settings) disables a rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.config import Settings
from csms.core.maintenance import (
    Action,
    ActionKind,
    LiveChargePointRow,
    LiveConnectorRow,
    OpenTransactionRow,
    ReservationRow,
    SessionActivityRow,
    StatusRow,
    Thresholds,
    select_idle_sessions,
    select_offline_charge_points,
    select_orphaned_transactions,
    select_releasable_statuses,
    select_silent_connectors,
    select_stale_reservations,
    threshold,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
CP = "CP-1"

STALE_STATUSES = ("PendingPayment", "Authorized", "StartRequested")
NEVER_STALE_STATUSES = ("Charging", "Pending", "Cancelled", "Completed", "Expired", "Failed")
NON_AVAILABLE = (
    "Faulted",
    "Unavailable",
    "Occupied",
    "Charging",
    "Preparing",
    "Finishing",
    "SuspendedEV",
    "SuspendedEVSE",
    "Reserved",
)

# ages around a threshold, in microseconds relative to it (hypothesis strategies)
offsets = st.integers(min_value=-(10**10), max_value=10**10).map(lambda n: timedelta(microseconds=n))
positive_thresholds = st.integers(min_value=1, max_value=10**11).map(lambda n: timedelta(microseconds=n))


def ago(delta: timedelta) -> datetime:
    return NOW - delta


# ------------------------------------------------------------------ threshold / Thresholds
@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (60, "minutes", timedelta(minutes=60)),
        (240, "minutes", timedelta(hours=4)),
        (1.5, "minutes", timedelta(seconds=90)),
        (30, "seconds", timedelta(seconds=30)),
        (0.5, "hours", timedelta(minutes=30)),
        (0.001, "seconds", timedelta(milliseconds=1)),
        (0, "minutes", None),
        (0.0, "hours", None),
        (-5, "minutes", None),
        (-0.1, "seconds", None),
    ],
)
def test_threshold_zero_or_below_disables(value, unit, expected):
    assert threshold(value, unit) == expected


@given(st.floats(max_value=0, allow_nan=False, allow_infinity=False), st.sampled_from(["seconds", "minutes", "hours"]))
def test_threshold_never_enables_a_non_positive_value(value, unit):
    assert threshold(value, unit) is None


def test_thresholds_from_default_settings_match_the_issue_defaults():
    t = Thresholds.from_settings(Settings())
    assert t == Thresholds()
    assert t.reservation_timeout == timedelta(minutes=60)
    assert t.status_release == timedelta(minutes=240)
    assert t.heartbeat_timeout_factor == 2.5
    assert t.status_grace == timedelta(seconds=30)
    assert t.orphan_grace == timedelta(seconds=120)
    assert t.session_idle is None  # default 0 = off


def test_thresholds_from_settings_uses_each_unit():
    s = Settings(
        reservation_timeout_minutes=15,
        status_release_minutes=90.5,
        heartbeat_timeout_factor=3.0,
        status_grace_seconds=10,
        orphan_grace_seconds=45,
        session_idle_hours=2,
    )
    assert Thresholds.from_settings(s) == Thresholds(
        reservation_timeout=timedelta(minutes=15),
        status_release=timedelta(minutes=90, seconds=30),
        heartbeat_timeout_factor=3.0,
        status_grace=timedelta(seconds=10),
        orphan_grace=timedelta(seconds=45),
        session_idle=timedelta(hours=2),
    )


@pytest.mark.parametrize("off", [0, 0.0, -5, -0.5])
def test_thresholds_from_settings_disables_zero_or_negative(off):
    s = Settings(
        reservation_timeout_minutes=off,
        status_release_minutes=off,
        status_grace_seconds=off,
        orphan_grace_seconds=off,
        session_idle_hours=off,
        heartbeat_timeout_factor=off,
    )
    t = Thresholds.from_settings(s)
    assert t.reservation_timeout is None
    assert t.status_release is None
    assert t.status_grace is None
    assert t.orphan_grace is None
    assert t.session_idle is None
    assert t.heartbeat_timeout_factor == off  # passed through; <= 0 disables silence detection


# ------------------------------------------------------------------ stale reservations
def reservation(status="Authorized", age=timedelta(hours=2), rid="R1", connector=1) -> ReservationRow:
    return ReservationRow(
        reservation_id=rid, charge_point_id=CP, connector_id=connector, status=status, updated_at=ago(age)
    )


@pytest.mark.parametrize("status", STALE_STATUSES)
@pytest.mark.parametrize(
    ("age", "cancelled"),
    [
        (timedelta(minutes=60) - US, False),
        (timedelta(minutes=60), False),  # exactly the timeout: not stale yet
        (timedelta(minutes=60) + US, True),
        (timedelta(minutes=61), True),
    ],
)
def test_stale_reservation_boundary(status, age, cancelled):
    r = reservation(status=status, age=age)
    actions = select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=60))
    if cancelled:
        assert actions == [Action(ActionKind.CANCEL_RESERVATION, CP, 1, "R1", actions[0].reason)]
    else:
        assert actions == []


@pytest.mark.parametrize("status", NEVER_STALE_STATUSES)
def test_stale_reservation_timeout_never_touches_other_statuses(status):
    r = reservation(status=status, age=timedelta(days=30))
    assert select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=60)) == []


def test_stale_reservation_disabled_timeout_does_nothing():
    rows = [reservation(status=s, age=timedelta(days=365)) for s in STALE_STATUSES]
    assert select_stale_reservations(rows, now=NOW, timeout=None) == []
    assert select_stale_reservations(rows, now=NOW, timeout=threshold(0, "minutes")) == []
    assert select_stale_reservations(rows, now=NOW, timeout=threshold(-5, "minutes")) == []


def test_stale_reservation_reason_is_readable_with_durations():
    r = reservation(status="Authorized", age=timedelta(minutes=90))
    [a] = select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=60))
    assert a.reason == "Authorized for 1h30m (timeout 1h00m)"


def test_stale_reservation_selects_only_the_stale_ones_in_order():
    rows = [
        reservation(rid="old-auth", status="Authorized", age=timedelta(hours=3)),
        reservation(rid="young", status="PendingPayment", age=timedelta(minutes=5)),
        reservation(rid="charging", status="Charging", age=timedelta(hours=9)),
        reservation(rid="old-start", status="StartRequested", age=timedelta(hours=2), connector=2),
    ]
    actions = select_stale_reservations(rows, now=NOW, timeout=timedelta(minutes=60))
    assert [(a.subject, a.connector_id) for a in actions] == [("old-auth", 1), ("old-start", 2)]
    assert all(a.kind is ActionKind.CANCEL_RESERVATION for a in actions)


def test_stale_reservation_future_timestamp_is_not_stale():
    r = reservation(age=-timedelta(hours=5))  # clock skew: updated "in the future"
    assert select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=1)) == []


def test_stale_reservation_naive_timestamps_are_utc():
    naive = ReservationRow("R1", CP, 1, "Authorized", datetime(2024, 5, 1, 11, 0))
    assert select_stale_reservations([naive], now=NOW, timeout=timedelta(minutes=60)) == []
    assert len(select_stale_reservations([naive], now=NOW, timeout=timedelta(minutes=59))) == 1


def test_stale_reservation_aware_timestamps_in_other_zones():
    plus2 = timezone(timedelta(hours=2))
    r = ReservationRow("R1", CP, 1, "Authorized", datetime(2024, 5, 1, 13, 0, tzinfo=plus2))  # 11:00Z
    assert select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=60)) == []
    assert len(select_stale_reservations([r], now=NOW, timeout=timedelta(minutes=60) - US)) == 1


@given(status=st.sampled_from(STALE_STATUSES + NEVER_STALE_STATUSES), timeout=positive_thresholds, offset=offsets)
def test_stale_reservation_property(status, timeout, offset):
    """Never cancels one younger than (or exactly) the timeout; always cancels an older stale one."""
    age = timeout + offset
    actions = select_stale_reservations([reservation(status=status, age=age)], now=NOW, timeout=timeout)
    assert bool(actions) == (status in STALE_STATUSES and age > timeout)


# ------------------------------------------------------------------ status release
KEY = (CP, 1)
RELEASE = timedelta(minutes=240)


def status_row(status="Faulted", age=timedelta(hours=5), connector=1) -> StatusRow:
    return StatusRow(charge_point_id=CP, connector_id=connector, status=status, updated_at=ago(age))


def release(rows, *, release_after=RELEASE, open_tx=frozenset(), reserved=frozenset()):
    return select_releasable_statuses(
        rows, now=NOW, release_after=release_after, open_tx_connectors=set(open_tx), reserved_connectors=set(reserved)
    )


@pytest.mark.parametrize("status", NON_AVAILABLE)
@pytest.mark.parametrize(
    ("age", "released"),
    [
        (RELEASE - US, False),
        (RELEASE, False),  # exactly 240 minutes: not old yet
        (RELEASE + US, True),
        (timedelta(days=3), True),
    ],
)
def test_status_release_boundary(status, age, released):
    actions = release([status_row(status=status, age=age)])
    if released:
        assert actions == [Action(ActionKind.RELEASE_STATUS, CP, 1, status, actions[0].reason)]
    else:
        assert actions == []


@pytest.mark.parametrize(
    ("open_tx", "reserved", "released"),
    [
        (set(), set(), True),
        ({KEY}, set(), False),
        (set(), {KEY}, False),
        ({KEY}, {KEY}, False),
        ({(CP, 2)}, {(CP, 2)}, True),  # something else holds another connector
        ({("CP-2", 1)}, {("CP-2", 1)}, True),  # same connector number, other charge point
    ],
)
def test_status_release_only_without_open_tx_and_active_reservation(open_tx, reserved, released):
    actions = release([status_row(age=timedelta(days=1))], open_tx=open_tx, reserved=reserved)
    assert bool(actions) == released


def test_status_release_never_releases_available():
    assert release([status_row(status="Available", age=timedelta(days=100))]) == []


def test_status_release_disabled_does_nothing():
    rows = [status_row(status=s, age=timedelta(days=100)) for s in NON_AVAILABLE]
    assert release(rows, release_after=None) == []
    assert release(rows, release_after=threshold(0, "minutes")) == []
    assert release(rows, release_after=threshold(-5, "minutes")) == []


def test_status_release_reason_is_readable_with_durations():
    [a] = release([status_row(status="Faulted", age=timedelta(hours=5))])
    assert a.reason == "stored Faulted is 5h00m old, no open transaction, no active reservation"


def test_status_release_mixed_rows():
    rows = [
        status_row(status="Faulted", age=timedelta(hours=5), connector=1),
        status_row(status="Faulted", age=timedelta(hours=5), connector=2),  # open tx
        status_row(status="Unavailable", age=timedelta(hours=5), connector=3),  # reserved
        status_row(status="Available", age=timedelta(hours=5), connector=4),
        status_row(status="Faulted", age=timedelta(hours=1), connector=5),  # too young
        status_row(status="Occupied", age=timedelta(hours=6), connector=6),
    ]
    actions = release(rows, open_tx={(CP, 2)}, reserved={(CP, 3)})
    assert [(a.connector_id, a.subject) for a in actions] == [(1, "Faulted"), (6, "Occupied")]


@given(
    status=st.sampled_from(("Available",) + NON_AVAILABLE),
    release_after=positive_thresholds,
    offset=offsets,
    has_tx=st.booleans(),
    has_reservation=st.booleans(),
)
def test_status_release_property(status, release_after, offset, has_tx, has_reservation):
    age = release_after + offset
    actions = release(
        [status_row(status=status, age=age)],
        release_after=release_after,
        open_tx={KEY} if has_tx else set(),
        reserved={KEY} if has_reservation else set(),
    )
    expected = status != "Available" and age > release_after and not has_tx and not has_reservation
    assert bool(actions) == expected


# ------------------------------------------------------------------ offline charge points
def live_cp(silent=timedelta(0), interval=300.0, ping_failed=False, cp=CP) -> LiveChargePointRow:
    return LiveChargePointRow(
        charge_point_id=cp, last_seen=ago(silent), heartbeat_interval=interval, ping_failed=ping_failed
    )


@pytest.mark.parametrize(
    ("interval", "factor", "limit"),
    [
        (300.0, 2.5, timedelta(seconds=750)),
        (60.0, 2.0, timedelta(seconds=120)),
        (10.0, 1.5, timedelta(seconds=15)),
        (3600.0, 3.0, timedelta(hours=3)),
    ],
)
@pytest.mark.parametrize(("delta", "offline"), [(-US, False), (timedelta(0), False), (US, True)])
def test_offline_by_silence_boundary(interval, factor, limit, delta, offline):
    actions = select_offline_charge_points([live_cp(silent=limit + delta, interval=interval)], now=NOW, factor=factor)
    if offline:
        assert actions == [Action(ActionKind.MARK_OFFLINE, CP, None, "silence", actions[0].reason)]
    else:
        assert actions == []


def test_offline_by_silence_reason_is_readable_with_durations():
    [a] = select_offline_charge_points([live_cp(silent=timedelta(seconds=751))], now=NOW, factor=2.5)
    assert a.reason == "nothing received for 12m31s (limit 2.5 x 300s)"


@pytest.mark.parametrize("silent", [timedelta(0), timedelta(seconds=1), timedelta(hours=5)])
def test_offline_by_ping_failure_regardless_of_silence(silent):
    actions = select_offline_charge_points([live_cp(silent=silent, ping_failed=True)], now=NOW, factor=2.5)
    assert actions == [Action(ActionKind.MARK_OFFLINE, CP, None, "ping", "WebSocket ping got no pong")]


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_offline_silence_detection_disabled_by_non_positive_factor(factor):
    rows = [live_cp(silent=timedelta(days=1), cp="silent"), live_cp(ping_failed=True, cp="no-pong")]
    actions = select_offline_charge_points(rows, now=NOW, factor=factor)
    assert [(a.charge_point_id, a.subject) for a in actions] == [("no-pong", "ping")]


def test_offline_one_action_per_charge_point_ping_wins():
    rows = [
        live_cp(silent=timedelta(days=1), ping_failed=True, cp="both"),
        live_cp(silent=timedelta(seconds=10), cp="fine"),
        live_cp(silent=timedelta(seconds=800), cp="quiet"),
    ]
    actions = select_offline_charge_points(rows, now=NOW, factor=2.5)
    assert [(a.charge_point_id, a.subject) for a in actions] == [("both", "ping"), ("quiet", "silence")]


@given(
    interval=st.integers(min_value=1, max_value=86_400),
    factor=st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0]),
    offset=offsets,
    ping_failed=st.booleans(),
)
def test_offline_property(interval, factor, offset, ping_failed):
    """Never marks offline a charge point heard from within factor x interval unless ping failed."""
    limit = timedelta(seconds=interval * factor)
    silent = limit + offset
    actions = select_offline_charge_points(
        [live_cp(silent=silent, interval=float(interval), ping_failed=ping_failed)], now=NOW, factor=factor
    )
    assert len(actions) == (1 if ping_failed or silent > limit else 0)
    if actions:
        assert actions[0].subject == ("ping" if ping_failed else "silence")


# ------------------------------------------------------------------ silent connectors
def triggered(expected=(), reported=(), already=()) -> list[int | None]:
    actions = select_silent_connectors(
        CP, expected=set(expected), reported=set(reported), already_triggered=set(already)
    )
    for a in actions:
        assert a.kind is ActionKind.TRIGGER_STATUS
        assert a.charge_point_id == CP
        assert a.subject == "StatusNotification"
        assert "StatusNotification" in a.reason
    return [a.connector_id for a in actions]


@pytest.mark.parametrize(
    ("expected", "reported", "already", "result"),
    [
        ({1, 2, 3}, set(), set(), [1, 2, 3]),
        ({1, 2, 3}, {2}, set(), [1, 3]),
        ({1, 2, 3}, {2}, {3}, [1]),
        ({1, 2, 3}, {1, 2, 3}, set(), []),
        ({1, 2}, set(), {1, 2}, []),
        ({3, 1, 2}, {9}, set(), [1, 2, 3]),  # reported but unknown: nothing to trigger for it
        ({0, 1, 2}, set(), set(), [1, 2]),  # connector 0 is never triggered individually
        ({0}, {1}, set(), []),
        (set(), {1}, set(), []),  # something reported, nothing known: nothing missing
        (set(), {0}, set(), []),
        (set(), set(), set(), [None]),  # nothing at all: one trigger for all connectors
        (set(), set(), {1}, [None]),
        (set(), set(), {0}, []),  # ... unless that whole-charge-point trigger was already sent
    ],
)
def test_silent_connectors_table(expected, reported, already, result):
    assert triggered(expected, reported, already) == result


def test_silent_connectors_reasons():
    [a] = select_silent_connectors(CP, expected=set(), reported=set(), already_triggered=set())
    assert a.reason == "no StatusNotification at all since connect"
    [b] = select_silent_connectors(CP, expected={1}, reported=set(), already_triggered=set())
    assert b.reason == "no StatusNotification for this connector since connect"


connector_sets = st.sets(st.integers(min_value=0, max_value=8), max_size=9)


@given(expected=connector_sets, reported=connector_sets, already=connector_sets)
def test_silent_connectors_property(expected, reported, already):
    result = triggered(expected, reported, already)
    if not expected and not reported:
        assert result == ([] if 0 in already else [None])
    else:
        assert result == sorted(c for c in expected - reported - already if c > 0)
        assert None not in result and 0 not in result


# ------------------------------------------------------------------ orphaned transactions
GRACE = timedelta(seconds=120)
TX_OPENED = ago(timedelta(hours=1))


def tx(tid=7, connector=1, opened_at=TX_OPENED, cp=CP) -> OpenTransactionRow:
    return OpenTransactionRow(transaction_id=tid, charge_point_id=cp, connector_id=connector, opened_at=opened_at)


def live_status(
    status="Available", age=timedelta(minutes=5), connector=1, cp=CP, updated_at=None
) -> dict[tuple[str, int], LiveConnectorRow]:
    at = ago(age) if updated_at is None else updated_at
    return {(cp, connector): LiveConnectorRow(cp, connector, status, at)}


def orphans(txs, live, grace=GRACE):
    return select_orphaned_transactions(txs, live, now=NOW, grace=grace)


@pytest.mark.parametrize(
    ("age", "closed"),
    [
        (GRACE - US, False),
        (GRACE, False),  # exactly the grace: not yet
        (GRACE + US, True),
        (timedelta(minutes=30), True),
    ],
)
def test_orphaned_grace_boundary(age, closed):
    actions = orphans([tx()], live_status(age=age))
    if closed:
        assert actions == [Action(ActionKind.CLOSE_ORPHANED, CP, 1, "7", actions[0].reason)]
    else:
        assert actions == []


def test_orphaned_available_reported_before_tx_opened_does_not_count():
    live = live_status(updated_at=TX_OPENED - US)  # old Available, long past the grace
    assert orphans([tx()], live) == []
    live = live_status(updated_at=TX_OPENED - timedelta(hours=3))
    assert orphans([tx()], live) == []


def test_orphaned_available_reported_after_tx_opened_counts():
    assert len(orphans([tx()], live_status(updated_at=TX_OPENED + US))) == 1


@pytest.mark.parametrize("status", NON_AVAILABLE)
def test_orphaned_non_available_live_status_does_not_count(status):
    assert orphans([tx()], live_status(status=status, age=timedelta(minutes=30))) == []


def test_orphaned_no_live_status_does_not_count():
    assert orphans([tx()], {}) == []
    # a live Available for another connector or another charge point is not this one's
    assert orphans([tx(connector=1)], live_status(connector=2, age=timedelta(minutes=30))) == []
    assert orphans([tx(cp=CP)], live_status(cp="CP-2", age=timedelta(minutes=30))) == []


def test_orphaned_disabled_grace_does_nothing():
    live = live_status(age=timedelta(minutes=30))
    assert orphans([tx()], live, grace=None) == []
    assert orphans([tx()], live, grace=threshold(0, "seconds")) == []
    assert orphans([tx()], live, grace=threshold(-5, "seconds")) == []


def test_orphaned_reason_is_readable_with_durations():
    [a] = orphans([tx()], live_status(age=timedelta(minutes=3)))
    assert a.reason == "connector reports Available for 3m00s (grace 2m00s) but StopTransaction never came"


def test_orphaned_several_transactions():
    live = {
        **live_status(connector=1, age=timedelta(minutes=10)),
        **live_status(connector=2, status="Charging", age=timedelta(minutes=10)),
        **live_status(connector=3, age=timedelta(seconds=30)),
    }
    txs = [tx(tid=1, connector=1), tx(tid=2, connector=2), tx(tid=3, connector=3), tx(tid=4, connector=4)]
    assert [(a.subject, a.connector_id) for a in orphans(txs, live)] == [("1", 1)]


@given(
    grace=positive_thresholds,
    offset=offsets,
    status=st.sampled_from(("Available",) + NON_AVAILABLE),
    reported_vs_opened=st.integers(min_value=-(10**10), max_value=10**10),
)
def test_orphaned_property(grace, offset, status, reported_vs_opened):
    """Closes only on a live Available, reported after the tx opened, older than the grace."""
    age = grace + offset
    reported_at = ago(age)
    opened_at = reported_at - timedelta(microseconds=reported_vs_opened)
    actions = orphans([tx(opened_at=opened_at)], live_status(status=status, updated_at=reported_at), grace=grace)
    expected = status == "Available" and reported_at >= opened_at and age > grace
    assert bool(actions) == expected


# ------------------------------------------------------------------ idle sessions
IDLE = timedelta(hours=2)


def session(age=timedelta(hours=3), sid="S1", connector=1) -> SessionActivityRow:
    return SessionActivityRow(session_id=sid, charge_point_id=CP, connector_id=connector, last_activity=ago(age))


@pytest.mark.parametrize(
    ("age", "ended"),
    [
        (IDLE - US, False),
        (IDLE, False),  # exactly the limit: not idle yet
        (IDLE + US, True),
        (timedelta(days=1), True),
    ],
)
def test_idle_session_boundary(age, ended):
    actions = select_idle_sessions([session(age=age)], now=NOW, idle=IDLE)
    if ended:
        assert actions == [Action(ActionKind.END_IDLE_SESSION, CP, 1, "S1", actions[0].reason)]
    else:
        assert actions == []


def test_idle_session_disabled_does_nothing():
    rows = [session(age=timedelta(days=30))]
    assert select_idle_sessions(rows, now=NOW, idle=None) == []
    assert select_idle_sessions(rows, now=NOW, idle=threshold(0, "hours")) == []
    assert select_idle_sessions(rows, now=NOW, idle=threshold(-5, "hours")) == []
    # and it is off by default
    assert select_idle_sessions(rows, now=NOW, idle=Thresholds.from_settings(Settings()).session_idle) == []


def test_idle_session_reason_is_readable_with_durations():
    [a] = select_idle_sessions([session(age=timedelta(hours=2, minutes=30))], now=NOW, idle=IDLE)
    assert a.reason == "no activity for 2h30m (limit 2h00m)"


def test_idle_session_short_durations_in_reason():
    [a] = select_idle_sessions([session(age=timedelta(seconds=45))], now=NOW, idle=timedelta(seconds=30))
    assert a.reason == "no activity for 45s (limit 30s)"


def test_idle_sessions_selects_only_idle_ones():
    rows = [session(sid="busy", age=timedelta(minutes=5)), session(sid="idle", age=timedelta(hours=5), connector=2)]
    actions = select_idle_sessions(rows, now=NOW, idle=IDLE)
    assert [(a.subject, a.connector_id) for a in actions] == [("idle", 2)]


@given(idle=positive_thresholds, offset=offsets)
def test_idle_session_property(idle, offset):
    """Never ends a session active within the limit; always ends one silent for longer."""
    age = idle + offset
    actions = select_idle_sessions([session(age=age)], now=NOW, idle=idle)
    assert bool(actions) == (age > idle)
