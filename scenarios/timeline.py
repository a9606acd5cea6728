"""Ground truth over time, rebuilt from the simulator's trace: pure, no sockets, no clock.

The oracle asks "what was really happening at connector C at time t, and since
when?" and "which transactions really ran, with what energy, and did their
StopTransaction reach the CSMS?". Both are answered here from the JSONL trace
records (`simulator/trace.py` lists the kinds), so a saved trace can be judged
again later, away from the run.

Frames are read in both OCPP versions: 1.6 (StatusNotification per connector,
Start/StopTransaction, MeterValues) and 2.0.1 (StatusNotification per EVSE, whose id is
our connector id; TransactionEvent Started/Updated/Ended named by the station's own
transactionId, which is the transaction's id here once the CSMS acknowledged its Started).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "ConnectorTimeline",
    "ChargePointTimeline",
    "SimTransaction",
    "Timeline",
    "FaultMark",
    "RUNNING_STATES",
    "IDLE_STATE",
]

RUNNING_STATES = frozenset({"charging", "suspended"})  # a transaction runs, energy may flow
IDLE_STATE = "unplugged"
# Decided per connector, but they act on the whole charge point: every connector's history shows them.
CHARGE_POINT_ACTING = frozenset({"reboot", "disconnect_mid_session"})


@dataclass(frozen=True, slots=True)
class FaultMark:
    t: float
    name: str
    connector: int | None
    params: dict[str, Any] = field(default_factory=dict, compare=False)


def _at(changes: list[tuple[float, Any]], t: float, default: Any) -> tuple[Any, float]:
    """(value at t, since when) in a time-sorted change list."""
    i = bisect.bisect_right(changes, t, key=lambda c: c[0])
    if i == 0:
        return default, 0.0
    return changes[i - 1][1], changes[i - 1][0]


@dataclass(slots=True)
class ConnectorTimeline:
    cp: str
    connector: int
    states: list[tuple[float, str]] = field(default_factory=list)  # (t, physical state) changes
    faults: list[FaultMark] = field(default_factory=list)
    # (t, busy) each time the charge point told the CSMS about the connector: a StatusNotification
    # (busy unless Available), a StartTransaction (busy) or a StopTransaction (not busy) sent on the wire.
    told: list[tuple[float, bool]] = field(default_factory=list)

    def first_told_busy(self, start: float, end: float) -> float | None:
        """When, in [start, end], the CSMS had been told the connector is in use: `start` if the last
        thing sent before it said so, else the first busy message sent after it; None if none was."""
        if _at(self.told, start, False)[0]:
            return start
        i = bisect.bisect_right(self.told, start, key=lambda c: c[0])
        return next((t for t, busy in self.told[i:] if t <= end and busy), None)

    def state_at(self, t: float) -> tuple[str, float]:
        """(state, since) at time t."""
        return _at(self.states, t, IDLE_STATE)

    def running_since(self, t: float) -> float | None:
        """Since when a transaction has run without a break at t (Charging and SuspendedEV alike), or None."""
        i = bisect.bisect_right(self.states, t, key=lambda c: c[0])
        since = None
        while i > 0 and self.states[i - 1][1] in RUNNING_STATES:
            i -= 1
            since = self.states[i][0]
        return since

    def segments(self, end: float) -> list[tuple[float, float, str]]:
        """(from, to, state) covering [0, end]."""
        out: list[tuple[float, float, str]] = []
        prev_t, prev = 0.0, IDLE_STATE
        for t, state in self.states:
            if t > prev_t:
                out.append((prev_t, t, prev))
            prev_t, prev = t, state
        if end > prev_t:
            out.append((prev_t, end, prev))
        return out


@dataclass(slots=True)
class ChargePointTimeline:
    cp: str
    links: list[tuple[float, bool]] = field(default_factory=list)  # (t, connected) changes
    muted: list[tuple[float, bool]] = field(default_factory=list)  # heartbeat_stop .. next connection
    dropped: list[tuple[float, int | None]] = field(default_factory=list)  # (t, close code): the CSMS closed it
    faults: list[FaultMark] = field(default_factory=list)  # charge-point-wide ones

    def connected_at(self, t: float) -> tuple[bool, float]:
        return _at(self.links, t, False)

    def online_throughout(self, start: float, end: float) -> bool:
        """Connected at `start` and no link change until `end`."""
        connected, _ = self.connected_at(start)
        return connected and self.connected_at(end)[1] <= start

    def muted_at(self, t: float) -> bool:
        return _at(self.muted, t, False)[0]


@dataclass(slots=True)
class SimTransaction:
    """One transaction as the charge point really ran it."""

    cp: str
    connector: int
    local_id: int
    id_tag: str
    remote: bool
    meter_start: int
    started_at: float
    transaction_id: int | str | None = None  # 1.6: given by the CSMS; 2.0.1: the station's (None: never answered)
    station_tx_id: str | None = None  # 2.0.1: the station's own id, from its start on (answered or not)
    ended_at: float | None = None
    end: str | None = None  # "stop" (StopTransaction due) or "lost" (a reboot forgot it)
    reason: str | None = None
    meter_end: int | None = None
    stop_acked: bool = False  # a StopTransaction for it got a CallResult
    stop_meter_sent: int | None = None
    samples: list[int] = field(default_factory=list)  # Energy.Active.Import.Register values sent
    delivered_wh: int | None = None  # what the car really got (the trace says; a replaced meter's meterStop does not)
    acked_samples: list[int] = field(default_factory=list)  # ... of those, the ones the CSMS acknowledged

    @property
    def energy_wh(self) -> int | None:
        if self.delivered_wh is not None:
            return max(0, self.delivered_wh)
        if self.meter_end is None:
            return None
        return max(0, self.meter_end - self.meter_start)

    def evidenced_wh(self) -> int:
        """Energy the CSMS had acknowledged evidence of (its best meter sample), 0 without any."""
        return max(0, max(self.acked_samples, default=self.meter_start) - self.meter_start)

    def sample_step_wh(self) -> int:
        """The largest jump between consecutive readings the CSMS could have seen (one sample's worth)."""
        points = [self.meter_start, *self.samples]
        if self.energy_wh is not None:
            points.append(self.meter_start + self.energy_wh)  # not meter_end: a replaced meter reads lower
        points.sort()
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=0)


class Timeline:
    """Everything the oracle needs to know about what really happened, indexed for lookups."""

    def __init__(self) -> None:
        self.connectors: dict[tuple[str, int], ConnectorTimeline] = {}
        self.charge_points: dict[str, ChargePointTimeline] = {}
        self.transactions: list[SimTransaction] = []
        self.end = 0.0

    def connector(self, cp: str, connector: int) -> ConnectorTimeline:
        key = (cp, connector)
        if key not in self.connectors:
            self.connectors[key] = ConnectorTimeline(cp, connector)
        return self.connectors[key]

    def charge_point(self, cp: str) -> ChargePointTimeline:
        if cp not in self.charge_points:
            self.charge_points[cp] = ChargePointTimeline(cp)
        return self.charge_points[cp]

    def running_at(self, cp: str, connector: int, t: float) -> SimTransaction | None:
        """The transaction really running at the connector at time t, if any."""
        return next(
            (
                x
                for x in reversed(self.transactions)
                if x.cp == cp
                and x.connector == connector
                and x.started_at <= t
                and (x.ended_at is None or x.ended_at > t)
            ),
            None,
        )

    def faults_of(self, cp: str, connector: int, until: float | None = None) -> list[FaultMark]:
        marks = [*self.charge_point(cp).faults, *self.connector(cp, connector).faults]
        return sorted((m for m in marks if until is None or m.t <= until), key=lambda m: m.t)

    @classmethod
    def from_records(
        cls, records: Iterable[dict[str, Any]], *, connectors: dict[str, int] | None = None, end: float | None = None
    ) -> Timeline:
        """Build from trace records; `connectors` (cp -> count) adds connectors that never changed."""
        tl = cls()
        for cp, count in (connectors or {}).items():
            tl.charge_point(cp)
            for c in range(1, count + 1):
                tl.connector(cp, c)
        live: dict[tuple[str, int], SimTransaction] = {}  # running, by connector
        by_local: dict[tuple[str, int], SimTransaction] = {}
        by_tx_id: dict[tuple[str, int | str], SimTransaction] = {}
        calls: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}  # (cp, uid) -> (action, payload)
        last_t = 0.0
        for r in records:
            t = float(r.get("t", 0.0))
            last_t = max(last_t, t)
            cp, kind = r.get("cp"), r.get("kind")
            if cp is None:
                continue
            if kind == "state":
                tl.connector(cp, r["connector"]).states.append((t, r["after"]))
                if r.get("event") == "power_loss":
                    tx = live.pop((cp, r["connector"]), None)
                    if tx is not None and tx.delivered_wh is None:  # older traces: no energy on "lost"
                        tx.meter_end = int(r.get("register_wh", tx.meter_start))
            elif kind == "fault":
                mark = FaultMark(t, r["fault"], r.get("connector"), dict(r.get("params") or {}))
                if mark.connector is None or mark.name in CHARGE_POINT_ACTING:
                    tl.charge_point(cp).faults.append(mark)
                else:
                    tl.connector(cp, mark.connector).faults.append(mark)
                if mark.name == "heartbeat_stop":
                    tl.charge_point(cp).muted.append((t, True))
                elif mark.name == "reboot":
                    _unmute(tl.charge_point(cp), t)
            elif kind == "link":
                event = r.get("event")
                if event in ("connected", "closed"):
                    tl.charge_point(cp).links.append((t, event == "connected"))
                if event == "closed" and r.get("by") == "csms":
                    tl.charge_point(cp).dropped.append((t, r.get("code")))
            elif kind == "tx":
                _tx_record(r, cp, t, live, by_local, by_tx_id, tl)
            elif kind in ("out", "in"):
                if _frame(r, cp, kind, calls, by_tx_id, tl, t) == "BootNotification":
                    _unmute(tl.charge_point(cp), t)  # a Reset or a scripted reboot: alive again
        tl.end = end if end is not None else last_t
        return tl


def _unmute(cpt: ChargePointTimeline, t: float) -> None:
    """Only a reboot ends heartbeat_stop (simulator/link.py `cut(reboot=True)`): a hung charger whose
    socket the CSMS closed connects again and still sends nothing."""
    if cpt.muted and cpt.muted[-1][1]:
        cpt.muted.append((t, False))


def _tx_record(r: dict[str, Any], cp: str, t: float, live: dict, by_local: dict, by_tx_id: dict, tl: Timeline) -> None:
    event, connector, local = r.get("event"), r.get("connector"), r.get("local_id")
    if event == "start":
        tx = SimTransaction(cp, connector, local, r.get("tag", ""), bool(r.get("remote")), int(r.get("meter", 0)), t)
        live[(cp, connector)] = tx
        by_local[(cp, local)] = tx
        tl.transactions.append(tx)
        if r.get("station_tx_id"):  # 2.0.1: its events name it before (or without) an acknowledged Started
            tx.station_tx_id = str(r["station_tx_id"])
            by_tx_id[(cp, tx.station_tx_id)] = tx
        return
    tx = by_local.get((cp, local))
    if tx is None:
        return
    if event == "answered" and r.get("transaction_id") is not None:
        tx_id = r["transaction_id"]
        tx.transaction_id = tx_id if isinstance(tx_id, str) else int(tx_id)
        by_tx_id[(cp, tx.transaction_id)] = tx
    elif event in ("stop", "lost"):
        tx.ended_at, tx.end, tx.reason = t, event, r.get("reason")
        if r.get("energy_wh") is not None:
            tx.delivered_wh = int(r["energy_wh"])
        if event == "stop":
            tx.meter_end = int(r.get("meter", tx.meter_start))
        elif tx.delivered_wh is not None:
            tx.meter_end = tx.meter_start + tx.delivered_wh
        if live.get((cp, connector)) is tx and event == "stop":
            del live[(cp, connector)]
        # "lost": the power_loss state record that follows carries the register


def _frame(r: dict[str, Any], cp: str, kind: str, calls: dict, by_tx_id: dict, tl: Timeline, t: float) -> str | None:
    """Reads transaction messages and what the CSMS was told about each connector from one frame;
    returns the action of a Call the charge point sent."""
    try:
        msg = json.loads(r["frame"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(msg, list) or len(msg) < 3:
        return None
    if kind == "out" and msg[0] == 2 and len(msg) == 4:
        action, payload = msg[2], msg[3] if isinstance(msg[3], dict) else {}
        calls[(cp, msg[1])] = (action, payload)
        if action == "TransactionEvent":
            _transaction_event(payload, cp, by_tx_id, tl, t)
            return action
        connector = payload.get("connectorId") if "evseId" not in payload else payload.get("evseId")
        if action in ("StatusNotification", "StartTransaction") and isinstance(connector, int) and connector > 0:
            status = payload.get("status", payload.get("connectorStatus"))
            busy = action == "StartTransaction" or status != "Available"
            tl.connector(cp, connector).told.append((t, busy))
        if action == "MeterValues" and payload.get("transactionId") is not None:
            tx = by_tx_id.get((cp, payload["transactionId"]))
            if tx is not None:
                tx.samples.extend(_registers(payload))
        elif action == "StopTransaction":
            tx = by_tx_id.get((cp, payload.get("transactionId")))
            if tx is not None:
                tx.stop_meter_sent = payload.get("meterStop")
                tl.connector(cp, tx.connector).told.append((t, False))  # a silent connector says no Available
        return action if isinstance(action, str) else None
    elif kind == "in" and msg[0] == 3:
        call = calls.pop((cp, msg[1]), None)
        if call is None:
            return None
        action, payload = call
        event = payload.get("eventType") if action == "TransactionEvent" else None
        tx_id = _transaction_id(payload) if event else payload.get("transactionId")
        tx = by_tx_id.get((cp, tx_id)) if tx_id is not None else None
        if tx is None:
            return None
        if action == "StopTransaction" or event == "Ended":
            tx.stop_acked = True
        elif action == "MeterValues" or event == "Updated":
            tx.acked_samples.extend(_registers(payload))
    return None


def _transaction_id(payload: dict[str, Any]) -> Any:
    info = payload.get("transactionInfo")
    return info.get("transactionId") if isinstance(info, dict) else None


def _transaction_event(payload: dict[str, Any], cp: str, by_tx_id: dict, tl: Timeline, t: float) -> None:
    """2.0.1: a Started tells the CSMS the EVSE is in use, an Ended that it is not; Updated and Ended carry
    meter samples. Events of a transaction whose Started was never acknowledged name no known transaction."""
    event = payload.get("eventType")
    evse = payload.get("evse")
    tx = by_tx_id.get((cp, _transaction_id(payload)))
    connector = evse.get("id") if isinstance(evse, dict) else (tx.connector if tx is not None else None)
    if event == "Started" and isinstance(connector, int) and connector > 0:
        tl.connector(cp, connector).told.append((t, True))
    if tx is None:
        return
    if event == "Updated":
        tx.samples.extend(_registers(payload))
    elif event == "Ended":
        ends = _registers(payload)
        tx.stop_meter_sent = ends[-1] if ends else None
        tl.connector(cp, tx.connector).told.append((t, False))


def _registers(payload: dict[str, Any]) -> list[int]:
    out = []
    for mv in payload.get("meterValue", ()):
        for sv in mv.get("sampledValue", ()):
            if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
                unit = sv.get("unit") or (sv.get("unitOfMeasure") or {}).get("unit")  # 1.6 / 2.0.1
                try:  # Decimal: 1.001 kWh is 1001 Wh (as a float, 1.001 * 1000 is 1000.999...)
                    value = Decimal(str(sv["value"]))
                    out.append(int(value * 1000 if unit == "kWh" else value))
                except (KeyError, ArithmeticError, ValueError):
                    continue
    return out
