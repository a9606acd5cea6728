"""A load-test charge point: the simulator's behaviour model in a gevent shell.

What a connector physically does is `simulator.model.Connector` (the transition
table, the energy register); which fault fires when is `simulator.faults.FaultBook`
(keyed draws, `simulator.rng.Rng`); a car visit is `simulator.fleetspec.session_plan`;
configuration keys are `simulator.configstore.ConfigStore`. This module is only the
shell around them, written after the trio one (simulator/chargepoint.py) so that the
same fault has the same effect on the wire, and it writes the simulator's trace
records (state, status, tx, fault, link, frames) so `scenarios.timeline` rebuilds the
ground truth and `scenarios.oracle` judges a load run as it judges a scenario.

Greenlets it owns: the link, one per car visit, one per running transaction (meter
values, faults timed into the transaction), one per timed fault. A greenlet only
switches at IO or sleep, so each step on the model is atomic, as in the trio shell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Group

from simulator.answers import VARIABLES
from simulator.configstore import ConfigStore
from simulator.errors import TransitionError
from simulator.faults import FaultBook, FaultSpec, Firing
from simulator.fleetspec import DriverSpec, GroupSpec, SessionPlan, session_plan
from simulator.identity import Identity
from simulator.model import Car, Connector, State, Transition
from simulator.model import Event as Ev
from simulator.rng import Rng
from simulator.trace import TraceWriter
from simulator.wire import Sample, TxFacts, wire_for

from .wire import Link, NoAnswer, NotImplementedCall

__all__ = ["ChargePoint", "Plug", "Tx"]

ANSWER_FIRST = 0.01  # s: real chargers answer a request before acting on it


@dataclass(eq=False)
class Tx:
    local_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: float
    remote: bool = False
    transaction_id: int | str | None = None  # 1.6: the CSMS's; 2.0.1: the station's, once acknowledged
    auth_status: str | None = None
    station_tx_id: str = ""  # 2.0.1: the station names its transactions
    remote_start_id: int | None = None
    seq: int = 0  # 2.0.1: the next event's seqNo
    answered: Event = field(default_factory=Event)
    tasks: Group = field(default_factory=Group)  # meter values and faults timed into the transaction


class Plug:
    """One connector as the shell sees it: the physical model plus what the CSMS was told."""

    __slots__ = (
        "model",
        "tx",
        "last_tx",
        "last_reported",
        "last_sent",
        "last_real",
        "hidden",
        "stuck",
        "silent",
        "pending_operative",
        "visits",
        "remote_claim",
        "visit",
    )

    def __init__(self, model: Connector) -> None:
        self.model = model
        self.tx: Tx | None = None
        self.last_tx: Tx | None = None
        self.last_reported: str | None = None
        self.last_sent: str | None = None
        self.last_real: str | None = None
        self.hidden: frozenset[str] = frozenset()  # statuses drop_stop_transaction swallows
        self.stuck: str | None = None  # stuck_status: the only status ever reported
        self.silent: bool | None = None  # silent_connector; True: also ignores TriggerMessage
        self.pending_operative: bool | None = None  # ChangeAvailability Scheduled
        self.visits = 0
        self.remote_claim: int | None = None
        self.visit: gevent.Greenlet | None = None  # the car visit playing here, if any

    def wire_status(self, *, trigger: bool = False) -> tuple[str | None, str]:
        """(status to send or None, why not): the reporting faults, as the simulator applies them."""
        real = self.stuck or self.model.status
        if self.silent is not None and not (trigger and self.silent is False):
            return None, "silent_connector"
        if real in self.hidden and not trigger:
            return None, "drop_stop_transaction"
        self.hidden = frozenset()
        return real, ""

    @property
    def idle(self) -> bool:
        return (
            self.model.state is State.UNPLUGGED
            and self.tx is None
            and self.model.operative
            and self.remote_claim is None
            and (self.visit is None or self.visit.dead)
        )


class ChargePoint:
    """One charge point: `start()` connects it; `car_arrives()` plays a visit; `park()` ends the traffic."""

    def __init__(
        self,
        cp_id: str,
        *,
        url: str,
        connectors: int,
        faults: tuple[FaultSpec, ...],
        rng: Rng,
        driver: DriverSpec,
        group: GroupSpec,
        trace: TraceWriter,
        now: Callable[[], float],
        epoch: float,
        call_timeout: float,
        meter_interval: int,
        on_request: Callable[[str, str, float, int, BaseException | None], None],
    ) -> None:
        self.id = cp_id
        self.rng = rng
        self.driver = driver
        self.group = group
        self.trace = trace
        self.clock = now
        self.epoch = epoch
        self.call_timeout = call_timeout
        self.book = FaultBook(cp_id, range(1, connectors + 1), faults, rng.child("faults"))
        self.config = ConfigStore(
            {"NumberOfConnectors": str(connectors), "MeterValueSampleInterval": str(meter_interval)}
        )
        self.plugs = {
            c: Plug(Connector(c, register_wh=float(round(rng.uniform(0, 50_000, "register", c)))))
            for c in range(1, connectors + 1)
        }
        self.operative = True
        self.driving = True  # cars still come; `park` ends it
        self.started_at = 0.0
        self.tasks = Group()  # link, timed faults, answers' follow-ups
        self.visits = Group()  # car visits (the drivers): killed when the traffic ends
        self._mute_answers = False
        self._tx_ids = 0
        self._remote_starts = 0
        self.wire = wire_for(group.ocpp)  # how each message is worded: the simulator's, per OCPP version
        self.link = Link(
            cp_id,
            url,
            boot_payload=self.wire.boot(Identity("unstuck", "locust", cp_id[-20:], "load-1")),
            subprotocol=self.wire.version.subprotocol,
            config=self.config,
            call_timeout=call_timeout,
            trace=trace,
            now=now,
            on_request=on_request,
            answer=self.answer,
            on_up=self._report_all,
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def now(self) -> float:
        return self.clock()

    def iso(self) -> str:
        return (
            datetime.fromtimestamp(self.epoch + self.now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )

    def start(self) -> None:
        self.started_at = self.now
        self.trace.write(
            self.id,
            "identity",
            vendor="unstuck",
            model="locust",
            serial=self.id[-20:],
            firmware="load-1",
            connectors=len(self.plugs),
        )
        self.tasks.spawn(self.link.run)
        for firing in self.book.timed():
            self.tasks.spawn(self._fire_at, firing)

    def wait_online(self, timeout: float) -> bool:
        return self.link.online.wait(timeout)

    def park(self) -> None:
        """The traffic ends: no new cars; each car here finishes and leaves as its driver would.

        The stops go through the usual path, so a fault that fires at a stop still fires.
        """
        self.driving = False
        self.visits.kill(block=True)
        for cid, plug in self.plugs.items():
            plug.remote_claim = None
            try:
                if plug.tx is not None:
                    self.stop(cid, "Local")
                if plug.model.can(Ev.UNPLUG):
                    self.unplug(cid)
            except TransitionError as exc:
                self.trace.write(self.id, "skipped", what="park", connector=cid, why=str(exc))

    def close(self) -> None:
        self.visits.kill(block=False)
        self.link.close()
        self.tasks.join(timeout=3)
        self.tasks.kill(block=False)

    # --------------------------------------------------------------- sending
    def _report(self, plug: Plug, *, resend: bool = False, trigger: bool = False) -> None:
        status, why = plug.wire_status(trigger=trigger)
        real = self.wire.status_text(plug.stuck or plug.model.status)
        if status is None:
            if plug.last_real != real or trigger:
                self.trace.write(self.id, "status", connector=plug.model.connector_id, status=real, sent=False, why=why)
            plug.last_real = real
            return
        plug.last_real = real
        status = self.wire.status_text(status)
        if status == plug.last_sent and not resend:
            return
        self._send_status(plug.model.connector_id, status, plug)

    def _send_status(self, connector_id: int, status: str, plug: Plug | None) -> None:
        if connector_id == 0 and not self.wire.says_station_status:
            return
        payload = self.wire.status(connector_id, status, self.iso())
        online = self.link.online.is_set() and not self.link.muted

        def done(result: dict[str, Any] | None) -> None:
            if plug is None:
                return
            if result is not None:
                plug.last_reported = status
            elif plug.last_sent == status:  # lost: say it again when the link is back
                plug.last_sent = plug.last_reported

        if plug is not None and online:
            plug.last_sent = status
        link = {} if online else {"link": "muted" if self.link.muted else "offline"}
        self.trace.write(self.id, "status", connector=connector_id, status=status, sent=online, why="", **link)
        self.link.send("StatusNotification", payload, on_done=done)

    def _report_all(self, booted: bool) -> None:
        """After a boot: every connector and connector 0; after a reconnect: what changed."""
        if booted:
            self._send_status(0, "Available" if self.operative else "Unavailable", None)
        for plug in self.plugs.values():
            self._report(plug, resend=booted)

    # ------------------------------------------------------- physical actions
    def _plug(self, connector_id: int) -> Plug:
        try:
            return self.plugs[connector_id]
        except KeyError:
            raise TransitionError(f"{self.id} has no connector {connector_id}") from None

    def _apply(self, plug: Plug, event: Ev, car: Car | None = None) -> Transition:
        change = plug.model.apply(event, self.now, car=car)
        self.trace.write(
            self.id,
            "state",
            connector=plug.model.connector_id,
            event=event.value,
            before=change.before.value,
            after=change.after.value,
            register_wh=round(plug.model.register_wh, 1),
        )
        return change

    def car_arrives(self) -> bool:
        """A car comes to an idle connector and plays the simulator's next session plan there; False if none is idle."""
        if not (self.driving and self.operative and self.link.online.is_set()):
            return False
        idle = [c for c, p in self.plugs.items() if p.idle]
        if not idle:
            return False
        cid = idle[int(self.rng.random("arrival", self._tx_ids, len(idle)) * len(idle))]
        plug = self.plugs[cid]
        plan = session_plan(self.rng.child("driver"), self.driver, self.group, cid, plug.visits)
        plug.visit = self.visits.spawn(self._visit, cid, plan)
        return True

    def _visit(self, cid: int, plan: SessionPlan) -> None:
        """The simulator's driver for one plan (simulator/driver.py), without the gap: locust's wait_time is it."""
        plug = self.plugs[cid]
        self.trace.write(self.id, "session", **plan.to_mapping())
        started = self.now
        self.plug_in(cid, plan.car)
        visit = plug.visits
        try:
            tx = self.start_by_tag(cid, plan.tag)
        except TransitionError as exc:
            self.trace.write(self.id, "skipped", what="start", connector=cid, why=str(exc))
            tx = None
        stay = plan.duration - (plan.linger if plan.ending == "local" else 0.0)
        gevent.sleep(max(0.0, started + stay - self.now))
        if plug.visits != visit:
            return  # an unlock took the cable out and another car came: not ours to move
        if plan.ending == "local" and tx is not None and plug.tx is tx:
            self.stop(cid, "Local")
            gevent.sleep(plan.linger)
        if plug.visits == visit and plug.model.can(Ev.UNPLUG):
            self.unplug(cid)

    def plug_in(self, connector_id: int, car: Car) -> None:
        plug = self._plug(connector_id)
        plug.visits += 1
        self._apply(plug, Ev.PLUG, car)
        self._report(plug)

    def start_by_tag(
        self, connector_id: int, tag: str, *, remote: bool = False, remote_start_id: int | None = None
    ) -> Tx | None:
        """Authorize (unless remote) and start; None if the tag was refused or the car left meanwhile."""
        plug = self._plug(connector_id)
        if not plug.model.can(Ev.START):
            raise TransitionError(f"{self.id}/{connector_id}: cannot start in state {plug.model.state.value}")
        if not remote or self.config.bool("AuthorizeRemoteTxRequests"):
            answer = self.link.request("Authorize", self.wire.authorize(tag))
            if answer is None and not (self.link.online.is_set() or self.config.bool("LocalAuthorizeOffline")):
                return None
            if answer is not None and (auth := self.wire.auth_status(answer)) != "Accepted":
                self.trace.write(self.id, "tx", connector=connector_id, event="refused", tag=tag, auth=auth)
                return None
            if not plug.model.can(Ev.START):
                return None
        return self._begin_tx(plug, tag, remote, remote_start_id)

    def _begin_tx(self, plug: Plug, tag: str, remote: bool, remote_start_id: int | None = None) -> Tx:
        self._apply(plug, Ev.START)
        self._tx_ids += 1
        cid = plug.model.connector_id
        tx = Tx(self._tx_ids, cid, tag, plug.model.meter_wh, self.now, remote, remote_start_id=remote_start_id)
        tx.station_tx_id = f"{self.id[-20:]}-{self._tx_ids}"
        plug.tx = plug.last_tx = tx
        self.trace.write(
            self.id,
            "tx",
            connector=cid,
            event="start",
            local_id=tx.local_id,
            tag=tag,
            remote=remote,
            meter=tx.meter_start,
            # 2.0.1: the station's own id, known from the start (its events name it, answered or not)
            **({"station_tx_id": tx.station_tx_id} if self.wire.version.name != "1.6" else {}),
        )
        facts = self._facts(tx)
        self.link.send(
            self.wire.start_action,
            self.wire.start(facts, tx.meter_start, self.iso(), self._sample(plug, "Transaction.Begin")),
            transactional=True,
            on_done=lambda res: self._started(plug, tx, facts, res),
        )
        self._report(plug)
        tx.tasks.spawn(self._meter, plug, tx)
        for name in ("reboot", "disconnect_mid_session"):
            firing = self.book.decide(name, cid, self.now)
            if firing is not None:
                tx.tasks.spawn(self._fire_during, firing)
        return tx

    def _facts(self, tx: Tx) -> TxFacts:
        """What an event of `tx` says about it, numbered and dated offline or not as it happens now."""
        offline = not self.link.online.is_set()
        facts = TxFacts(tx.connector_id, tx.id_tag, tx.station_tx_id, tx.seq, offline, tx.remote_start_id)
        tx.seq += 1
        return facts

    def _sample(self, plug: Plug, context: str) -> Sample:
        plug.model.advance(self.now)
        return Sample(self.iso(), plug.model.meter_wh, int(plug.model.power_w), context)

    def _started(self, plug: Plug, tx: Tx, facts: TxFacts, res: dict[str, Any] | None) -> None:
        if res is None:
            self.trace.write(self.id, "tx", connector=tx.connector_id, event="start_lost", local_id=tx.local_id)
            return
        tx.transaction_id = self.wire.started_id(facts, res)
        tx.auth_status = self.wire.start_auth(res)
        tx.answered.set()
        self.trace.write(
            self.id,
            "tx",
            connector=tx.connector_id,
            event="answered",
            local_id=tx.local_id,
            transaction_id=tx.transaction_id,
            auth=tx.auth_status,
        )
        if tx.auth_status != "Accepted" and plug.tx is tx and self.config.bool("StopTransactionOnInvalidId"):
            self.tasks.spawn(self._stop_if_running, tx.connector_id, tx, "DeAuthorized")

    def _meter(self, plug: Plug, tx: Tx) -> None:
        """MeterValues every MeterValueSampleInterval; SuspendedEV when the car is full."""
        model = plug.model
        interval = self.config.int("MeterValueSampleInterval")
        next_sample = self.now + interval if interval > 0 else math.inf
        while True:
            now = self.now
            if model.advance(now) and model.state is State.CHARGING:
                self._apply(plug, Ev.CAR_FULL)
                self._report(plug)
            if now >= next_sample - 1e-6:
                self.link.send(
                    self.wire.sample_action, self._meter_values(plug, tx, "Sample.Periodic"), transactional=True
                )
                interval = self.config.int("MeterValueSampleInterval")
                next_sample = now + interval if interval > 0 else math.inf
            full_in = model.seconds_until_full()
            wake = min(next_sample, now + full_in if full_in is not None else math.inf, now + 3600.0)
            gevent.sleep(max(0.001, wake - now))

    def _meter_values(self, plug: Plug, tx: Tx | None, context: str) -> Callable[[], dict[str, Any]]:
        """A sample taken now; worded when it goes out (a 1.6 transactionId may have come meanwhile)."""
        sample = self._sample(plug, context)
        facts = self._facts(tx) if tx is not None else None
        wire, cid = self.wire, plug.model.connector_id
        return lambda: wire.sample(cid, sample, facts, tx.transaction_id if tx is not None else None)

    def _end_tx(self, plug: Plug, reason: str):
        """The transaction ends (the caller applies STOP or UNPLUG): StopTransaction, or a fault."""
        tx = plug.tx
        assert tx is not None
        plug.tx = None
        tx.tasks.kill(block=False)
        plug.model.advance(self.now)
        meter_stop = plug.model.meter_wh
        cid = plug.model.connector_id
        self.trace.write(
            self.id,
            "tx",
            connector=cid,
            event="stop",
            local_id=tx.local_id,
            reason=reason,
            meter=meter_stop,
            energy_wh=meter_stop - tx.meter_start,
        )
        dropped = self.book.decide("drop_stop_transaction", cid, self.now)
        stuck = self.book.decide("stuck_status", cid, self.now)
        item = None
        if dropped is not None:
            self._fired(dropped, plug)
            plug.hidden = frozenset({"Finishing"} if dropped.param("available") else {"Finishing", "Available"})
        else:
            facts, sample = self._facts(tx), Sample(self.iso(), meter_stop, 0, "Transaction.End")
            wire = self.wire
            item = self.link.send(
                wire.stop_action,
                lambda: wire.stop(facts, tx.transaction_id, reason, meter_stop, sample),
                transactional=True,
            )
        if stuck is not None:
            self._fired(stuck, plug)
            plug.stuck = stuck.param("status")
        return item

    def _after_transaction(self, plug: Plug) -> None:
        if plug.pending_operative is not None and plug.tx is None:
            plug.model.operative = plug.pending_operative
            plug.pending_operative = None

    def stop(self, connector_id: int, reason: str = "Local") -> None:
        """End the running transaction; the cable stays in (Finishing)."""
        plug = self._plug(connector_id)
        if plug.tx is None:
            raise TransitionError(f"{self.id}/{connector_id}: no transaction to stop")
        self._end_tx(plug, reason)
        self._apply(plug, Ev.STOP)
        self._after_transaction(plug)
        self._report(plug)

    def unplug(self, connector_id: int) -> None:
        """The car leaves; a running transaction ends with EVDisconnected."""
        plug = self._plug(connector_id)
        if plug.tx is not None:
            self._end_tx(plug, "EVDisconnected")
        self._apply(plug, Ev.UNPLUG)
        self._after_transaction(plug)
        self._report(plug)

    def _stop_if_running(self, connector_id: int, tx: Tx, reason: str) -> None:
        if self.plugs[connector_id].tx is tx:
            self.stop(connector_id, reason)

    # --------------------------------------------------------------- faults
    def _fired(self, firing: Firing, plug: Plug | None = None) -> None:
        self.trace.write(
            self.id,
            "fault",
            fault=firing.name,
            connector=firing.connector,
            index=firing.index,
            params=dict(firing.spec.params),
        )

    def _fire_at(self, firing: Firing) -> None:
        """Timed faults count from this charge point's start (the simulator's from the fleet's)."""
        gevent.sleep(max(0.0, self.started_at + (firing.at or 0.0) - self.now))
        self._fire(firing)

    def _fire_during(self, firing: Firing) -> None:
        gevent.sleep(firing.at or 0.0)
        self.tasks.spawn(self._fire, firing)  # outside the transaction's tasks: a reboot kills those

    def _fire(self, firing: Firing) -> None:
        name = firing.name
        plug = self.plugs.get(firing.connector) if firing.connector is not None else None
        if name == "silent_connector" and plug is not None:
            self._fired(firing, plug)
            plug.silent = bool(firing.param("ignore_trigger"))
        elif name == "heartbeat_stop":
            self._fired(firing)
            self._mute_answers = not firing.param("answer_calls")
            self.link.mute()
        elif name == "reboot":
            self._fired(firing)
            self.reboot(delay=firing.param("boot_delay"))
        elif name == "disconnect_mid_session":
            self._fired(firing)
            self.link.cut(offline_for=firing.param("back_after"), discard_on_reconnect=not firing.param("replay"))

    def reboot(self, *, delay: float = 5.0, lose_state: bool = True) -> None:
        """Power-cycle: cut the link, BootNotification after `delay` s; lose_state forgets transactions and queue."""
        self._mute_answers = False
        self.link.cut(offline_for=delay, reboot=True, lose_queue=lose_state)
        for plug in self.plugs.values():
            if plug.tx is not None:
                plug.tx.tasks.kill(block=False)
                self.trace.write(
                    self.id, "tx", connector=plug.model.connector_id, event="lost", local_id=plug.tx.local_id
                )
                plug.tx = None
            if plug.model.can(Ev.POWER_LOSS):
                self._apply(plug, Ev.POWER_LOSS)
            plug.hidden = frozenset()
            plug.last_sent = None
            self._after_transaction(plug)

    # ------------------------------------------------ answers to the CSMS
    def answer(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        """The answer to one CSMS request (runs in its own greenlet; may sleep, may never answer)."""
        if self.link.muted and self._mute_answers:
            raise NoAnswer
        slow = self.book.decide("slow_responses", None, self.now)
        if slow is not None:
            self._fired(slow)
            gevent.sleep(self.rng.uniform(slow.param("min"), slow.param("max"), "slow", slow.index))
        if self.wire.version.name != "1.6":  # an OCPP 2.0.1 station: its own requests
            return self._answer_201(action, p)
        if action == "RemoteStartTransaction":
            return {"status": self.remote_start(p["idTag"], p.get("connectorId"))}
        if action == "RemoteStopTransaction":
            return {"status": self.remote_stop(p["transactionId"])}
        if action == "UnlockConnector":
            return {"status": self.unlock(p["connectorId"])}
        if action == "TriggerMessage":
            return {"status": self.trigger(p["requestedMessage"], p.get("connectorId"))}
        if action == "ChangeAvailability":
            return {"status": self.change_availability(p["connectorId"], p["type"])}
        if action == "Reset":
            self.after_answer(self._reset, p["type"])
            return {"status": "Accepted"}
        if action == "GetConfiguration":
            known, unknown = self.config.report(p.get("key"))
            return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}
        if action == "ChangeConfiguration":
            return {"status": self.config.change(p["key"], p["value"])}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}  # Core profile: no implementation for that vendor
        raise NotImplementedCall(action)

    def _answer_201(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        """OCPP 2.0.1's requests (EVSE ids are connector ids here), as simulator/answers.py:Answers201 answers."""
        if action == "RequestStartTransaction":
            evse = p.get("evseId")
            return {"status": self.remote_start(p["idToken"]["idToken"], evse, p.get("remoteStartId"))}
        if action == "RequestStopTransaction":
            return {"status": self.remote_stop(p["transactionId"])}
        if action == "UnlockConnector":
            status = self.unlock(p["evseId"]) if p.get("connectorId") == 1 else "UnknownConnector"
            if status == "NotSupported":  # no such UnlockStatus in 2.0.1: it says so with a CallError
                raise NotImplementedCall(action)
            return {"status": status}
        if action == "TriggerMessage":
            message = "MeterValues" if p["requestedMessage"] == "TransactionEvent" else p["requestedMessage"]
            return {"status": self.trigger(message, (p.get("evse") or {}).get("id"))}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        if action == "GetTransactionStatus":
            tx_id = p.get("transactionId")
            out: dict[str, Any] = {"messagesInQueue": self.link.queued > 0}  # any transaction's, not only this one's
            if tx_id is not None:
                out["ongoingIndicator"] = any(
                    plug.tx is not None and plug.tx.station_tx_id == tx_id for plug in self.plugs.values()
                )
            return out
        if action == "ChangeAvailability":
            evse = (p.get("evse") or {}).get("id", 0)
            return {"status": self.change_availability(evse, p["operationalStatus"])}
        if action == "Reset":
            self.after_answer(self._reset, "Hard" if p.get("type") == "Immediate" else "Soft")
            return {"status": "Accepted"}
        if action in ("GetVariables", "SetVariables"):
            return self._variables(action, p)
        raise NotImplementedCall(action)

    def _variables(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in p.get("getVariableData" if action == "GetVariables" else "setVariableData") or ():
            names = {"component": {"name": item["component"]["name"]}, "variable": {"name": item["variable"]["name"]}}
            key = VARIABLES.get((item["component"]["name"], item["variable"]["name"]))
            if action == "GetVariables":
                value = None if key is None else self.config.get(key)
                extra = {"attributeValue": value} if value is not None else {}
                results.append({"attributeStatus": "Accepted" if extra else "UnknownVariable", **names, **extra})
            else:
                status = "UnknownVariable" if key is None else self.config.change(key, str(item["attributeValue"]))
                results.append(
                    {"attributeStatus": {"NotSupported": "NotSupportedAttributeType"}.get(status, status), **names}
                )
        return {"getVariableResult" if action == "GetVariables" else "setVariableResult": results}

    def after_answer(self, fn: Callable[..., Any], *args: Any) -> None:
        def later() -> None:
            gevent.sleep(ANSWER_FIRST)
            try:
                fn(*args)
            except TransitionError as exc:  # the car moved in between: a race, not a bug
                self.trace.write(self.id, "skipped", what=getattr(fn, "__name__", "?"), why=str(exc))

        self.tasks.spawn(later)

    def remote_start(self, id_tag: str, connector_id: int | None, remote_start_id: int | None = None) -> str:
        if not self.driving:
            return self._reject_remote(connector_id, id_tag, "the traffic is over: nobody is at the car")
        if connector_id is None:
            takers = [p for p in self.plugs.values() if not self._refuses_remote(p)]
            unclaimed = [p for p in takers if p.remote_claim is None]
            plug = (unclaimed or takers or [None])[0]
            if plug is None:
                return self._reject_remote(None, id_tag, "no connector can take a remote start")
        else:
            plug = self.plugs.get(connector_id)
            if plug is None:
                return self._reject_remote(connector_id, id_tag, "no such connector")
        cid = plug.model.connector_id
        if why := self._refuses_remote(plug):
            return self._reject_remote(cid, id_tag, why)
        if plug.remote_claim is not None:
            return self._reject_remote(cid, id_tag, "connector already claimed by a remote start")
        rejected = self.book.decide("reject_remote_start", cid, self.now)
        if rejected is not None:
            self._fired(rejected, plug)
            return "Rejected"
        ghost = self.book.decide("accept_remote_start_never_start", cid, self.now)
        if ghost is not None:
            self._fired(ghost, plug)
            return "Accepted"
        self._remote_starts += 1
        plug.remote_claim = self._remote_starts
        k = self._remote_starts
        plug.visit = self.visits.spawn(self._remote_session, cid, id_tag, k, remote_start_id)
        return "Accepted"

    def _reject_remote(self, connector_id: int | None, tag: str, why: str) -> str:
        self.trace.write(self.id, "tx", connector=connector_id, event="remote_start_rejected", tag=tag, why=why)
        return "Rejected"

    def _refuses_remote(self, plug: Plug) -> str:
        model = plug.model
        if not (model.operative and self.operative):
            return "connector inoperative"
        if plug.tx is not None:
            return "a transaction is running"
        if model.state not in (State.UNPLUGGED, State.PLUGGED):
            return f"connector is {model.state.value}"
        if plug.visit is not None and not plug.visit.dead and plug.remote_claim is None:
            return "a driver is at the connector"
        return ""

    def _remote_session(self, connector_id: int, tag: str, k: int, remote_start_id: int | None = None) -> None:
        """The person who pressed start in the app is at the car: plug in, start, and leave later."""
        gevent.sleep(ANSWER_FIRST)
        plug = self.plugs[connector_id]
        try:
            if plug.model.state is State.UNPLUGGED:
                car = session_plan(self.rng.child("remote"), self.driver, self.group, connector_id, k).car
                self.plug_in(connector_id, car)
            tx = self.start_by_tag(connector_id, tag, remote=True, remote_start_id=remote_start_id)
        except TransitionError as exc:
            self.trace.write(self.id, "skipped", what="remote_start", connector=connector_id, tag=tag, why=str(exc))
            return
        finally:
            if plug.remote_claim == k:
                plug.remote_claim = None
        visit = plug.visits
        if tx is None:
            return
        stay = self.rng.uniform(*self.driver.remote_session, "remote", connector_id, k)
        gevent.sleep(stay)
        if plug.tx is tx:
            self.stop(connector_id, "Local")
            gevent.sleep(self.rng.uniform(*self.driver.linger, "remote", connector_id, k, "linger"))
        if plug.visits == visit and plug.model.can(Ev.UNPLUG) and plug.tx is None:
            self.unplug(connector_id)

    def remote_stop(self, transaction_id: int | str) -> str:
        for plug in self.plugs.values():
            if plug.tx is not None and transaction_id in (plug.tx.transaction_id, plug.tx.station_tx_id):
                self.after_answer(self._stop_if_running, plug.model.connector_id, plug.tx, "Remote")
                return "Accepted"
        return "Rejected"

    def unlock(self, connector_id: int) -> str:
        plug = self.plugs.get(connector_id)
        if plug is None:
            return self.wire.unknown_connector
        for name, answer in (
            ("unlock_no_answer", None),
            ("unlock_not_supported", "NotSupported"),
            ("unlock_failed", "UnlockFailed"),
        ):
            firing = self.book.decide(name, connector_id, self.now)
            if firing is not None:
                self._fired(firing, plug)
                if answer is None:
                    raise NoAnswer
                return answer
        if plug.tx is not None and not self.wire.unlock_ends_transaction:
            return "OngoingAuthorizedTransaction"  # 2.0.1 (F05): the cable stays locked while it charges
        if plug.tx is not None:
            # 1.6: finish the transaction first (reason UnlockCommand), then unlock.
            item = self._end_tx(plug, "UnlockCommand")
            self._apply(plug, Ev.STOP)
            self._report(plug)
            if item is not None and self.link.online.is_set():
                item.done.wait(self.call_timeout / 2)
        if plug.model.can(Ev.UNPLUG):
            self._apply(plug, Ev.UNPLUG)  # the cable is released and taken out
            self._after_transaction(plug)
            self.after_answer(self._report, plug)
        return "Unlocked"

    def trigger(self, message: str, connector_id: int | None) -> str:
        if connector_id not in (None, 0) and connector_id not in self.plugs:
            return "Rejected"
        if message == "StatusNotification":
            self.after_answer(self._triggered_status, connector_id)
        elif message in ("Heartbeat", "BootNotification"):
            payload = self.link.boot_payload if message == "BootNotification" else {}
            self.after_answer(self.link.request, message, payload)
        elif message == "MeterValues":
            self.after_answer(self._triggered_meter, connector_id)
        else:
            return "NotImplemented"
        return "Accepted"

    def _triggered_status(self, connector_id: int | None) -> None:
        if connector_id in (None, 0):
            self._send_status(0, "Available" if self.operative else "Unavailable", None)
        for cid, plug in self.plugs.items():
            if connector_id in (None, cid):
                self._report(plug, resend=True, trigger=True)

    def _triggered_meter(self, connector_id: int | None) -> None:
        for cid, plug in self.plugs.items():
            if connector_id in (None, 0, cid):
                action = self.wire.sample_action if plug.tx is not None else "MeterValues"
                self.link.send(action, self._meter_values(plug, plug.tx, "Trigger"), transactional=plug.tx is not None)

    def change_availability(self, connector_id: int, kind: str) -> str:
        operative = kind == "Operative"
        if connector_id == 0:
            targets = list(self.plugs.values())
            self.operative = operative
        elif connector_id in self.plugs:
            targets = [self.plugs[connector_id]]
        else:
            return "Rejected"
        scheduled = False
        for plug in targets:
            if plug.tx is not None:
                plug.pending_operative = operative
                scheduled = True
            else:
                plug.model.operative = operative
        self.after_answer(self._availability_changed, connector_id, targets)
        return "Scheduled" if scheduled else "Accepted"

    def _availability_changed(self, connector_id: int, targets: list[Plug]) -> None:
        if connector_id == 0:
            self._send_status(0, "Available" if self.operative else "Unavailable", None)
        for plug in targets:
            self._report(plug)

    def _reset(self, kind: str) -> None:
        """Stop every transaction, flush, close in order, and boot again (a Reset is an orderly restart)."""
        for plug in self.plugs.values():
            if plug.tx is not None:
                self._end_tx(plug, f"{kind}Reset")
                self._apply(plug, Ev.STOP)
                self._report(plug)
        if self.link.online.is_set():
            self.link.flush(5)
        self.reboot(delay=2.0, lose_state=False)
