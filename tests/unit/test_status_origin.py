"""Which StatusNotifications a connector sent of its own accord, and which answered our TriggerMessage.

A status that arrives while our TriggerMessage(StatusNotification) for its connector (or for all of
them) is on its way, or within STATUS_ANSWER_WINDOW of that call's answer, is the one we asked for;
any other marks the connector as one that reports by itself (for the rest of the connection).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.clock import FakeClock
from csms.core.maintenance import SilentAsk
from csms.ocpp.registry import STATUS_ANSWER_WINDOW, LiveChargePoint

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def charge_point() -> tuple[LiveChargePoint, FakeClock]:
    return LiveChargePoint("CP-1", None, T0, T0, 300), FakeClock(T0)  # type: ignore[arg-type]


def test_a_status_nobody_asked_for_is_the_connectors_own():
    cp, clock = charge_point()
    assert cp.status_received(1, "Preparing", "NoError", clock.now()) is True
    assert cp.self_reported == {1}
    assert cp.connectors[1].status == "Preparing" and cp.connectors[1].updated_at == T0


def test_a_status_while_our_trigger_is_on_its_way_answers_it():
    cp, clock = charge_point()
    with cp.asking_status(1, clock.now):
        clock.advance(seconds=30)  # a slow answer
        assert cp.status_received(1, "Preparing", "NoError", clock.now()) is False
    assert cp.self_reported == set()
    assert cp.connectors[1].status == "Preparing"


def test_the_answer_window_after_the_trigger_was_answered():
    assert timedelta(seconds=1) <= STATUS_ANSWER_WINDOW <= timedelta(seconds=5)
    for after, own in (
        (STATUS_ANSWER_WINDOW - US, False),
        (STATUS_ANSWER_WINDOW, False),
        (STATUS_ANSWER_WINDOW + US, True),
    ):
        cp, clock = charge_point()
        with cp.asking_status(1, clock.now):
            clock.advance(seconds=1)
        answered = clock.now()
        assert cp.status_received(1, "Finishing", "NoError", answered + after) is own
        assert cp.self_reported == ({1} if own else set())


def test_a_trigger_for_one_connector_does_not_cover_another_one_for_all_does():
    cp, clock = charge_point()
    with cp.asking_status(2, clock.now):
        assert cp.status_received(1, "Available", "NoError", clock.now()) is True
        assert cp.status_received(2, "Preparing", "NoError", clock.now()) is False
    assert cp.self_reported == {1}
    cp, clock = charge_point()
    with cp.asking_status(None, clock.now):  # no connectorId: every connector answers
        for c in (0, 1, 2):
            assert cp.status_received(c, "Available", "NoError", clock.now()) is False
    assert cp.self_reported == set()


def test_overlapping_triggers_each_count_and_an_error_still_ends_the_call():
    cp, clock = charge_point()
    with cp.asking_status(1, clock.now):
        try:
            with cp.asking_status(1, clock.now):
                raise TimeoutError
        except TimeoutError:
            pass
        clock.advance(seconds=60)
        assert cp.status_received(1, "Preparing", "NoError", clock.now()) is False  # the first is still on its way
    clock.advance(seconds=60)
    assert cp.status_received(1, "Available", "NoError", clock.now()) is True  # long after both answers


def test_once_self_reported_always_for_this_connection():
    cp, clock = charge_point()
    cp.status_received(1, "Available", "NoError", clock.now())
    with cp.asking_status(1, clock.now):
        cp.status_received(1, "Preparing", "NoError", clock.now())
    assert cp.self_reported == {1}


def test_a_new_status_ends_the_back_off_the_same_one_keeps_it():
    cp, clock = charge_point()
    with cp.asking_status(1, clock.now):
        cp.status_received(1, "Preparing", "NoError", clock.now())
    cp.silent_asks[1] = SilentAsk(T0, "Preparing", 3)
    with cp.asking_status(1, clock.now):
        cp.status_received(1, "Preparing", "NoError", clock.now())
    assert cp.silent_asks == {1: SilentAsk(T0, "Preparing", 3)}
    with cp.asking_status(1, clock.now):
        cp.status_received(1, "Available", "NoError", clock.now())
    assert cp.silent_asks == {}
