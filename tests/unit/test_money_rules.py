"""Issue 15's rules in the pure core: which session a start bills to, settling a stop without losing
evidence, plausible readings, charger clocks, and when a payment goes back to the provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.config import Settings
from csms.core import billing, linking, metering
from csms.core.maintenance import ActionKind, PendingStartRow, Thresholds, select_expired_starts
from csms.core.reservations import ReservationStatus as R
from csms.core.reservations import cancel_retry_delay, cancels_payment, payment_cancel_sources
from csms.core.times import stop_time

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def cand(
    sid: str, age_s: float, status: str = "Accepted", *, ended_s: float | None = None, reason: str | None = None
) -> linking.SessionCandidate:
    return linking.SessionCandidate(
        sid, status, NOW - age_s * S, None if ended_s is None else NOW - ended_s * S, reason
    )


# ------------------------------------------------------------------ linking
def test_the_newest_accepted_pending_session_is_linked_before_any_revivable_one():
    rows = [cand("old", 50), cand("new", 10), cand("timed-out", 5, "Failed", ended_s=1, reason=linking.START_TIMED_OUT)]
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S) == linking.Link("new", revived=False)


def test_a_start_still_waiting_for_its_answer_comes_after_a_revivable_one():
    """A double tap: the charger accepted the first request (superseded since by the second, whose
    RemoteStartTransaction is still on its way) and starts for it: that transaction is the first's."""
    rows = [
        cand("first", 1.0, "Failed", ended_s=0.99, reason=linking.START_SUPERSEDED),
        cand("second", 0.99, "Requested"),
    ]
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S) == linking.Link("first", revived=True)
    assert linking.pick_session(rows[1:], now=NOW, revive_within=60 * S) == linking.Link("second", revived=False)
    assert linking.pick_session(rows, now=NOW, revive_within=None) == linking.Link("second", revived=False)


@pytest.mark.parametrize("reason", sorted(linking.REVIVABLE_END_REASONS))
def test_a_session_that_ended_only_by_waiting_is_revived_within_the_window_and_not_after(reason):
    rows = [cand("s", 100, "Failed", ended_s=60, reason=reason)]
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S) == linking.Link("s", revived=True)
    assert linking.pick_session(rows, now=NOW, revive_within=59 * S) is None
    assert linking.pick_session(rows, now=NOW, revive_within=None) is None


@pytest.mark.parametrize("reason", ["StartFailed", "ForceEnded", "IdleTimeout", None])
def test_a_rejected_or_ended_session_is_never_revived(reason):
    rows = [cand("s", 10, "Failed", ended_s=1, reason=reason)]
    assert linking.pick_session(rows, now=NOW, revive_within=timedelta(hours=1)) is None


def test_the_newest_revivable_session_wins():
    rows = [
        cand("a", 30, "Failed", ended_s=20, reason=linking.START_EXPIRED),
        cand("b", 20, "Failed", ended_s=10, reason=linking.START_TIMED_OUT),
    ]
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S).session_id == "b"


def test_only_the_first_transaction_since_a_session_gave_up_can_revive_it():
    rows = [cand("s", 20, "Failed", ended_s=10, reason=linking.START_SUPERSEDED)]
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S, last_transaction_at=NOW - 11 * S).revived
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S, last_transaction_at=NOW - 10 * S).revived
    # Another transaction opened on the connector since: this one is someone else's.
    assert linking.pick_session(rows, now=NOW, revive_within=60 * S, last_transaction_at=NOW - 9 * S) is None


@pytest.mark.parametrize(
    ("session_start", "new_start", "expected"),
    [
        (1000, 1000, (1000, False)),  # the rebuilt start: same reading
        (1000, 1300, (1000, False)),  # the register moved under this tag meanwhile: billed from the first
        (1000, 400, (400, True)),  # went backwards: cannot be bridged, flagged
        (None, 700, (700, False)),
    ],
)
def test_a_carried_session_bills_from_where_it_started(session_start, new_start, expected):
    start, review = linking.carried_meter_start(session_start, new_start)
    assert (start, review is not None) == expected


# ------------------------------------------------------------------ billing
def test_a_stop_below_the_sampled_register_keeps_the_evidenced_energy_and_asks_for_review():
    st = billing.settle_stop(100_000, Decimal("0.20"), meter_stop=500, latest_sample_wh=130_000)
    assert (st.energy_wh, st.fee, st.source, st.end_meter_wh) == (
        30_000,
        Decimal("6.00"),
        billing.MeterSource.METER_VALUES,
        130_000,
    )
    assert "meterStop 500 Wh is below the register 130000 Wh" in st.review


def test_a_stop_at_or_above_the_sample_is_billed_as_sent():
    st = billing.settle_stop(100_000, Decimal("0.20"), meter_stop=130_000, latest_sample_wh=130_000)
    assert (st.energy_wh, st.source, st.review) == (30_000, billing.MeterSource.METER_STOP, None)
    st = billing.settle_stop(100_000, Decimal("0.20"), meter_stop=131_000, latest_sample_wh=None)
    assert (st.energy_wh, st.review) == (31_000, None)


def test_a_stop_below_its_start_with_no_evidence_bills_nothing_and_is_flagged():
    st = billing.settle_stop(100_000, Decimal("0.20"), meter_stop=500)
    assert (st.energy_wh, st.fee) == (0, Decimal("0.00")) and "below meterStart" in st.review


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.one_of(st.none(), st.integers(0, 10**12)))
def test_a_stop_never_bills_less_than_its_sampled_evidence(start, stop, sample):
    st = billing.settle_stop(start, Decimal("0.30"), meter_stop=stop, latest_sample_wh=sample)
    evidenced = 0 if sample is None else max(0, sample - start)
    assert st.energy_wh >= evidenced
    assert st.fee == billing.fee(st.energy_wh, Decimal("0.30"))


# ------------------------------------------------------------------ metering
@pytest.mark.parametrize("value", [0, 1, 10**15 - 1])
def test_plausible_registers_pass(value):
    assert metering.check_register_wh(value, "meterStop") == value


@pytest.mark.parametrize("value", [-1, 10**15, 2**63, 2**64])
def test_implausible_registers_name_the_field_and_the_range(value):
    with pytest.raises(metering.ImplausibleReadingError, match=rf"meterStop {value} is outside 0\.\.999999999999999"):
        metering.check_register_wh(value, "meterStop")


def test_the_latest_reading_carries_its_own_timestamp():
    mv = [
        {"timestamp": "2026-01-01T00:10:00+01:00", "sampledValue": [{"value": "9000"}]},
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "3000"}]},
    ]
    assert metering.latest_energy_register(mv) == metering.Reading(3000, datetime(2026, 1, 1, tzinfo=UTC))
    assert metering.latest_energy_register(
        [{"timestamp": "0001-01-01T00:00:00+01:00", "sampledValue": [{"value": "5"}]}]
    ) == metering.Reading(5, None)


# ------------------------------------------------------------------ clocks
def test_a_stop_stamped_after_its_start_keeps_the_chargers_time_however_far_off():
    start = NOW + timedelta(days=1)
    assert stop_time(start + 60 * S, started=start, received=NOW) == (start + 60 * S, False)


def test_a_stop_stamped_before_its_start_takes_our_receipt_time_never_before_the_start():
    start = NOW - timedelta(hours=1)
    assert stop_time(start - S, started=start, received=NOW) == (NOW, True)
    ahead = NOW + timedelta(hours=2)  # the start was stamped ahead of our clock
    assert stop_time(ahead - timedelta(hours=3), started=ahead, received=NOW) == (ahead, True)
    assert stop_time(None, started=start, received=NOW) == (NOW, False)


# ------------------------------------------------------------------ payments
@pytest.mark.parametrize("src", [R.PENDING_PAYMENT, R.AUTHORIZED, R.START_REQUESTED])
@pytest.mark.parametrize("dst", [R.CANCELLED, R.FAILED])
def test_ending_before_charging_cancels_the_payment(src, dst):
    assert cancels_payment(src, dst)


def test_a_reservation_that_charged_is_never_cancelled_with_the_provider():
    assert not cancels_payment(R.CHARGING, R.CANCELLED) and not cancels_payment(R.CHARGING, R.COMPLETED)
    assert payment_cancel_sources(R.COMPLETED) == frozenset()
    assert payment_cancel_sources(R.CANCELLED) == {R.PENDING_PAYMENT, R.AUTHORIZED, R.START_REQUESTED}
    assert payment_cancel_sources(R.FAILED) == {R.PENDING_PAYMENT, R.AUTHORIZED, R.START_REQUESTED}


def test_provider_cancels_back_off_doubling_up_to_the_cap():
    base = timedelta(seconds=10)
    assert [cancel_retry_delay(n, base=base).total_seconds() for n in range(0, 6)] == [0, 10, 20, 40, 80, 160]
    assert cancel_retry_delay(50, base=base) == timedelta(hours=1)


# ------------------------------------------------------------------ start timeout
def test_pending_starts_expire_after_the_timeout_and_not_before():
    rows = [
        PendingStartRow("s1", "CP", 1, "Accepted", NOW - 180 * S),
        PendingStartRow("s2", "CP", 2, "Requested", NOW - 180 * S - timedelta(microseconds=1)),
    ]
    actions = select_expired_starts(rows, now=NOW, timeout=180 * S)
    assert [(a.kind, a.subject) for a in actions] == [(ActionKind.EXPIRE_START, "s2")]
    assert select_expired_starts(rows, now=NOW, timeout=None) == []


def test_the_start_timeout_is_never_below_the_call_timeout():
    assert Thresholds.from_settings(Settings(start_timeout_seconds=5, call_timeout_seconds=30)).start_timeout == 30 * S
    assert Thresholds.from_settings(Settings(start_timeout_seconds=0)).start_timeout is None
    assert Settings(start_timeout_seconds=5, call_timeout_seconds=30).revive_within() == 30 * S
    assert Settings(start_timeout_seconds=0).revive_within() is None
