"""The seed's occupancy decision matrix, row by row, plus properties over random signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.core.occupancy import (
    AVAILABLE,
    BUSY_STATUSES,
    DEFAULT_FRESHNESS,
    INACTIVE_RESERVATION_STATUSES,
    ConnectorSignals,
    Decision,
    OpenTransaction,
    PersistedStatus,
    ReservationRef,
    Verdict,
    decide,
    is_reservation_active,
    is_status_busy,
)
from csms.core.reservations import ACTIVE, TERMINAL, ReservationStatus

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ACTIVE_RESERVATION_STATUSES = (
    "PendingPayment",
    "Pending",
    "Authorized",
    "StartRequested",
    "Charging",
)


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def persisted(status: str, **age: float) -> PersistedStatus:
    return PersistedStatus(status=status, updated_at=ago(**age))


# (id, signals, decide() keyword arguments, expected verdict, expected reasons)
MATRIX = [
    (
        "offline-nothing",
        ConnectorSignals(websocket_present=False),
        {},
        Verdict.OFFLINE,
        ("websocket:absent",),
    ),
    (
        "offline-live-available",
        ConnectorSignals(False, live_status="Available"),
        {},
        Verdict.OFFLINE,
        ("websocket:absent",),
    ),
    (
        "offline-keeps-busy-reasons",
        ConnectorSignals(False, live_status="Faulted", open_transactions=(OpenTransaction(7),)),
        {},
        Verdict.OFFLINE,
        ("websocket:absent", "live_status:Faulted", "open_transaction:7"),
    ),
    (
        "live-available-nothing-else",
        ConnectorSignals(True, live_status="Available"),
        {},
        Verdict.FREE,
        (),
    ),
    ("no-signals-at-all", ConnectorSignals(True), {}, Verdict.FREE, ()),
    *[
        (
            f"live-{s}",
            ConnectorSignals(True, live_status=s),
            {},
            Verdict.BUSY,
            (f"live_status:{s}",),
        )
        for s in sorted(BUSY_STATUSES)
    ],
    (
        "live-unknown-status-is-busy",
        ConnectorSignals(True, live_status="Weird"),
        {},
        Verdict.BUSY,
        ("live_status:Weird",),
    ),
    (
        "live-status-is-case-sensitive",
        ConnectorSignals(True, live_status="available"),
        {},
        Verdict.BUSY,
        ("live_status:available",),
    ),
    (
        "persisted-faulted-10m",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=10)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=10m",),
    ),
    (
        "persisted-faulted-31m-stale",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=31)),
        {},
        Verdict.FREE,
        (),
    ),
    (
        "persisted-occupied-fresh",
        ConnectorSignals(True, persisted=persisted("Occupied", minutes=5)),
        {},
        Verdict.BUSY,
        ("persisted_status:Occupied:age=5m",),
    ),
    (
        "persisted-available-fresh",
        ConnectorSignals(True, persisted=persisted("Available", minutes=1)),
        {},
        Verdict.FREE,
        (),
    ),
    (
        "persisted-exactly-at-window",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=30)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=30m",),
    ),
    (
        "persisted-1us-past-window",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=30, microseconds=1)),
        {},
        Verdict.FREE,
        (),
    ),
    (
        "persisted-age-floors-to-minutes",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=9, seconds=59)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=9m",),
    ),
    (
        "persisted-under-a-minute",
        ConnectorSignals(True, persisted=persisted("Faulted", seconds=59)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=0m",),
    ),
    (
        "persisted-brand-new",
        ConnectorSignals(True, persisted=persisted("Faulted")),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=0m",),
    ),
    (
        "persisted-from-the-future-small-skew",
        ConnectorSignals(True, persisted=persisted("Faulted", seconds=-30)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=0m",),
    ),
    (
        "persisted-from-the-future-large-skew",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=-90, seconds=-30)),
        {},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=-90m",),
    ),
    (
        "custom-window-stale",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=10)),
        {"freshness": timedelta(minutes=5)},
        Verdict.FREE,
        (),
    ),
    (
        "custom-window-fresh",
        ConnectorSignals(True, persisted=persisted("Faulted", minutes=100)),
        {"freshness": timedelta(hours=2)},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=100m",),
    ),
    (
        "zero-window-only-now-is-fresh",
        ConnectorSignals(True, persisted=persisted("Faulted")),
        {"freshness": timedelta(0)},
        Verdict.BUSY,
        ("persisted_status:Faulted:age=0m",),
    ),
    (
        "live-available-overrides-fresh-persisted-faulted",
        ConnectorSignals(True, live_status="Available", persisted=persisted("Faulted", minutes=1)),
        {},
        Verdict.FREE,
        (),
    ),
    (
        "live-busy-hides-persisted-reason",
        ConnectorSignals(True, live_status="Charging", persisted=persisted("Faulted", minutes=1)),
        {},
        Verdict.BUSY,
        ("live_status:Charging",),
    ),
    (
        "open-transaction",
        ConnectorSignals(True, live_status="Available", open_transactions=(OpenTransaction(42, ago(hours=3)),)),
        {},
        Verdict.BUSY,
        ("open_transaction:42",),
    ),
    (
        "two-open-transactions",
        ConnectorSignals(True, open_transactions=(OpenTransaction(1), OpenTransaction(2))),
        {},
        Verdict.BUSY,
        ("open_transaction:1", "open_transaction:2"),
    ),
    *[
        (
            f"active-reservation-{s}",
            ConnectorSignals(True, live_status="Available", reservations=(ReservationRef("r1", s),)),
            {},
            Verdict.BUSY,
            (f"active_reservation:r1:{s}",),
        )
        for s in ACTIVE_RESERVATION_STATUSES
    ],
    *[
        (
            f"inactive-reservation-{s}",
            ConnectorSignals(True, live_status="Available", reservations=(ReservationRef("r1", s),)),
            {},
            Verdict.FREE,
            (),
        )
        for s in sorted(INACTIVE_RESERVATION_STATUSES)
    ],
    (
        "own-reservation-excluded",
        ConnectorSignals(True, live_status="Available", reservations=(ReservationRef("mine", "Authorized"),)),
        {"exclude_reservation_id": "mine"},
        Verdict.FREE,
        (),
    ),
    (
        "other-reservation-not-excluded",
        ConnectorSignals(
            True,
            live_status="Available",
            reservations=(
                ReservationRef("mine", "Authorized"),
                ReservationRef("theirs", "PendingPayment"),
            ),
        ),
        {"exclude_reservation_id": "mine"},
        Verdict.BUSY,
        ("active_reservation:theirs:PendingPayment",),
    ),
    (
        "exclusion-of-unrelated-id-changes-nothing",
        ConnectorSignals(True, reservations=(ReservationRef("r1", "StartRequested"),)),
        {"exclude_reservation_id": "r2"},
        Verdict.BUSY,
        ("active_reservation:r1:StartRequested",),
    ),
    (
        "mixed-active-and-inactive-reservations",
        ConnectorSignals(
            True,
            reservations=(
                ReservationRef("a", "Cancelled"),
                ReservationRef("b", "Charging"),
                ReservationRef("c", "Failed"),
            ),
        ),
        {},
        Verdict.BUSY,
        ("active_reservation:b:Charging",),
    ),
    (
        "all-reasons-in-order-live",
        ConnectorSignals(
            True,
            live_status="SuspendedEV",
            persisted=persisted("Faulted", minutes=2),
            open_transactions=(OpenTransaction(5), OpenTransaction(6)),
            reservations=(
                ReservationRef("x", "Authorized"),
                ReservationRef("y", "Completed"),
                ReservationRef("z", "Charging"),
            ),
        ),
        {},
        Verdict.BUSY,
        (
            "live_status:SuspendedEV",
            "open_transaction:5",
            "open_transaction:6",
            "active_reservation:x:Authorized",
            "active_reservation:z:Charging",
        ),
    ),
    (
        "all-reasons-in-order-persisted",
        ConnectorSignals(
            True,
            persisted=persisted("Occupied", minutes=12),
            open_transactions=(OpenTransaction(5),),
            reservations=(ReservationRef("x", "StartRequested"),),
        ),
        {},
        Verdict.BUSY,
        (
            "persisted_status:Occupied:age=12m",
            "open_transaction:5",
            "active_reservation:x:StartRequested",
        ),
    ),
    (
        "offline-all-reasons-in-order",
        ConnectorSignals(
            False,
            persisted=persisted("Occupied", minutes=12),
            open_transactions=(OpenTransaction(5),),
            reservations=(ReservationRef("x", "StartRequested"),),
        ),
        {},
        Verdict.OFFLINE,
        (
            "websocket:absent",
            "persisted_status:Occupied:age=12m",
            "open_transaction:5",
            "active_reservation:x:StartRequested",
        ),
    ),
]


@pytest.mark.parametrize(
    ("signals", "kwargs", "verdict", "reasons"),
    [row[1:] for row in MATRIX],
    ids=[row[0] for row in MATRIX],
)
def test_decision_matrix(signals, kwargs, verdict, reasons):
    decision = decide(signals, now=NOW, **kwargs)
    assert decision == Decision(verdict, reasons)
    assert decision.busy is (verdict is Verdict.BUSY)


def test_matrix_ids_are_unique():
    ids = [row[0] for row in MATRIX]
    assert len(ids) == len(set(ids))


def test_required_persisted_faulted_10_minutes_is_busy():
    decision = decide(ConnectorSignals(True, persisted=persisted("Faulted", minutes=10)), now=NOW)
    assert decision.verdict is Verdict.BUSY
    assert decision.busy
    assert decision.reasons == ("persisted_status:Faulted:age=10m",)


def test_required_persisted_faulted_31_minutes_is_free():
    decision = decide(ConnectorSignals(True, persisted=persisted("Faulted", minutes=31)), now=NOW)
    assert decision.verdict is Verdict.FREE
    assert not decision.busy
    assert decision.reasons == ()


def test_offline_is_not_busy():
    decision = decide(ConnectorSignals(False, live_status="Faulted"), now=NOW)
    assert decision.verdict is Verdict.OFFLINE
    assert not decision.busy


def test_default_freshness_is_thirty_minutes():
    assert DEFAULT_FRESHNESS == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("now", "updated_at"),
    [
        # SQLite hands back naive datetimes: they are UTC.
        (NOW, datetime(2024, 5, 1, 11, 50)),
        (NOW.replace(tzinfo=None), datetime(2024, 5, 1, 11, 50, tzinfo=UTC)),
        (NOW.replace(tzinfo=None), datetime(2024, 5, 1, 11, 50)),
        # Other offsets describe the same instant.
        (NOW.astimezone(timezone(timedelta(hours=2))), datetime(2024, 5, 1, 11, 50, tzinfo=UTC)),
        (NOW, datetime(2024, 5, 1, 6, 50, tzinfo=timezone(timedelta(hours=-5)))),
    ],
)
def test_naive_and_offset_datetimes_are_normalised_to_utc(now, updated_at):
    signals = ConnectorSignals(True, persisted=PersistedStatus("Faulted", updated_at))
    assert decide(signals, now=now).reasons == ("persisted_status:Faulted:age=10m",)


def test_naive_datetime_is_not_read_as_local_time_beyond_the_window():
    # 11:00 naive is UTC, i.e. 60 minutes old: stale, whatever the host's time zone.
    signals = ConnectorSignals(True, persisted=PersistedStatus("Faulted", datetime(2024, 5, 1, 11, 0)))
    assert decide(signals, now=NOW).verdict is Verdict.FREE


def test_negative_freshness_is_refused():
    with pytest.raises(ValueError, match="freshness"):
        decide(ConnectorSignals(True), now=NOW, freshness=timedelta(seconds=-1))


def test_reservation_status_enum_members_are_understood():
    signals = ConnectorSignals(
        True,
        reservations=(
            ReservationRef("a", ReservationStatus.CHARGING),
            ReservationRef("b", ReservationStatus.CANCELLED),
        ),
    )
    assert decide(signals, now=NOW).reasons == ("active_reservation:a:Charging",)
    assert not is_reservation_active(ReservationStatus.COMPLETED)
    assert is_reservation_active(ReservationStatus.AUTHORIZED)


def test_inactive_statuses_match_the_reservation_lifecycle():
    assert INACTIVE_RESERVATION_STATUSES == {s.value for s in TERMINAL}
    assert all(is_reservation_active(s.value) for s in ACTIVE)


@pytest.mark.parametrize("status", sorted(BUSY_STATUSES) + ["", "Unknown", "AVAILABLE"])
def test_is_status_busy_for_anything_but_available(status):
    assert is_status_busy(status)


def test_available_is_not_busy():
    assert AVAILABLE == "Available"
    assert not is_status_busy(AVAILABLE)
    assert AVAILABLE not in BUSY_STATUSES


@pytest.mark.parametrize("status", sorted(INACTIVE_RESERVATION_STATUSES))
def test_inactive_reservation_statuses(status):
    assert not is_reservation_active(status)


@pytest.mark.parametrize("status", ACTIVE_RESERVATION_STATUSES + ("", "Expired?"))
def test_any_other_reservation_status_is_active(status):
    assert is_reservation_active(status)


def test_signals_and_decision_are_frozen():
    signals = ConnectorSignals(True)
    with pytest.raises(AttributeError):
        signals.live_status = "Faulted"  # type: ignore[misc]
    decision = decide(signals, now=NOW)
    with pytest.raises(AttributeError):
        decision.verdict = Verdict.BUSY  # type: ignore[misc]


def test_verdict_values_are_stable_strings():
    assert [v.value for v in Verdict] == ["free", "busy", "offline"]


# --- properties -----------------------------------------------------------------------

statuses = st.sampled_from([AVAILABLE, *sorted(BUSY_STATUSES)]) | st.text(max_size=12)
reservation_statuses = st.sampled_from([*ACTIVE_RESERVATION_STATUSES, *sorted(INACTIVE_RESERVATION_STATUSES)])
ages = st.timedeltas(min_value=timedelta(hours=-2), max_value=timedelta(hours=3)) | st.sampled_from(
    [DEFAULT_FRESHNESS, DEFAULT_FRESHNESS + timedelta(microseconds=1), timedelta(0)]
)
signals_strategy = st.builds(
    ConnectorSignals,
    websocket_present=st.booleans(),
    live_status=st.none() | statuses,
    persisted=st.none() | st.builds(PersistedStatus, status=statuses, updated_at=ages.map(lambda age: NOW - age)),
    open_transactions=st.lists(st.builds(OpenTransaction, st.integers(0, 10**9)), max_size=3).map(tuple),
    reservations=st.lists(
        st.builds(ReservationRef, st.text("abc", min_size=1, max_size=3), reservation_statuses),
        max_size=4,
    ).map(tuple),
)


@given(signals=signals_strategy, exclude=st.none() | st.text("abc", min_size=1, max_size=3))
def test_free_iff_present_and_no_reasons(signals, exclude):
    decision = decide(signals, now=NOW, exclude_reservation_id=exclude)
    is_free = decision.verdict is Verdict.FREE
    assert is_free == (signals.websocket_present and decision.reasons == ())
    assert (decision.verdict is Verdict.OFFLINE) == (not signals.websocket_present)
    if not signals.websocket_present:
        assert decision.reasons[0] == "websocket:absent"
    assert decision.busy == (signals.websocket_present and bool(decision.reasons))


@given(signals=signals_strategy)
def test_persisted_reason_never_present_with_a_live_status(signals):
    reasons = decide(signals, now=NOW).reasons
    if signals.live_status is not None:
        assert not any(r.startswith("persisted_status:") for r in reasons)


@given(signals=signals_strategy, exclude=st.none() | st.text("abc", min_size=1, max_size=3))
def test_offline_reasons_are_the_online_reasons_behind_websocket_absent(signals, exclude):
    online = ConnectorSignals(
        True,
        signals.live_status,
        signals.persisted,
        signals.open_transactions,
        signals.reservations,
    )
    offline = ConnectorSignals(
        False,
        signals.live_status,
        signals.persisted,
        signals.open_transactions,
        signals.reservations,
    )
    on = decide(online, now=NOW, exclude_reservation_id=exclude)
    off = decide(offline, now=NOW, exclude_reservation_id=exclude)
    assert off.reasons == ("websocket:absent", *on.reasons)


@given(signals=signals_strategy, exclude=st.text("abc", min_size=1, max_size=3))
def test_excluded_reservation_never_named(signals, exclude):
    reasons = decide(signals, now=NOW, exclude_reservation_id=exclude).reasons
    assert not any(r.startswith(f"active_reservation:{exclude}:") for r in reasons)


@given(signals=signals_strategy)
def test_every_open_transaction_and_active_reservation_is_named(signals):
    reasons = decide(signals, now=NOW).reasons
    for tx in signals.open_transactions:
        assert f"open_transaction:{tx.transaction_id}" in reasons
    for r in signals.reservations:
        named = f"active_reservation:{r.reservation_id}:{r.status}" in reasons
        assert named == (r.status not in INACTIVE_RESERVATION_STATUSES)


@given(signals=signals_strategy)
def test_persisted_reason_iff_no_live_busy_and_within_window(signals):
    reasons = decide(signals, now=NOW).reasons
    p = signals.persisted
    expected = (
        signals.live_status is None
        and p is not None
        and p.status != AVAILABLE
        and NOW - p.updated_at <= DEFAULT_FRESHNESS
    )
    assert any(r.startswith("persisted_status:") for r in reasons) == expected


# ---------------------------------------------------------------- reconnect settle window
SETTLE = timedelta(seconds=10)


def _reconnected(**kw) -> ConnectorSignals:
    base = dict(
        websocket_present=True,
        persisted=PersistedStatus("Available", NOW - timedelta(hours=2)),
        connected_for=timedelta(seconds=1),
    )
    return ConnectorSignals(**{**base, **kw})


def test_reconnected_charger_is_not_free_before_it_reports_the_connector():
    # Cut at t, a car started while it was away, back at t+4: until its queued StartTransaction or a
    # status arrives, "free" would be a guess (chaos_under_load found exactly this).
    d = decide(_reconnected(), now=NOW, settle=SETTLE)
    assert d.verdict is Verdict.OFFLINE
    assert d.reasons == ("websocket:reconnected:1.0s_ago:no_status_yet",)


def test_settle_ends_with_a_live_status_or_the_window():
    assert decide(_reconnected(live_status="Available"), now=NOW, settle=SETTLE).verdict is Verdict.FREE
    assert decide(_reconnected(connected_for=timedelta(seconds=10)), now=NOW, settle=SETTLE).verdict is Verdict.FREE
    assert decide(_reconnected(), now=NOW).verdict is Verdict.FREE  # settle 0: off


def test_settle_never_hides_a_busy_signal_and_spares_new_chargers():
    d = decide(_reconnected(open_transactions=(OpenTransaction(7),)), now=NOW, settle=SETTLE)
    assert (d.verdict, d.reasons) == (Verdict.BUSY, ("open_transaction:7",))
    # A connector never reported before (a new charger) has nothing to replay: free at once.
    assert decide(_reconnected(persisted=None), now=NOW, settle=SETTLE).verdict is Verdict.FREE
    # Unknown connection age (another node's charger, an old caller): as before.
    assert decide(_reconnected(connected_for=None), now=NOW, settle=SETTLE).verdict is Verdict.FREE


def test_a_start_being_stored_is_busy():
    # A StartTransaction received but not yet committed (a slow database): the car is there already.
    d = decide(ConnectorSignals(websocket_present=True, live_status="Available", start_in_flight=True), now=NOW)
    assert (d.verdict, d.reasons) == (Verdict.BUSY, ("start_transaction:being_stored",))


def test_live_charge_point_counts_starts_in_flight():
    from csms.ocpp.registry import LiveChargePoint

    cp = LiveChargePoint("CP", connection=None, connected_at=NOW, last_seen=NOW, heartbeat_interval=60)  # type: ignore[arg-type]
    with cp.starting(1):
        with cp.starting(1):
            assert cp.starts_in_flight == {1: 2}
        assert cp.starts_in_flight == {1: 1}
    assert cp.starts_in_flight == {}


def test_the_reconnect_probe_answer_cuts_the_settle_window_short():
    from csms.ocpp.registry import STATUS_ANSWER_WINDOW, LiveChargePoint

    cp = LiveChargePoint("CP", connection=None, connected_at=NOW, last_seen=NOW, heartbeat_interval=60)  # type: ignore[arg-type]
    assert cp.settle_window(SETTLE) == SETTLE  # no answer yet: the whole window
    cp.reconnect_probe_answered = NOW + timedelta(seconds=1)
    assert cp.settle_window(SETTLE) == timedelta(seconds=1) + STATUS_ANSWER_WINDOW
    cp.reconnect_probe_answered = NOW + timedelta(seconds=30)  # a late answer never lengthens it
    assert cp.settle_window(SETTLE) == SETTLE


def test_a_status_inferred_from_a_transaction_ends_with_it():
    """OCPP 2.0.1: "Charging" inferred from a TransactionEvent's chargingState holds while its transaction is
    open; once a force end closed it (the Ended never came, the connector never spoke), it says nothing."""
    inferred = ConnectorSignals(
        websocket_present=True, live_status="Charging", live_status_of=7, open_transactions=(OpenTransaction(7),)
    )
    assert decide(inferred, now=NOW).reasons == ("live_status:Charging", "open_transaction:7")
    closed = ConnectorSignals(websocket_present=True, live_status="Charging", live_status_of=7)
    assert decide(closed, now=NOW) == Decision(Verdict.FREE, ())
    said = ConnectorSignals(websocket_present=True, live_status="Charging")  # the connector's own word stays
    assert decide(said, now=NOW).reasons == ("live_status:Charging",)
    other = ConnectorSignals(
        websocket_present=True, live_status="Charging", live_status_of=7, open_transactions=(OpenTransaction(8),)
    )
    assert decide(other, now=NOW).reasons == ("open_transaction:8",)
