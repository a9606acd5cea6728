"""The connector's physical model: the transition table, statuses and the energy register."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import TransitionError
from simulator.model import (
    STATUS,
    TRANSACTION_STATES,
    TRANSITIONS,
    Car,
    Connector,
    Event,
    State,
    next_state,
    status_of,
)

CAR = Car(power_w=11_000, target_wh=1_000)


def test_every_state_is_reachable_and_can_get_back_to_unplugged():
    reachable = {State.UNPLUGGED}
    frontier = [State.UNPLUGGED]
    while frontier:
        s = frontier.pop()
        for (before, _event), after in TRANSITIONS.items():
            if before is s and after not in reachable:
                reachable.add(after)
                frontier.append(after)
    assert reachable == set(State)
    for s in State:
        assert s is State.UNPLUGGED or (s, Event.UNPLUG) in TRANSITIONS or (s, Event.POWER_LOSS) in TRANSITIONS


def test_a_session_walks_the_table():
    c = Connector(1, register_wh=100.0)
    steps = [
        (Event.PLUG, State.PLUGGED),
        (Event.START, State.CHARGING),
        (Event.CAR_FULL, State.SUSPENDED),
        (Event.STOP, State.FINISHING),
        (Event.UNPLUG, State.UNPLUGGED),
    ]
    for t, (event, expected) in enumerate(steps):
        change = c.apply(event, float(t), car=CAR if event is Event.PLUG else None)
        assert change.after is expected and c.state is expected


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_anything_not_in_the_table_is_refused(state, event):
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(TransitionError, match=f"cannot {event.value}"):
            next_state(state, event)


def test_statuses():
    assert {s: STATUS[s] for s in State} == {
        State.UNPLUGGED: "Available",
        State.PLUGGED: "Preparing",
        State.CHARGING: "Charging",
        State.SUSPENDED: "SuspendedEV",
        State.FINISHING: "Finishing",
    }
    assert status_of(State.PLUGGED, operative=False) == "Unavailable"
    assert status_of(State.CHARGING, operative=False) == "Charging"  # inoperative waits for the transaction


def test_an_inoperative_connector_does_not_start():
    c = Connector(1, operative=False)
    c.apply(Event.PLUG, 0.0, car=CAR)
    assert not c.can(Event.START)
    with pytest.raises(TransitionError, match="inoperative"):
        c.apply(Event.START, 1.0)


def test_energy_rises_only_while_charging_and_stops_at_the_target():
    c = Connector(1, register_wh=500.0)
    c.apply(Event.PLUG, 0.0, car=CAR)
    assert not c.advance(100.0) and c.register_wh == 500.0  # plugged, not charging
    c.apply(Event.START, 100.0)
    assert c.seconds_until_full() == pytest.approx(1000 * 3600 / 11_000)
    assert not c.advance(136.0)  # 36 s at 11 kW = 110 Wh
    assert c.register_wh == pytest.approx(610.0)
    assert c.power_w == 11_000
    assert c.advance(10_000.0)  # the car is full long before that
    assert c.register_wh == pytest.approx(1500.0) and c.meter_wh == 1500
    c.apply(Event.CAR_FULL, 10_000.0)
    assert c.power_w == 0 and c.seconds_until_full() is None
    c.advance(20_000.0)
    assert c.register_wh == pytest.approx(1500.0)


def test_plugging_in_needs_a_car_and_unplugging_forgets_it():
    c = Connector(1)
    with pytest.raises(TransitionError, match="needs a car"):
        c.apply(Event.PLUG, 0.0)
    c.apply(Event.PLUG, 0.0, car=CAR)
    assert c.car == CAR
    c.apply(Event.UNPLUG, 1.0)
    assert c.car is None


@given(st.lists(st.tuples(st.sampled_from(list(Event)), st.floats(0, 600)), max_size=40))
def test_the_register_never_goes_back_and_transactions_match_states(steps):
    c = Connector(1, register_wh=42.0)
    t = 0.0
    last = c.register_wh
    for event, dt in steps:
        t += dt
        if c.can(event):
            c.apply(event, t, car=CAR if event is Event.PLUG else None)
        else:
            c.advance(t)
        assert c.register_wh >= last
        assert c.car_received_wh <= CAR.target_wh + 1e-6
        last = c.register_wh
        assert c.transaction_running == (c.state in TRANSACTION_STATES)
