"""Walk the reservation lifecycle table: every pair of statuses, allowed or refused."""

from __future__ import annotations

from itertools import product

import pytest

from csms.core.reservations import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    ReservationStatus,
    ReservationTransitionError,
    can_transition,
    check_transition,
)

S = ReservationStatus

# The lifecycle written out independently of the module, as the brief states it.
EXPECTED = {
    ("PendingPayment", "Authorized"),
    ("PendingPayment", "Cancelled"),
    ("PendingPayment", "Failed"),
    ("Authorized", "StartRequested"),
    ("Authorized", "Cancelled"),
    ("Authorized", "Failed"),
    ("StartRequested", "Charging"),
    ("StartRequested", "Failed"),
    ("StartRequested", "Cancelled"),
    ("Charging", "Completed"),
    ("Charging", "Cancelled"),
}
ALL_PAIRS = list(product(ReservationStatus, repeat=2))


def test_status_values_are_the_stored_strings():
    assert [s.value for s in S] == [
        "PendingPayment",
        "Authorized",
        "StartRequested",
        "Charging",
        "Completed",
        "Cancelled",
        "Failed",
    ]


def test_table_covers_every_status():
    assert set(TRANSITIONS) == set(ReservationStatus)


def test_table_is_exactly_the_lifecycle():
    table = {(src.value, dst.value) for src, targets in TRANSITIONS.items() for dst in targets}
    assert table == EXPECTED


def test_table_is_read_only():
    with pytest.raises(TypeError):
        TRANSITIONS[S.COMPLETED] = frozenset({S.CHARGING})  # type: ignore[index]


def test_terminal_and_active_partition_the_statuses():
    assert TERMINAL == {S.COMPLETED, S.CANCELLED, S.FAILED}
    assert ACTIVE == {S.PENDING_PAYMENT, S.AUTHORIZED, S.START_REQUESTED, S.CHARGING}
    assert ACTIVE | TERMINAL == set(ReservationStatus)
    assert not ACTIVE & TERMINAL


def test_every_active_status_can_still_end():
    for status in ACTIVE:
        assert TRANSITIONS[status] & TERMINAL, status


def test_every_status_is_reachable_from_pending_payment():
    seen, frontier = {S.PENDING_PAYMENT}, [S.PENDING_PAYMENT]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(ReservationStatus)


def test_lifecycle_has_no_cycles():
    order = [S.PENDING_PAYMENT, S.AUTHORIZED, S.START_REQUESTED, S.CHARGING]
    for src, targets in TRANSITIONS.items():
        for dst in targets:
            assert dst in TERMINAL or order.index(dst) > order.index(src)


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_walk_every_pair(src, dst):
    allowed = (src.value, dst.value) in EXPECTED
    assert can_transition(src, dst) is allowed
    assert can_transition(src.value, dst.value) is allowed  # plain stored strings work too
    if allowed:
        assert check_transition(src, dst) is None
        assert check_transition(src.value, dst.value) is None
    else:
        with pytest.raises(ReservationTransitionError) as excinfo:
            check_transition(src.value, dst)
        message = str(excinfo.value)
        assert src.value in message and dst.value in message


@pytest.mark.parametrize("status", list(ReservationStatus))
def test_staying_put_is_not_a_transition(status):
    assert not can_transition(status, status)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_statuses_go_nowhere(status):
    assert not any(can_transition(status, dst) for dst in ReservationStatus)
    with pytest.raises(ReservationTransitionError, match="terminal"):
        check_transition(status, S.CHARGING)


def test_refusal_names_the_allowed_targets():
    with pytest.raises(ReservationTransitionError, match="Authorized, Cancelled, Failed"):
        check_transition("PendingPayment", "Charging")


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("Pending", "Authorized"),
        ("PendingPayment", "Done"),
        ("", "Failed"),
        ("pendingpayment", "Failed"),
    ],
)
def test_unknown_statuses_are_refused_by_name(src, dst):
    with pytest.raises(ReservationTransitionError, match="unknown reservation status"):
        can_transition(src, dst)
    with pytest.raises(ReservationTransitionError, match="unknown reservation status"):
        check_transition(src, dst)


def test_transition_error_is_a_value_error():
    assert issubclass(ReservationTransitionError, ValueError)
