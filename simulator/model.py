"""The physical side of one connector, as data: no IO, no clock of its own.

Rule: everything that changes a connector's physical state lives here. The
shell (`chargepoint.py`) turns what happens on the wire or in a script into an
`Event`, calls `Connector.apply(event, now)`, and reports the resulting status.
Time is always passed in (`now`, seconds of simulation time), so the energy
register can be tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .errors import TransitionError

__all__ = [
    "State",
    "Event",
    "TRANSITIONS",
    "TRANSACTION_STATES",
    "STATUS",
    "Car",
    "Connector",
    "Transition",
    "next_state",
    "status_of",
]


# Energy short of the target by less than this counts as full (float rounding).
FULL_EPSILON_WH = 1e-6


class State(StrEnum):
    """What a person standing at the connector would see."""

    UNPLUGGED = "unplugged"  # no cable in a car
    PLUGGED = "plugged"  # cable in, no energy flowing, no transaction
    CHARGING = "charging"  # transaction running, energy flowing
    SUSPENDED = "suspended"  # transaction running, the car takes no more energy
    FINISHING = "finishing"  # transaction over, cable still in the car


class Event(StrEnum):
    PLUG = "plug"
    UNPLUG = "unplug"  # the car leaves; during a transaction the shell ends it first
    START = "start"  # a transaction starts (local tag or remote start)
    CAR_FULL = "car_full"  # the car reached its target energy
    STOP = "stop"  # the transaction ends, cable stays in
    POWER_LOSS = "power_loss"  # reboot: the charger forgets its transaction, cable stays in


S, E = State, Event
TRANSITIONS: Mapping[tuple[State, Event], State] = {
    (S.UNPLUGGED, E.PLUG): S.PLUGGED,
    (S.PLUGGED, E.UNPLUG): S.UNPLUGGED,
    (S.PLUGGED, E.START): S.CHARGING,
    (S.CHARGING, E.CAR_FULL): S.SUSPENDED,
    (S.CHARGING, E.STOP): S.FINISHING,
    (S.SUSPENDED, E.STOP): S.FINISHING,
    (S.CHARGING, E.UNPLUG): S.UNPLUGGED,
    (S.SUSPENDED, E.UNPLUG): S.UNPLUGGED,
    (S.FINISHING, E.UNPLUG): S.UNPLUGGED,
    (S.CHARGING, E.POWER_LOSS): S.PLUGGED,
    (S.SUSPENDED, E.POWER_LOSS): S.PLUGGED,
    (S.FINISHING, E.POWER_LOSS): S.PLUGGED,
}
"""Every allowed (state, event) -> state; anything else is a TransitionError."""

TRANSACTION_STATES = frozenset({S.CHARGING, S.SUSPENDED})
"""States in which a transaction is physically running."""

STATUS: Mapping[State, str] = {
    S.UNPLUGGED: "Available",
    S.PLUGGED: "Preparing",
    S.CHARGING: "Charging",
    S.SUSPENDED: "SuspendedEV",
    S.FINISHING: "Finishing",
}
"""The OCPP 1.6 ChargePointStatus an honest charger reports for each state."""


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TransitionError(f"cannot {event.value} a connector that is {state.value}") from None


def status_of(state: State, operative: bool) -> str:
    """OCPP status: an inoperative connector says Unavailable unless a transaction runs."""
    if not operative and state not in TRANSACTION_STATES:
        return "Unavailable"
    return STATUS[state]


@dataclass(frozen=True, slots=True)
class Car:
    """The car on the cable: how fast it charges and how much it wants."""

    power_w: float
    target_wh: float


@dataclass(frozen=True, slots=True)
class Transition:
    event: Event
    before: State
    after: State


@dataclass(slots=True)
class Connector:
    """One connector's physical state and energy register (Wh, never decreasing)."""

    connector_id: int
    state: State = State.UNPLUGGED
    operative: bool = True
    register_wh: float = 0.0
    car: Car | None = None
    car_received_wh: float = 0.0  # energy given to the current car, against its target
    updated_at: float = 0.0  # simulation time the register was last brought up to date

    @property
    def transaction_running(self) -> bool:
        return self.state in TRANSACTION_STATES

    @property
    def power_w(self) -> float:
        return self.car.power_w if self.state is State.CHARGING and self.car else 0.0

    @property
    def status(self) -> str:
        return status_of(self.state, self.operative)

    def advance(self, now: float) -> bool:
        """Bring the register up to `now`; True if the car has just become full."""
        dt = max(0.0, now - self.updated_at)
        self.updated_at = max(self.updated_at, now)
        if self.state is not State.CHARGING or self.car is None:
            return False
        wanted = max(0.0, self.car.target_wh - self.car_received_wh)
        energy = min(self.car.power_w * dt / 3600.0, wanted)
        if wanted - energy < FULL_EPSILON_WH:
            energy = wanted  # float steps can stop a hair short of the target: that is full
        self.register_wh += energy
        self.car_received_wh += energy
        return self.car_received_wh >= self.car.target_wh

    def seconds_until_full(self) -> float | None:
        """From `updated_at`; None when no energy is flowing."""
        if self.state is not State.CHARGING or self.car is None or self.car.power_w <= 0:
            return None
        wanted = max(0.0, self.car.target_wh - self.car_received_wh)
        return wanted * 3600.0 / self.car.power_w

    def can(self, event: Event) -> bool:
        if event is Event.START and not self.operative:
            return False
        return (self.state, event) in TRANSITIONS

    def apply(self, event: Event, now: float, *, car: Car | None = None) -> Transition:
        """Advance energy to `now`, then take the transition (PLUG needs the `car`)."""
        if event is Event.START and not self.operative:
            raise TransitionError(f"connector {self.connector_id} is inoperative")
        after = next_state(self.state, event)
        self.advance(now)
        before = self.state
        if event is Event.PLUG:
            if car is None:
                raise TransitionError("plugging in needs a car")
            self.car, self.car_received_wh = car, 0.0
        elif event is Event.UNPLUG:
            self.car = None
        self.state = after
        return Transition(event, before, after)

    @property
    def meter_wh(self) -> int:
        """The register as a meter shows it: whole Wh."""
        return int(self.register_wh)
