"""Hand-made simulator traces for the oracle's unit tests: the records a charge point writes, no sockets.

`TraceBuilder` writes what `simulator/chargepoint.py` and `simulator/link.py`
write, in the same order and with the same fields: a `state` record per
physical transition (checked against `simulator.model.TRANSITIONS`), `tx`
records (start, answered, stop, lost), `fault`, `link` (connected, closed,
queue_lost) and the OCPP-J `out`/`in` frames the timeline reads
(StartTransaction, MeterValues, StopTransaction, BootNotification).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from simulator.model import TRANSITIONS, Event, State

__all__ = ["TraceBuilder", "OpenTx", "STEPS", "random_story"]


@dataclass
class OpenTx:
    local_id: int
    connector: int
    tag: str
    meter_start: int
    transaction_id: int | None = None


class TraceBuilder:
    """Records for one charge point (`cp`); several builders can share one `records` list."""

    def __init__(self, cp: str = "CP1", records: list[dict[str, Any]] | None = None) -> None:
        self.cp = cp
        self.records: list[dict[str, Any]] = [] if records is None else records
        self.states: dict[int, State] = {}
        self.running: dict[int, OpenTx] = {}
        self._local = itertools.count(1)
        self._uid = itertools.count(1)

    # ---------------------------------------------------------------- plumbing
    def write(self, t: float, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"t": round(t, 4), "cp": self.cp, "kind": kind, **fields}
        self.records.append(record)
        return record

    def call(self, t: float, action: str, payload: dict[str, Any]) -> str:
        """The charge point sends a Call (an `out` frame); returns its unique id."""
        uid = f"{self.cp}-{next(self._uid)}"
        self.write(t, "out", frame=json.dumps([2, uid, action, payload]))
        return uid

    def result(self, t: float, uid: str, payload: dict[str, Any]) -> None:
        """The CSMS answers a Call (an `in` CallResult frame)."""
        self.write(t, "in", frame=json.dumps([3, uid, payload]))

    def call_error(self, t: float, uid: str) -> None:
        self.write(t, "in", frame=json.dumps([4, uid, "InternalError", "boom", {}]))

    def apply(self, t: float, connector: int, event: Event, register_wh: float) -> None:
        before = self.states.get(connector, State.UNPLUGGED)
        after = TRANSITIONS[(before, event)]  # KeyError: the test wrote an impossible story
        self.states[connector] = after
        self.write(
            t,
            "state",
            connector=connector,
            event=event.value,
            before=before.value,
            after=after.value,
            register_wh=round(register_wh, 1),
        )

    # ------------------------------------------------------------------- link
    def connected(self, t: float) -> None:
        self.write(t, "link", event="connected")

    def closed(self, t: float) -> None:
        self.write(t, "link", event="closed")

    def boot(self, t: float) -> None:
        uid = self.call(t, "BootNotification", {"chargePointVendor": "Sim", "chargePointModel": "One"})
        self.result(t, uid, {"currentTime": "2024-01-01T00:00:00Z", "interval": 60, "status": "Accepted"})

    def online(self, t: float) -> None:
        """Connected and booted, as after a charge point's first start."""
        self.connected(t)
        self.boot(t)

    def fault(self, t: float, name: str, connector: int | None = None, index: int = 0, **params: Any) -> None:
        self.write(t, "fault", fault=name, connector=connector, index=index, params=dict(params))

    # --------------------------------------------------------------- physical
    def plug(self, t: float, connector: int = 1, register_wh: float = 0.0) -> None:
        self.apply(t, connector, Event.PLUG, register_wh)

    def start(
        self,
        t: float,
        connector: int = 1,
        *,
        tag: str = "TAG1",
        meter: int = 0,
        remote: bool = False,
        transaction_id: int | None = None,
        answered_at: float | None = None,
    ) -> OpenTx:
        """`_begin_tx`: START, the tx start record, StartTransaction out; answered if `transaction_id`."""
        if self.states.get(connector, State.UNPLUGGED) is State.UNPLUGGED:
            self.plug(t, connector, meter)
        self.apply(t, connector, Event.START, meter)
        tx = OpenTx(next(self._local), connector, tag, meter)
        self.running[connector] = tx
        self.write(
            t, "tx", connector=connector, event="start", local_id=tx.local_id, tag=tag, remote=remote, meter=meter
        )
        uid = self.call(
            t,
            "StartTransaction",
            {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": "2024-01-01T00:00:00Z"},
        )
        if transaction_id is not None:
            self.answer(t if answered_at is None else answered_at, tx, transaction_id, uid)
        else:
            tx.uid = uid  # type: ignore[attr-defined]
        return tx

    def answer(self, t: float, tx: OpenTx, transaction_id: int, uid: str | None = None) -> None:
        """`_started`: the CallResult arrives, then the tx answered record."""
        uid = uid if uid is not None else tx.uid  # type: ignore[attr-defined]
        self.result(t, uid, {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}})
        tx.transaction_id = transaction_id
        self.write(
            t,
            "tx",
            connector=tx.connector,
            event="answered",
            local_id=tx.local_id,
            transaction_id=transaction_id,
            auth="Accepted",
        )

    def sample(self, t: float, connector: int, register_wh: int, *, unit: str = "Wh", ack: bool = True) -> None:
        """A periodic MeterValues of the running transaction (with its transactionId once known).

        ack=False: sent, never answered (lost with the link).
        """
        tx = self.running[connector]
        value = str(register_wh) if unit == "Wh" else str(register_wh / 1000)
        payload: dict[str, Any] = {
            "connectorId": connector,
            "meterValue": [
                {
                    "timestamp": "2024-01-01T00:00:00Z",
                    "sampledValue": [
                        {
                            "value": value,
                            "context": "Sample.Periodic",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": unit,
                        },
                        {
                            "value": "11000",
                            "context": "Sample.Periodic",
                            "measurand": "Power.Active.Import",
                            "unit": "W",
                        },
                    ],
                }
            ],
        }
        if tx.transaction_id is not None:
            payload["transactionId"] = tx.transaction_id
        uid = self.call(t, "MeterValues", payload)
        if ack:
            self.result(t, uid, {})

    def car_full(self, t: float, connector: int, register_wh: float) -> None:
        self.apply(t, connector, Event.CAR_FULL, register_wh)

    def end(
        self,
        t: float,
        connector: int,
        meter: int,
        *,
        reason: str = "Local",
        unplug: bool = False,
        drop: bool = False,
        available: bool = True,
        ack: bool | None = True,
        acked_at: float | None = None,
        stuck: str | None = None,
        meter_stop: int | None = None,
    ) -> OpenTx:
        """`_end_tx` then STOP (cable stays) or UNPLUG: tx stop, the fault or StopTransaction, the state.

        drop: drop_stop_transaction fires (no StopTransaction); ack: True a CallResult, False a
        CallError, None no answer at all; stuck: stuck_status fires with that status; meter_stop: what
        StopTransaction says when the meter was replaced (meter_replaced; `meter` is the real register).
        """
        tx = self.running.pop(connector)
        sent = meter if meter_stop is None else meter_stop
        if meter_stop is not None:
            self.fault(t, "meter_replaced", connector, register=float(meter_stop))
        self.write(
            t,
            "tx",
            connector=connector,
            event="stop",
            local_id=tx.local_id,
            reason="EVDisconnected" if unplug and reason == "Local" else reason,
            meter=sent,
            energy_wh=meter - tx.meter_start,
        )
        if drop:
            self.fault(t, "drop_stop_transaction", connector, **({} if available else {"available": False}))
        elif tx.transaction_id is not None:
            uid = self.call(
                t,
                "StopTransaction",
                {
                    "transactionId": tx.transaction_id,
                    "meterStop": sent,
                    "timestamp": "2024-01-01T00:00:00Z",
                    "reason": reason,
                    "idTag": tx.tag,
                },
            )
            at = t if acked_at is None else acked_at
            if ack:
                self.result(at, uid, {"idTagInfo": {"status": "Accepted"}})
            elif ack is False:
                self.call_error(at, uid)
        if stuck is not None:
            self.fault(t, "stuck_status", connector, status=stuck)
        self.apply(t, connector, Event.UNPLUG if unplug else Event.STOP, meter)
        return tx

    def unplug(self, t: float, connector: int = 1, register_wh: float = 0.0) -> None:
        """The car leaves an idle or finished connector (use `end(unplug=True)` during a transaction)."""
        assert connector not in self.running, "a transaction runs: end(..., unplug=True)"
        self.apply(t, connector, Event.UNPLUG, register_wh)

    def session(
        self,
        t: float,
        connector: int,
        *,
        transaction_id: int,
        meter_start: int,
        energy: int,
        samples: int = 3,
        duration: float = 8.0,
        tag: str = "TAG1",
        unplug_after: float = 1.0,
    ) -> OpenTx:
        """A whole clean visit: plug, start (answered), samples, stop (acked), unplug."""
        tx = self.start(t, connector, tag=tag, meter=meter_start, transaction_id=transaction_id)
        for i in range(1, samples + 1):
            self.sample(t + duration * i / (samples + 1), connector, meter_start + energy * i // (samples + 1))
        self.end(t + duration, connector, meter_start + energy)
        self.unplug(t + duration + unplug_after, connector, meter_start + energy)
        return tx

    def reboot(
        self,
        t: float,
        registers: dict[int, float] | None = None,
        *,
        fault: bool = True,
        connector: int | None = 1,
        back_at: float | None = None,
    ) -> None:
        """`reboot()`: transactions lost, POWER_LOSS where possible, the queue lost, the link closed;
        with `back_at`, connected and booted again then."""
        registers = registers or {}
        if fault:
            self.fault(t, "reboot", connector, boot_delay=5.0)
        self.write(t, "link", event="queue_lost", messages=0)
        for c, state in sorted(self.states.items()):
            tx = self.running.pop(c, None)
            if tx is not None:
                self.write(t, "tx", connector=c, event="lost", local_id=tx.local_id)
            if (state, Event.POWER_LOSS) in TRANSITIONS:
                self.apply(t, c, Event.POWER_LOSS, registers.get(c, tx.meter_start if tx else 0.0))
        self.closed(t)
        if back_at is not None:
            self.online(back_at)


# ------------------------------------------------------------- random stories
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["plug", "start", "full", "stop", "unplug", "reboot", "drop", "link_down", "link_up"]),
        st.floats(0.05, 3.0),
    ),
    max_size=25,
)
"""A hypothesis strategy for `random_story`: (what happens, seconds after the previous step)."""


def random_story(steps: list[tuple[str, float]], cp: str = "CP1") -> TraceBuilder:
    """Any sequence the state machine allows on connector 1, at increasing times; steps that do not
    apply are skipped. `b.running` intervals are kept in `b.intervals` as [start, end) pairs."""
    b = TraceBuilder(cp)
    b.intervals = []  # type: ignore[attr-defined]
    b.online(0.0)
    t, register, tx_id, up = 0.0, 0, 0, True
    for what, dt in steps:
        t += dt
        register += int(dt * 3000)
        state = b.states.get(1, State.UNPLUGGED)
        if what == "plug" and state is State.UNPLUGGED:
            b.plug(t, 1, register)
        elif what == "start" and state in (State.UNPLUGGED, State.PLUGGED):
            tx_id += 1
            b.start(t, 1, meter=register, transaction_id=tx_id)
            b.intervals.append([t, float("inf")])  # type: ignore[attr-defined]
        elif what == "full" and state is State.CHARGING:
            b.car_full(t, 1, register)
        elif what in ("stop", "drop", "unplug") and state in (State.CHARGING, State.SUSPENDED):
            b.sample(t - dt / 2, 1, register - int(dt * 1500))
            b.end(t, 1, register, drop=what == "drop", unplug=what == "unplug")
            b.intervals[-1][1] = t  # type: ignore[attr-defined]
        elif what == "unplug" and state in (State.PLUGGED, State.FINISHING):
            b.unplug(t, 1, register)
        elif what == "reboot":
            if 1 in b.running:
                b.intervals[-1][1] = t  # type: ignore[attr-defined]
            b.reboot(t, {1: register}, back_at=t + 0.01)
            t, up = t + 0.01, True
        elif what == "link_down" and up:
            b.closed(t)
            up = False
        elif what == "link_up" and not up:
            b.connected(t)
            up = True
    return b
