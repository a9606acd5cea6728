"""Fault modes: their names, their options, and when they fire. Pure: no IO, no clock.

A fault fires at an *opportunity* (a transaction ends, a RemoteStartTransaction
arrives, ...) or, for timed faults, at a moment. Each spec fires by probability
(one keyed draw per opportunity, see `rng.py`) or on a schedule (`at`: the
first opportunity at or after each time; timed faults fire exactly then).
`FAULTS` is the single table the simulator, the CLI's `faults` listing and the
README's fault table are written from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import ConfigError
from .rng import Rng

__all__ = [
    "Trigger",
    "FaultKind",
    "FAULTS",
    "FaultSpec",
    "Firing",
    "FaultBook",
    "parse_fault_option",
    "fault_from_mapping",
    "markdown_table",
]


class Trigger(StrEnum):
    """Which opportunity a fault is decided at."""

    TX_STOP = "transaction stop"
    TX_START = "transaction start"  # then fires a drawn number of seconds later
    TX_OPEN = "transaction start, at once"  # shapes the transaction's own messages from its first one
    REMOTE_START = "RemoteStartTransaction"
    UNLOCK = "UnlockConnector"
    ANSWER = "CSMS request"
    LIFETIME = "once"  # decided when the charge point is built; fires at a drawn moment


@dataclass(frozen=True)
class FaultKind:
    """One row of the fault table."""

    name: str
    trigger: Trigger
    per_connector: bool  # decided per connector (its own opportunities and draws)
    params: Mapping[str, Any]  # option -> default; the default's type is the option's type
    wire: str  # what the CSMS sees (or does not see)
    reproduces: str  # which seed problem it reproduces
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timed_schedule: bool = False  # `at` means "at that moment", not "first opportunity after"
    whole_cp: bool = False  # the effect is the whole charge point (scheduled once, not per connector)


_SEED_STUCK = "seed 000 (stuck gun: 'Charging gun is already in use')"
_V201 = "OCPP 2.0.1 only (a 1.6 charge point ignores it)"
_SEED_BUSY = "seed 001 (ConnectorBusy)"

FAULTS: Mapping[str, FaultKind] = {
    k.name: k
    for k in [
        FaultKind(
            "drop_stop_transaction",
            Trigger.TX_STOP,
            True,
            {"available": True},
            "The transaction ends physically (car leaves) but StopTransaction is never sent, "
            "nor queued; Finishing is not reported. available=true: StatusNotification "
            "Available follows when the cable is out; available=false: no status at all, "
            "the CSMS last saw Charging (a TriggerMessage StatusNotification still gets the real one).",
            f"{_SEED_BUSY} 'Unclosed transaction: StopTransaction never received'; "
            f"{_SEED_STUCK} improper session termination",
        ),
        FaultKind(
            "reject_remote_start",
            Trigger.REMOTE_START,
            True,
            {},
            "RemoteStartTransaction is answered Rejected; no StatusNotification, no StartTransaction follow.",
            f"{_SEED_BUSY} 'Race after remote start: the charger rejects and does not push Available'",
        ),
        FaultKind(
            "accept_remote_start_never_start",
            Trigger.REMOTE_START,
            True,
            {},
            "RemoteStartTransaction is answered Accepted, then nothing: no Preparing, no "
            "StartTransaction; the connector stays Available.",
            f"{_SEED_BUSY} 'LastStatus=Occupied persisted on accept', lingering StartRequested reservation",
        ),
        FaultKind(
            "silent_connector",
            Trigger.LIFETIME,
            True,
            {"ignore_trigger": True},
            "No StatusNotification is ever sent for the connector (transactions still are). "
            "ignore_trigger=true: TriggerMessage(StatusNotification) is answered Accepted "
            "and nothing is sent; false: the trigger gets the real status.",
            f"{_SEED_BUSY} 'Missing live status: online but never sent status for that connector after boot'",
            timed_schedule=True,
        ),
        FaultKind(
            "disconnect_mid_session",
            Trigger.TX_START,
            True,
            {"after": (5.0, 30.0), "back_after": 30.0, "replay": True},
            "During a transaction (after a drawn 'after' seconds) the TCP connection is cut "
            "without a WebSocket close; reconnects after back_after s. Messages of the "
            "offline period are queued; replay=true sends them in order on reconnect, "
            "replay=false loses them (StopTransaction included).",
            f"{_SEED_STUCK} network failures during charging; {_SEED_BUSY} offline charger, StopTime IS NULL",
            timed_schedule=True,
            whole_cp=True,
        ),
        FaultKind(
            "reboot",
            Trigger.TX_START,
            True,
            {"after": (5.0, 30.0), "boot_delay": 5.0},
            "During a transaction the charge point reboots: connection cut, transactions and "
            "the offline queue forgotten (no StopTransaction ever), new BootNotification "
            "after boot_delay s, then StatusNotification for every connector (Preparing "
            "where the car is still plugged in).",
            f"{_SEED_STUCK} system crashes; {_SEED_BUSY} unclosed transaction",
            timed_schedule=True,
            whole_cp=True,
        ),
        FaultKind(
            "unlock_failed",
            Trigger.UNLOCK,
            True,
            {},
            "UnlockConnector is answered UnlockFailed; the transaction (if any) keeps running and no status changes.",
            f"{_SEED_STUCK} 'OCPP unlock failed but sessions still cleaned'",
        ),
        FaultKind(
            "unlock_not_supported",
            Trigger.UNLOCK,
            True,
            {},
            "UnlockConnector is answered NotSupported; nothing else happens.",
            f"{_SEED_STUCK} unlock result is not Unlocked",
        ),
        FaultKind(
            "unlock_no_answer",
            Trigger.UNLOCK,
            True,
            {},
            "UnlockConnector is never answered (the CSMS's call times out); nothing else happens.",
            f"{_SEED_STUCK} 'Charge point did not respond in time'",
        ),
        FaultKind(
            "slow_responses",
            Trigger.ANSWER,
            False,
            {"min": 1.0, "max": 10.0},
            "Each answer to a CSMS request is delayed by a uniform draw in [min, max] s "
            "(set max above the CSMS's call timeout to make it time out).",
            f"{_SEED_STUCK} 'Charge point did not respond in time'",
        ),
        FaultKind(
            "stuck_status",
            Trigger.TX_STOP,
            True,
            {"status": "Finishing"},
            "At a transaction's end StopTransaction is sent, but from then on every "
            "StatusNotification for the connector says `status` (Finishing or Charging), "
            "never Available again, whatever the cable does.",
            f"{_SEED_BUSY} 'Live status Occupied', 'never sends a later StatusNotification with Available'",
            choices={"status": ("Finishing", "Charging")},
        ),
        FaultKind(
            "buffered_meter_values",
            Trigger.TX_START,
            True,
            {"after": (2.0, 10.0), "hold": 3.0},
            "During a transaction (after a drawn 'after' seconds) the charge point holds its periodic "
            "MeterValues back for `hold` s, then sends the next sample first and the held, older-stamped "
            "ones after it: the CSMS receives them out of order. If the transaction ends first, the held "
            "ones go out (in order) before its StopTransaction.",
            f"{_SEED_STUCK} 'Retrieves final meter readings from OCPP' for a force-ended session: a "
            "buffered, older sample must not become its last reading",
        ),
        FaultKind(
            "meter_replaced",
            Trigger.TX_STOP,
            True,
            {"register": 500.0},
            "At a transaction's end its meter has been replaced: StopTransaction's meterStop is the new "
            "meter's reading (`register` Wh, below meterStart and every sample of the transaction), and "
            "later transactions count on from it. The energy the car got is what it was (ground truth).",
            f"{_SEED_STUCK} 'Meter readings preserved from OCPP': a meterStop that contradicts the "
            "register sampled during the transaction",
        ),
        FaultKind(
            "heartbeat_stop",
            Trigger.LIFETIME,
            False,
            {"within": 60.0, "answer_calls": False},
            "At a drawn moment within `within` s of the start the charge point goes silent: the "
            "WebSocket stays open, but no Heartbeat or any other Call is sent again; "
            "answer_calls=false: CSMS requests are not answered either.",
            f"{_SEED_BUSY} 'WebSocket open' but stale status; a hung charger",
            timed_schedule=True,
            whole_cp=True,
        ),
        FaultKind(
            "replay_after_end",
            Trigger.TX_STOP,
            True,
            {},
            "After a transaction's end message, the charge point sends the transaction's meter messages "
            "again (2.0.1: its Updated events, same seqNo, `offline: true`; 1.6: its MeterValues): a queue "
            "replayed a second time after a reconnect. Nothing about the transaction is new.",
            "lbbrhzn/ocpp #2141: replayed events resurrected an ended transaction and moved its meter back",
        ),
        FaultKind(
            "seq_no_gaps",
            Trigger.TX_OPEN,
            True,
            {"every": 3},
            f"{_V201}: the transaction's seqNo skips a number after every `every` events (a station that "
            "numbered events it then dropped, or numbers several transactions from one counter).",
            "OCPP 2.0.1 E.1: seqNo gaps are allowed; a CSMS must not wait for, or refuse after, a gap",
        ),
        FaultKind(
            "no_evse",
            Trigger.TX_OPEN,
            True,
            {},
            f"{_V201}: no event of the transaction names its EVSE, not even the Started (the StatusNotification "
            "Occupied of its EVSE still comes).",
            "lbbrhzn/ocpp #2141 (booked to connector 1), OCPP.Core #97 (both connectors of a station occupied)",
        ),
        FaultKind(
            "slow_replay",
            Trigger.LIFETIME,
            False,
            {"hold": 5.0},
            "After each reconnect the charge point holds what it queued offline (and everything after it) back "
            "for `hold` s while it answers the CSMS: 2.0.1 GetTransactionStatus says `messagesInQueue: true`.",
            "CitrineOS #1053: {ongoingIndicator: false, messagesInQueue: true} taken as inactive, the queued "
            "Ended dropped",
            timed_schedule=True,
            whole_cp=True,
        ),
        FaultKind(
            "reuse_transaction_ids",
            Trigger.LIFETIME,
            False,
            {},
            f"{_V201}: after every reboot the station names its transactions from the start again, reusing the "
            "ids of transactions that ended before the reboot.",
            "OCPP 2.0.1 stations without persistent counters: a new Started with an old transactionId",
            timed_schedule=True,
            whole_cp=True,
        ),
    ]
}


def markdown_table() -> str:
    """The README's fault table, from `FAULTS` (a test keeps the README in step)."""
    rows = [
        "| fault | decided | options (default) | on the wire | reproduces |",
        "|---|---|---|---|---|",
    ]
    for kind in FAULTS.values():
        scope = "per connector" if kind.per_connector else "per charge point"
        if kind.whole_cp and kind.per_connector:
            scope = "per connector, acts on the charge point"
        if kind.trigger is not Trigger.LIFETIME:
            when = f"at each {kind.trigger.value}"
        elif "within" in kind.params:
            when = "once, at a drawn moment within `within` s"
        else:
            when = "once, from the start"
        if kind.timed_schedule:
            when += "; `@T` = at T s"
        options = (
            ", ".join(
                f"`{k}={':'.join(f'{x:g}' for x in v) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else v}`"  # noqa: E501
                for k, v in kind.params.items()
            )
            or "-"
        )
        rows.append(f"| `{kind.name}` | {scope}, {when} | {options} | {kind.wire} | {kind.reproduces} |")
    return "\n".join(rows)


def _coerce(kind: FaultKind, key: str, value: Any) -> Any:
    """A param value from TOML or a CLI string, checked against the default's type."""
    default = kind.params[key]
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if isinstance(default, float):
            out = float(value)
            if not math.isfinite(out) or out < 0:
                raise ValueError(value)
            return out
        if isinstance(default, tuple):
            parts = value.split(":") if isinstance(value, str) else list(value)
            lo, hi = (float(p) for p in parts)
            if not 0 <= lo <= hi:
                raise ValueError(value)
            return (lo, hi)
        value = str(value)
        allowed = kind.choices.get(key)
        if allowed and value not in allowed:
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        hint = {bool: "true or false", float: "a number >= 0", tuple: "LO:HI seconds"}.get(
            type(default), " or ".join(kind.choices.get(key, ())) or "a string"
        )
        raise ConfigError(f"fault {kind.name}: {key}={value!r} is not valid, expected {hint}") from None


@dataclass(frozen=True)
class FaultSpec:
    """One configured fault: which one, on whom, by probability or on a schedule."""

    name: str
    probability: float = 0.0
    at: tuple[float, ...] = ()
    charge_points: frozenset[str] | None = None  # None: every charge point it is given to
    connectors: frozenset[int] | None = None  # None: every connector
    params: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def kind(self) -> FaultKind:
        return FAULTS[self.name]

    def param(self, key: str) -> Any:
        return self.params.get(key, self.kind.params[key])

    def applies_to(self, cp_id: str, connector_id: int | None = None) -> bool:
        if self.charge_points is not None and cp_id not in self.charge_points:
            return False
        if connector_id is not None and self.connectors is not None:
            return connector_id in self.connectors
        return True

    def to_mapping(self) -> dict[str, Any]:
        """The TOML / trace-header shape, read back by `fault_from_mapping`."""
        out: dict[str, Any] = {"name": self.name}
        if self.probability:
            out["probability"] = self.probability
        if self.at:
            out["at"] = list(self.at)
        if self.charge_points is not None:
            out["charge_points"] = sorted(self.charge_points)
        if self.connectors is not None:
            out["connectors"] = sorted(self.connectors)
        for key, value in self.params.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


def fault_from_mapping(raw: Mapping[str, Any]) -> FaultSpec:
    """A fault from a TOML table: name, probability or at, scope, then its own options."""
    data = dict(raw)
    name = data.pop("name", None)
    if name not in FAULTS:
        raise ConfigError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    kind = FAULTS[name]
    probability = data.pop("probability", None)
    at = data.pop("at", None)
    charge_points = data.pop("charge_points", None)
    connectors = data.pop("connectors", None)
    if probability is None and at is None:
        probability = 1.0
    try:
        p = float(probability or 0.0)
        times = tuple(sorted(float(t) for t in ([at] if isinstance(at, int | float) else at or ())))
    except (TypeError, ValueError):
        raise ConfigError(f"fault {name}: probability must be a number and at a list of seconds") from None
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"fault {name}: probability {p} is not between 0 and 1")
    if any(t < 0 for t in times):
        raise ConfigError(f"fault {name}: schedule times must be >= 0 s")
    params = {}
    for key, value in data.items():
        if key not in kind.params:
            known = ", ".join(kind.params) or "none"
            raise ConfigError(f"fault {name} has no option {key!r} (its options: {known})")
        params[key] = _coerce(kind, key, value)
    try:
        cps = None if charge_points is None else frozenset(str(c) for c in charge_points)
        conns = None if connectors is None else frozenset(int(c) for c in connectors)
    except (TypeError, ValueError):
        raise ConfigError(f"fault {name}: charge_points is a list of ids, connectors of ints") from None
    return FaultSpec(name, p, times, cps, conns, params)


def parse_fault_option(text: str) -> FaultSpec:
    """`--fault NAME=PROB[,key=value...]` or `NAME=@T1+T2[,...]` (schedule, seconds).

    Scope keys take `+`-separated lists: `cp=CP0001+CP0002`, `connectors=1+2`.
    Examples: `drop_stop_transaction=0.1,available=false`, `reboot=@30+90,cp=CP0003`.
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest:
        raise ConfigError(f"--fault {text!r}: expected NAME=PROBABILITY or NAME=@SECONDS, e.g. {name or 'reboot'}=0.1")
    first, *options = rest.split(",")
    raw: dict[str, Any] = {"name": name}
    if first.startswith("@"):
        try:
            raw["at"] = [float(t) for t in first[1:].split("+")]
        except ValueError:
            raise ConfigError(f"--fault {text!r}: schedule must look like @30 or @30+90") from None
    else:
        try:
            raw["probability"] = float(first)
        except ValueError:
            raise ConfigError(f"--fault {text!r}: {first!r} is not a probability") from None
    for option in options:
        key, eq, value = option.partition("=")
        if not eq:
            raise ConfigError(f"--fault {text!r}: option {option!r} must be key=value")
        key = key.strip()
        if key in ("cp", "charge_points"):
            raw["charge_points"] = value.split("+")
        elif key == "connectors":
            raw["connectors"] = value.split("+")
        else:
            raw[key] = value
    return fault_from_mapping(raw)


@dataclass(frozen=True, slots=True)
class Firing:
    """A decision that a fault fires: at which opportunity, and its options."""

    name: str
    connector: int | None  # None: the whole charge point
    index: int  # opportunity number for (name, connector), from 0
    spec: FaultSpec
    at: float | None = None  # timed faults: when (s of simulation time); TX_START: delay

    def param(self, key: str) -> Any:
        return self.spec.param(key)


ForcedKey = tuple[str, int | None, int]


class FaultBook:
    """One charge point's faults and every decision about them.

    `decide(name, connector, now)` is asked once per opportunity; it always draws,
    so decision k does not depend on what was decided before. In replay mode
    (`forced`), the set of (name, connector, index) recorded in a trace decides.
    """

    def __init__(
        self,
        cp_id: str,
        connector_ids: Iterable[int],
        specs: Iterable[FaultSpec],
        rng: Rng,
        *,
        forced: frozenset[ForcedKey] | None = None,
    ) -> None:
        self.cp_id = cp_id
        self.connector_ids = tuple(connector_ids)
        self.specs = tuple(s for s in specs if s.applies_to(cp_id))
        self._rng = rng
        self._forced = forced
        self._seen: dict[tuple[str, int | None], int] = {}
        self._schedule_used: dict[tuple[int, int | None], int] = {}

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.specs)

    def _scopes(self, spec: FaultSpec) -> list[int | None]:
        if not spec.kind.per_connector or spec.kind.whole_cp:
            return [None]
        return [c for c in self.connector_ids if spec.applies_to(self.cp_id, c)]

    def decide(self, name: str, connector: int | None, now: float) -> Firing | None:
        """Does fault `name` fire at this opportunity? (connector None for CP-wide faults)"""
        if not any(s.name == name for s in self.specs):
            return None
        kind = FAULTS[name]
        scope = connector if kind.per_connector else None
        index = self._seen.get((name, scope), 0)
        self._seen[(name, scope)] = index + 1
        for n, spec in enumerate(self.specs):
            if spec.name != name or (scope is not None and not spec.applies_to(self.cp_id, scope)):
                continue
            fired = self._fires(n, spec, scope, index, now)
            if fired:
                delay = None
                if kind.trigger is Trigger.TX_START:
                    lo, hi = spec.param("after")
                    delay = self._rng.uniform(lo, hi, name, scope, index, "after")
                return Firing(name, scope, index, spec, delay)
        return None

    def _fires(self, n: int, spec: FaultSpec, scope: int | None, index: int, now: float) -> bool:
        draw = self._rng.random(spec.name, n, scope, index)
        if self._forced is not None:
            return (spec.name, scope, index) in self._forced
        if spec.at and not spec.kind.timed_schedule:
            used = self._schedule_used.get((n, scope), 0)
            due = sum(1 for t in spec.at if t <= now)
            if due > used:
                self._schedule_used[(n, scope)] = due
                return True
            return False
        return draw < spec.probability

    def timed(self) -> list[Firing]:
        """Faults that fire at a moment rather than an opportunity, in time order.

        Lifetime faults by probability (one draw each, moment drawn too) and the
        `at` schedule of timed kinds. Indices count per (name, connector).
        """
        out: list[Firing] = []
        for n, spec in enumerate(self.specs):
            kind = spec.kind
            if not (kind.trigger is Trigger.LIFETIME or (kind.timed_schedule and spec.at)):
                continue
            for scope in self._scopes(spec):
                if spec.at:
                    for k, t in enumerate(spec.at):
                        out.append(Firing(spec.name, scope, 1000 * n + k, spec, t))
                    continue
                if self._forced is not None:
                    fires = (spec.name, scope, 1000 * n) in self._forced
                else:
                    fires = self._rng.random(spec.name, n, scope, "lifetime") < spec.probability
                if fires:
                    within = spec.param("within") if "within" in kind.params else 0.0
                    at = self._rng.uniform(0.0, within, spec.name, n, scope, "moment")
                    out.append(Firing(spec.name, scope, 1000 * n, spec, at))
        out.sort(key=lambda f: (f.at or 0.0, f.name, -1 if f.connector is None else f.connector))
        return out
