"""A simulated charge point (OCPP 1.6J or 2.0.1): the trio shell around `model.py` and `faults.py`.

A charge point owns its connectors (`model.Connector` plus what the CSMS was
told about each), a `Link` (connection, boot, heartbeats, ordered outbox), its
faults, and per transaction a task for meter values and timed faults. Physical
changes go through `_apply`; what the CSMS is told goes through `_report`,
which is where the status faults bite; CSMS requests arrive via `answers.py`.
How each message is worded in the charge point's OCPP version is `wire.py`'s business.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from .answers import Answers, Answers201
from .clock import SimClock
from .configstore import ConfigStore
from .driver import drive
from .errors import TransitionError
from .faults import FaultBook, Firing
from .fleetspec import DriverSpec, FleetSpec, GroupSpec, SessionPlan, draw_car
from .identity import Identity
from .link import Link, Outgoing
from .model import Car, Connector, Event, State, Transition
from .rng import Rng
from .stats import Stats
from .trace import TraceWriter
from .truth import ChargePointTruth, ConnectorTruth, FiredFault
from .wire import Sample, TxFacts, wire_for

__all__ = ["ChargePoint", "Transaction"]

ANSWER_FIRST = 0.01  # s: real chargers answer a request before acting on it


@dataclass(eq=False)
class Transaction:
    local_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: float
    remote: bool = False
    # 1.6: given by the CSMS in the StartTransaction answer; 2.0.1: the station's own, once the CSMS acknowledged it
    transaction_id: int | str | None = None
    station_tx_id: str = ""  # 2.0.1: the station names its transactions
    remote_start_id: int | None = None  # 2.0.1: the RequestStartTransaction it answers
    seq: int = 0  # 2.0.1: the next event's seqNo
    gap_every: int = 0  # seq_no_gaps: skip a seqNo after every this many events (0: never)
    names_evse: bool = True  # no_evse: False
    sent: list[Callable[[], dict[str, Any] | None]] = field(default_factory=list)  # its meter messages, in order
    auth_status: str | None = None
    answered: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # meter loop + timed faults
    register_start: float = 0.0  # the physical register at meter_start (differs once a meter was replaced)
    hold_until: float | None = None  # buffered_meter_values: periodic samples are held back until then
    held: list[Callable[[], dict[str, Any]]] = field(default_factory=list)


class SimConnector:
    """One connector as the shell sees it: the physical model plus what the CSMS was told."""

    __slots__ = (
        "model",
        "tx",
        "last_reported",
        "last_sent",
        "last_real",
        "hidden",
        "stuck",
        "silent",
        "pending_operative",
        "faults",
        "visits",
        "changed",
        "last_tx",
        "remote_claim",
        "meter_offset",
    )

    def __init__(self, model: Connector) -> None:
        self.model = model
        self.tx: Transaction | None = None
        self.last_tx: Transaction | None = None
        self.last_reported: str | None = None  # last status the CSMS accepted
        self.last_sent: str | None = None  # last status handed to the link (dedupe)
        self.last_real: str | None = None  # last status we meant to send (suppressed or not)
        self.hidden: frozenset[str] = frozenset()  # statuses drop_stop_transaction swallows
        self.stuck: str | None = None  # stuck_status: the only status ever reported
        self.silent: bool | None = None  # silent_connector; True: also ignores TriggerMessage
        self.pending_operative: bool | None = None  # ChangeAvailability Scheduled
        self.faults: list[FiredFault] = []
        self.visits = 0  # cars plugged in so far (names the seeded car draws)
        self.changed = trio.Event()
        # The remote start (its number) that has been Accepted and not yet started or given up:
        # it holds the connector, so a second RemoteStartTransaction cannot be Accepted as well.
        self.remote_claim: int | None = None
        # meter_replaced: the meter shows the physical register minus this (0 until a meter is replaced).
        self.meter_offset = 0.0

    @property
    def meter_wh(self) -> int:
        """What the connector's meter shows now: whole Wh."""
        return int(self.model.register_wh - self.meter_offset)

    def wire_status(self, *, trigger: bool = False) -> tuple[str | None, str]:
        """(status to send or None, why not): the reporting faults in one place."""
        real = self.stuck or self.model.status
        if self.silent is not None and not (trigger and self.silent is False):
            return None, "silent_connector"
        if real in self.hidden and not trigger:  # a TriggerMessage is answered with the real status
            return None, "drop_stop_transaction"
        self.hidden = frozenset()
        return real, ""


class ChargePoint:
    """One simulated charge point; `await nursery.start(cp.run)` brings it to life."""

    def __init__(
        self,
        cp_id: str,
        *,
        url: str,
        group: GroupSpec,
        spec: FleetSpec,
        rng: Rng,
        book: FaultBook,
        identity: Identity,
        trace: TraceWriter,
        stats: Stats,
        plans: dict[int, Iterable[SessionPlan]] | None = None,
        password: str | None = None,
        ssl_context: Any = None,
    ) -> None:
        self.id = cp_id
        self.url = url
        self.group = group
        self.spec = spec
        self.driver: DriverSpec | None = spec.driver
        self.rng = rng
        self.book = book
        self.identity = identity
        self.trace = trace
        self.stats = stats
        self.plans = plans
        self.wire = wire_for(group.ocpp)
        self.config = ConfigStore({**group.config, "NumberOfConnectors": str(group.connectors)})
        self.connectors = {
            cid: SimConnector(Connector(cid, register_wh=float(round(rng.uniform(0, 50_000, "register", cid)))))
            for cid in range(1, group.connectors + 1)
        }
        self.operative = True
        self.faults: list[FiredFault] = []
        self.clock: SimClock | None = None
        self.link = Link(
            cp_id,
            url,
            identity=identity,
            config=self.config,
            call_timeout=spec.call_timeout,
            boot_on_reconnect=spec.boot_on_reconnect,
            rng=rng,
            trace=trace,
            stats=stats,
            now=lambda: self.now,
            handlers=lambda: (Answers201 if self.wire.version.name == "2.0.1" else Answers)(self),
            on_up=self._report_all,
            password=password,
            ssl_context=ssl_context,
            wire=self.wire,
        )
        self._nursery: trio.Nursery | None = None
        self._mute_answers = False
        self._tx_ids = 0
        self._station_tx_n = 0  # names the station's transaction ids (reuse_transaction_ids: from 0 after a reboot)
        self._reuse_tx_ids = False
        self._remote_starts = 0
        self._driving: list[trio.CancelScope] | None = []  # the session drivers; None once stopped

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, clock: SimClock, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and live until cancelled: supervisor, timed faults, session drivers."""
        self.clock = clock
        self.trace.write(self.id, "identity", **dataclasses.asdict(self.identity))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.link.run)
            for firing in self.book.timed():
                nursery.start_soon(self._fire_at, firing)
            for cid, plans in (self.plans or {}).items():
                nursery.start_soon(self._drive, cid, plans)
            task_status.started()

    async def _drive(self, connector_id: int, plans: Iterable[SessionPlan]) -> None:
        # `drive` runs at once, without a checkpoint first: the trace order stays that of one task per driver.
        if self._driving is None:
            return
        scope = trio.CancelScope()
        self._driving.append(scope)
        with scope:
            await drive(self, connector_id, plans)

    async def stop_driving(self) -> None:
        """Traffic ends (night falls): no new cars; each car here finishes and leaves as its driver would.

        The stops go through the usual path, so a fault that fires at a stop
        (a dropped StopTransaction, a stuck status) still fires.
        """
        for scope in self._driving or ():
            scope.cancel()
        self._driving = None
        for cid, plug in self.connectors.items():
            if plug.tx is not None:
                await self.stop(cid, "Local")
            if plug.model.can(Event.UNPLUG):
                await self.unplug(cid)

    @property
    def now(self) -> float:
        assert self.clock is not None, "the charge point is not running"
        return self.clock.now()

    def iso(self) -> str:
        """Now, as the wall-clock timestamp OCPP messages carry."""
        assert self.clock is not None, "the charge point is not running"
        return self.clock.iso()

    @property
    def online(self) -> bool:
        """Connected and booted: Calls go out now."""
        return self.link.online

    async def wait_online(self) -> None:
        """Until connected and booted (returns at once if so)."""
        await self.link.wait_online()

    async def flush(self) -> None:
        """Until everything queued so far has been answered (or dropped)."""
        await self.link.flush()

    # --------------------------------------------------------------- sending
    def _report(self, plug: SimConnector, *, resend: bool = False, trigger: bool = False) -> None:
        """Tell the CSMS the connector's status, unless a fault says otherwise."""
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

    def _send_status(self, connector_id: int, status: str, plug: SimConnector | None) -> None:
        if connector_id == 0 and not self.wire.says_station_status:
            return
        payload = self.wire.status(connector_id, status, self.iso())
        online = self.online and not self.link.muted

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
        for plug in self.connectors.values():
            self._report(plug, resend=booted)

    # ------------------------------------------------------- physical actions
    def _connector(self, connector_id: int) -> SimConnector:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise TransitionError(
                f"{self.id} has no connector {connector_id} (it has 1..{len(self.connectors)})"
            ) from None

    def _apply(self, plug: SimConnector, event: Event, car: Car | None = None) -> Transition:
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
        plug.changed.set()
        plug.changed = trio.Event()
        return change

    async def plug_in(self, connector_id: int, car: Car | None = None) -> None:
        """A car is plugged in (Preparing). Without `car`, one is drawn from the seed."""
        plug = self._connector(connector_id)
        if car is None:
            car = draw_car(self.rng, self.group, "car", connector_id, plug.visits)
        plug.visits += 1
        self._apply(plug, Event.PLUG, car)
        self._report(plug)
        await trio.lowlevel.checkpoint()

    async def start_by_tag(
        self,
        connector_id: int,
        tag: str,
        *,
        remote: bool = False,
        wait: bool = True,
        remote_start_id: int | None = None,
    ) -> Transaction | None:
        """Present `tag` (Authorize unless remote), start a transaction; plugs a car in if none.

        Returns the transaction, or None if the tag was refused. With `wait`, returns
        after the CSMS answered StartTransaction (when online).
        """
        plug = self._connector(connector_id)
        if plug.model.state is State.UNPLUGGED:
            await self.plug_in(connector_id)
        if not plug.model.can(Event.START):
            raise TransitionError(f"{self.id}/{connector_id}: cannot start in state {plug.model.state.value}")
        if not remote or self.config.bool("AuthorizeRemoteTxRequests"):
            answer = await self.link.request("Authorize", self.wire.authorize(tag))
            if answer is None and not (self.online or self.config.bool("LocalAuthorizeOffline")):
                return None
            if answer is not None and (auth := self.wire.auth_status(answer)) != "Accepted":
                self.trace.write(self.id, "tx", connector=connector_id, event="refused", tag=tag, auth=auth)
                return None
            if not plug.model.can(Event.START):  # the car left while we asked
                return None
        tx = self._begin_tx(plug, tag, remote, remote_start_id)
        if wait and self.online:
            with trio.move_on_after(self.spec.call_timeout):
                await tx.answered.wait()
        return tx

    def _begin_tx(self, plug: SimConnector, tag: str, remote: bool, remote_start_id: int | None = None) -> Transaction:
        self._apply(plug, Event.START)
        self._tx_ids += 1
        cid = plug.model.connector_id
        tx = Transaction(self._tx_ids, cid, tag, plug.meter_wh, self.now, remote, remote_start_id=remote_start_id)
        self._station_tx_n += 1
        n = self._station_tx_n
        tx.station_tx_id = str(uuid.UUID(int=self.rng.bits64("txid", n) << 64 | n, version=4))
        gaps, no_evse = (self.book.decide(name, cid, self.now) for name in ("seq_no_gaps", "no_evse"))
        for firing in (gaps, no_evse):
            if firing is not None and self.wire.version.name != "1.6":
                self._fired(firing, plug)
        if gaps is not None:
            tx.gap_every = max(1, int(gaps.param("every")))
        tx.names_evse = no_evse is None
        tx.register_start = tx.meter_start + plug.meter_offset
        plug.tx = plug.last_tx = tx
        self.stats.sessions += 1
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
            owner=tx,
        )
        self._report(plug)
        firings = [
            f
            for f in (
                self.book.decide(n, cid, self.now)
                for n in ("reboot", "disconnect_mid_session", "buffered_meter_values")
            )
            if f
        ]
        assert self._nursery is not None
        self._nursery.start_soon(self._transaction_tasks, plug, tx, firings)
        return tx

    def _facts(self, tx: Transaction) -> TxFacts:
        """What an event of `tx` says about it, numbered (seqNo) and dated offline or not as it happens now."""
        facts = TxFacts(
            tx.connector_id, tx.id_tag, tx.station_tx_id, tx.seq, not self.online, tx.remote_start_id, tx.names_evse
        )
        tx.seq += 1
        if tx.gap_every and facts.seq_no % tx.gap_every == tx.gap_every - 1:
            tx.seq += 1  # seq_no_gaps: a number never sent
        return facts

    def _sample(self, plug: SimConnector, context: str) -> Sample:
        plug.model.advance(self.now)
        return Sample(self.iso(), plug.meter_wh, int(plug.model.power_w), context)

    def _started(self, plug: SimConnector, tx: Transaction, facts: TxFacts, res: dict[str, Any] | None) -> None:
        if res is None:  # lost (reboot, replay=false) or refused after every attempt
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
            assert self._nursery is not None
            self._nursery.start_soon(self._stop_if_running, tx.connector_id, tx, "DeAuthorized")

    async def _transaction_tasks(self, plug: SimConnector, tx: Transaction, firings: list[Firing]) -> None:
        with tx.scope:
            if not firings:  # the usual case: one task, no nursery (2,000 charge points add up)
                await self._meter(plug, tx)
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._meter, plug, tx)
                for firing in firings:
                    nursery.start_soon(self._fire_during, firing, plug, tx)

    async def _fire_during(self, firing: Firing, plug: SimConnector, tx: Transaction) -> None:
        await trio.sleep(firing.at or 0.0)
        if firing.name == "buffered_meter_values":  # acts on this transaction's samples only
            self._fired(firing, plug)
            tx.hold_until = self.now + firing.param("hold")
            return
        assert self._nursery is not None
        # Outside the transaction's scope: a reboot cancels that scope.
        self._nursery.start_soon(self._fire, firing)

    async def _meter(self, plug: SimConnector, tx: Transaction) -> None:
        """MeterValues every MeterValueSampleInterval; SuspendedEV when the car is full."""
        model = plug.model
        interval = self.config.int("MeterValueSampleInterval")
        next_sample = self.now + interval if interval > 0 else math.inf
        while True:
            now = self.now
            if model.advance(now) and model.state is State.CHARGING:
                self._apply(plug, Event.CAR_FULL)
                self._report(plug)
            if now >= next_sample - 1e-6:
                self._send_sample(tx, self._meter_values(plug, tx, "Sample.Periodic"))
                interval = self.config.int("MeterValueSampleInterval")
                next_sample = now + interval if interval > 0 else math.inf
            full_in = model.seconds_until_full()
            wake = min(next_sample, now + full_in if full_in is not None else math.inf)
            await trio.sleep(max(0.001, wake - now))  # never a zero sleep: virtual time must move

    def _send_sample(self, tx: Transaction, build: Callable[[], dict[str, Any]]) -> None:
        """A periodic sample goes out, unless buffered_meter_values holds it back: then the first one
        after the hold goes first and the held (older-stamped) ones follow it."""
        if tx.hold_until is not None:
            if self.now < tx.hold_until:
                tx.held.append(build)
                return
            tx.hold_until = None
            tx.sent.append(build)
            self.link.send(self.wire.sample_action, build, transactional=True, owner=tx)
            self._release_held(tx)
            return
        tx.sent.append(build)
        self.link.send(self.wire.sample_action, build, transactional=True, owner=tx)

    def _release_held(self, tx: Transaction) -> None:
        for build in tx.held:
            tx.sent.append(build)
            self.link.send(self.wire.sample_action, build, transactional=True, owner=tx)
        tx.held.clear()

    def _meter_values(self, plug: SimConnector, tx: Transaction | None, context: str) -> Callable[[], dict[str, Any]]:
        """A sample taken now; worded when it goes out (a 1.6 transactionId may have come meanwhile)."""
        sample = self._sample(plug, context)
        facts = self._facts(tx) if tx is not None else None
        wire, cid = self.wire, plug.model.connector_id
        return lambda: wire.sample(cid, sample, facts, tx.transaction_id if tx is not None else None)

    def _end_tx(self, plug: SimConnector, reason: str) -> Outgoing | None:
        """The transaction ends (the caller applies STOP or UNPLUG): StopTransaction, or a fault."""
        tx = plug.tx
        assert tx is not None
        plug.tx = None
        tx.scope.cancel()
        tx.hold_until = None
        self._release_held(tx)  # samples it was holding back go out before its StopTransaction
        plug.model.advance(self.now)
        meter_stop = plug.meter_wh
        energy = meter_stop - tx.meter_start  # what the car got, whatever happens to the meter now
        cid = plug.model.connector_id
        self.stats.sessions_done += 1
        self.stats.energy_wh += energy
        dropped = self.book.decide("drop_stop_transaction", cid, self.now)
        stuck = self.book.decide("stuck_status", cid, self.now)
        replaced = self.book.decide("meter_replaced", cid, self.now)
        if replaced is not None:
            self._fired(replaced, plug)
            plug.meter_offset = plug.model.register_wh - replaced.param("register")
            meter_stop = plug.meter_wh
        self.trace.write(
            self.id,
            "tx",
            connector=cid,
            event="stop",
            local_id=tx.local_id,
            reason=reason,
            meter=meter_stop,
            energy_wh=energy,
        )
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
                owner=tx,
            )
        if stuck is not None:
            self._fired(stuck, plug)
            plug.stuck = stuck.param("status")
        again = self.book.decide("replay_after_end", cid, self.now)
        if again is not None and item is not None:
            self._fired(again, plug)
            for build in tx.sent:  # after the end message, in order: nothing new about the transaction
                self.link.send(
                    self.wire.sample_action, lambda b=build, w=self.wire: w.replayed(b()), transactional=True, owner=tx
                )
        return item

    def _after_transaction(self, plug: SimConnector) -> None:
        """A scheduled ChangeAvailability takes effect once the transaction is over."""
        if plug.pending_operative is not None and plug.tx is None:
            plug.model.operative = plug.pending_operative
            plug.pending_operative = None

    async def stop(self, connector_id: int, reason: str = "Local") -> None:
        """End the running transaction; the cable stays in (Finishing)."""
        plug = self._connector(connector_id)
        if plug.tx is None:
            raise TransitionError(f"{self.id}/{connector_id}: no transaction to stop")
        self._end_tx(plug, reason)
        self._apply(plug, Event.STOP)
        self._after_transaction(plug)
        self._report(plug)
        await trio.lowlevel.checkpoint()

    async def unplug(self, connector_id: int) -> None:
        """The car leaves; a running transaction ends with EVDisconnected."""
        plug = self._connector(connector_id)
        if plug.tx is not None:
            self._end_tx(plug, "EVDisconnected")
        self._apply(plug, Event.UNPLUG)
        self._after_transaction(plug)
        self._report(plug)
        await trio.lowlevel.checkpoint()

    # --------------------------------------------------------------- faults
    def _fired(self, firing: Firing, plug: SimConnector | None = None) -> None:
        record = FiredFault(self.now, firing.name, firing.connector, firing.index, dict(firing.spec.params))
        (plug.faults if plug is not None else self.faults).append(record)
        self.stats.faults[firing.name] += 1
        self.trace.write(
            self.id,
            "fault",
            fault=firing.name,
            connector=firing.connector,
            index=firing.index,
            params=dict(firing.spec.params),
        )

    async def _fire_at(self, firing: Firing) -> None:
        assert self.clock is not None
        await self.clock.sleep_until(firing.at or 0.0)
        await self._fire(firing)

    async def _fire(self, firing: Firing) -> None:
        """Timed faults and the moment-into-a-transaction ones."""
        name = firing.name
        plug = self.connectors.get(firing.connector) if firing.connector is not None else None
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
            self.disconnect(back_after=firing.param("back_after"), replay=firing.param("replay"))
        elif name == "slow_replay":
            self._fired(firing)
            self.link.replay_hold = firing.param("hold")
        elif name == "reuse_transaction_ids" and self.wire.version.name != "1.6":
            self._fired(firing)
            self._reuse_tx_ids = True
        await trio.lowlevel.checkpoint()

    def disconnect(self, *, back_after: float, replay: bool = True) -> None:
        """Cut the TCP connection now (no WebSocket close); reconnect after `back_after` s."""
        self.link.cut(offline_for=back_after, discard_on_reconnect=not replay)

    def reboot(self, *, delay: float = 5.0, lose_state: bool = True) -> None:
        """Power-cycle: cut the link, BootNotification after `delay` s.

        lose_state: running transactions and the offline queue are forgotten
        (the reboot fault); a Reset stops its transactions first and keeps them.
        """
        self._mute_answers = False
        self.link.cut(offline_for=delay, reboot=True, lose_queue=lose_state)
        if self._reuse_tx_ids:
            self._station_tx_n = 0  # its transaction ids start again
        for plug in self.connectors.values():
            if plug.tx is not None:
                plug.tx.scope.cancel()
                plug.model.advance(self.now)
                self.trace.write(
                    self.id,
                    "tx",
                    connector=plug.model.connector_id,
                    event="lost",
                    local_id=plug.tx.local_id,
                    energy_wh=int(plug.model.register_wh - plug.tx.register_start),
                )
                self.stats.sessions_done += 1
                plug.tx = None
            if plug.model.can(Event.POWER_LOSS):
                self._apply(plug, Event.POWER_LOSS)
            plug.hidden = frozenset()
            plug.last_sent = None  # the CSMS still believes what it was last told: last_reported stays
            self._after_transaction(plug)

    # ------------------------------------------------ answers to the CSMS
    async def before_answer(self) -> None:
        """Where slow_responses and a hung (heartbeat_stop) charger delay every answer."""
        if self.link.muted and self._mute_answers:
            await trio.sleep_forever()
        slow = self.book.decide("slow_responses", None, self.now)
        if slow is not None:
            self._fired(slow)
            lo, hi = slow.param("min"), slow.param("max")
            await trio.sleep(self.rng.uniform(lo, hi, "slow", slow.index))

    def after_answer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` just after the answer has gone out."""

        async def later() -> None:
            await trio.sleep(ANSWER_FIRST)
            try:
                await fn(*args)
            except TransitionError as exc:  # the car moved in between: a race, not a bug
                self.trace.write(self.id, "skipped", what=getattr(fn, "__name__", "?"), why=str(exc))

        assert self._nursery is not None
        self._nursery.start_soon(later)

    def remote_start(self, id_tag: str, connector_id: int | None, remote_start_id: int | None = None) -> str:
        """Accept and claim a connector for the person at the car, or Rejected (said in the trace)."""
        if connector_id is None:
            takers = [p for p in self.connectors.values() if not self._refuses_remote(p)]
            unclaimed = [p for p in takers if p.remote_claim is None]
            plug = (unclaimed or takers or [None])[0]
            if plug is None:
                return self._reject_remote(None, id_tag, "no connector can take a remote start")
        else:
            plug = self.connectors.get(connector_id)
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
        plug.remote_claim = self._remote_starts  # claimed before the answer goes out
        self.after_answer(self._remote_session, cid, id_tag, self._remote_starts, remote_start_id)
        return "Accepted"

    def _reject_remote(self, connector_id: int | None, tag: str, why: str) -> str:
        self.trace.write(self.id, "tx", connector=connector_id, event="remote_start_rejected", tag=tag, why=why)
        return "Rejected"

    def _refuses_remote(self, plug: SimConnector) -> str:
        """Why `plug` cannot take a remote start now ("" when it can)."""
        model = plug.model
        if not (model.operative and self.operative):
            return "connector inoperative"
        if plug.tx is not None:
            return "a transaction is running"
        if model.state not in (State.UNPLUGGED, State.PLUGGED):
            return f"connector is {model.state.value}"
        return ""

    async def _remote_session(self, connector_id: int, tag: str, k: int, remote_start_id: int | None = None) -> None:
        """The person who pressed start in the app is at the car: plug in, start, and leave later.

        The connector stays claimed by remote start `k` until its transaction has started or it gave up.
        """
        plug = self._connector(connector_id)
        try:
            if why := self._refuses_remote(plug):  # e.g. a local start got there first
                self.trace.write(self.id, "skipped", what="remote_start", connector=connector_id, tag=tag, why=why)
                return
            tx = await self.start_by_tag(connector_id, tag, remote=True, wait=False, remote_start_id=remote_start_id)
        finally:
            if plug.remote_claim == k:
                plug.remote_claim = None
        if tx is None or self.driver is None:
            return
        await trio.sleep(self.rng.uniform(*self.driver.remote_session, "remote", connector_id, k))
        if plug.tx is tx:
            await self.stop(connector_id, "Local")
            await trio.sleep(self.rng.uniform(*self.driver.linger, "remote", connector_id, k, "linger"))
        if plug.model.can(Event.UNPLUG) and plug.tx is None:
            await self.unplug(connector_id)

    def remote_stop(self, transaction_id: int | str) -> str:
        for plug in self.connectors.values():
            if plug.tx is not None and transaction_id in (plug.tx.transaction_id, plug.tx.station_tx_id):
                self.after_answer(self._stop_if_running, plug.model.connector_id, plug.tx, "Remote")
                return "Accepted"
        return "Rejected"

    async def _stop_if_running(self, connector_id: int, tx: Transaction, reason: str) -> None:
        if self.connectors[connector_id].tx is tx:
            await self.stop(connector_id, reason)

    async def unlock(self, connector_id: int) -> str:
        plug = self.connectors.get(connector_id)
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
                    await trio.sleep_forever()
                return answer
        if plug.tx is not None and not self.wire.unlock_ends_transaction:
            return "OngoingAuthorizedTransaction"  # 2.0.1 (F05): the cable stays locked while it charges
        if plug.tx is not None:
            # 1.6: finish the transaction first (reason UnlockCommand), then unlock.
            item = self._end_tx(plug, "UnlockCommand")
            self._apply(plug, Event.STOP)
            self._report(plug)
            if item is not None and self.online:
                with trio.move_on_after(self.spec.call_timeout / 2):
                    await item.done.wait()
        if plug.model.can(Event.UNPLUG):
            self._apply(plug, Event.UNPLUG)  # the cable is released and taken out
            self._after_transaction(plug)
            self.after_answer(self._report_later, plug)
        return "Unlocked"

    async def _report_later(self, plug: SimConnector) -> None:
        self._report(plug)
        await trio.lowlevel.checkpoint()

    def trigger(self, message: str, connector_id: int | None) -> str:
        if connector_id is not None and connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        if message == "StatusNotification":
            self.after_answer(self._triggered_status, connector_id)
        elif message == "Heartbeat":
            self.after_answer(self._triggered_call, "Heartbeat")
        elif message == "BootNotification":
            self.after_answer(self._triggered_call, "BootNotification")
        elif message == "MeterValues":
            self.after_answer(self._triggered_meter, connector_id)
        else:
            return "NotImplemented"
        return "Accepted"

    async def _triggered_status(self, connector_id: int | None) -> None:
        if connector_id in (None, 0):
            self._send_status(0, "Available" if self.operative else "Unavailable", None)
        for cid, plug in self.connectors.items():
            if connector_id in (None, cid):  # connectorId 0 asks for the charge point's own status only
                self._report(plug, resend=True, trigger=True)
        await trio.lowlevel.checkpoint()

    async def _triggered_call(self, action: str) -> None:
        payload = self.wire.boot(self.identity, "Triggered") if action == "BootNotification" else {}
        await self.link.request(action, payload)

    async def _triggered_meter(self, connector_id: int | None) -> None:
        for cid, plug in self.connectors.items():
            if connector_id in (None, 0, cid):
                tx = plug.tx
                action = self.wire.sample_action if tx is not None else "MeterValues"
                self.link.send(action, self._meter_values(plug, tx, "Trigger"), transactional=tx is not None, owner=tx)
        await trio.lowlevel.checkpoint()

    def change_availability(self, connector_id: int, kind: str) -> str:
        operative = kind == "Operative"
        if connector_id == 0:
            targets = list(self.connectors.values())
            self.operative = operative
        elif connector_id in self.connectors:
            targets = [self.connectors[connector_id]]
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

    async def _availability_changed(self, connector_id: int, targets: list[SimConnector]) -> None:
        if connector_id == 0:
            self._send_status(0, "Available" if self.operative else "Unavailable", None)
        for plug in targets:
            self._report(plug)
        await trio.lowlevel.checkpoint()

    def reset(self, kind: str) -> str:
        self.after_answer(self._reset, kind)
        return "Accepted"

    async def _reset(self, kind: str) -> None:
        """Stop every transaction (reason SoftReset/HardReset), reboot once the CSMS has answered
        the StopTransactions and StatusNotifications: a Reset is an orderly restart, so the
        WebSocket is closed with a close frame, unlike a power loss (the reboot fault)."""
        for plug in self.connectors.values():
            if plug.tx is not None:
                self._end_tx(plug, f"{kind}Reset")
                self._apply(plug, Event.STOP)
                self._report(plug)
        if self.online:
            with trio.move_on_after(5):
                await self.link.flush()
        await self.link.close(f"{kind} reset")
        self.link.boot_reason = "RemoteReset"
        self.reboot(delay=2.0, lose_state=False)

    def reset_when_idle(self) -> str:
        """2.0.1 Reset OnIdle: at once when no transaction runs, else Scheduled for when the last one ends."""
        if all(plug.tx is None for plug in self.connectors.values()):
            return self.reset("Soft")
        self.after_answer(self._reset_once_idle)
        return "Scheduled"

    async def _reset_once_idle(self) -> None:
        while busy := [plug for plug in self.connectors.values() if plug.tx is not None]:
            await busy[0].changed.wait()
        await self._reset("Soft")

    def transaction_status(self, transaction_id: str | None) -> tuple[bool | None, bool]:
        """2.0.1 GetTransactionStatus: (is it ongoing here, are messages of it still queued); without an id,
        (None, is any transaction message queued)."""
        if transaction_id is None:
            return None, self.link.queued > 0
        ongoing = any(p.tx is not None and p.tx.station_tx_id == transaction_id for p in self.connectors.values())
        queued = any(getattr(owner, "station_tx_id", None) == transaction_id for owner in self.link.owners())
        return ongoing, queued

    # ----------------------------------------------------------------- truth
    def truth(self) -> ChargePointTruth:
        return ChargePointTruth(
            cp_id=self.id,
            connected=self.link.connected,
            booted=self.link.booted,
            muted=self.link.muted,
            queued=self.link.queued,
            connectors=tuple(self.connector_truth(cid) for cid in self.connectors),
            faults=tuple(self.faults),
        )

    def connector_truth(self, connector_id: int) -> ConnectorTruth:
        plug = self._connector(connector_id)
        model = plug.model
        if self.clock is not None and _inside_trio():
            model.advance(self.now)  # energy up to this moment; after the run, as it was at the end
        tx = plug.tx or plug.last_tx
        return ConnectorTruth(
            cp_id=self.id,
            connector_id=connector_id,
            state=model.state.value,
            operative=model.operative,
            transaction_running=plug.tx is not None,
            transaction_id=plug.tx.transaction_id if plug.tx else None,
            id_tag=plug.tx.id_tag if plug.tx else None,
            session_energy_wh=(model.register_wh - tx.register_start) if tx else 0.0,
            register_wh=model.register_wh,
            reported_status=plug.last_reported,
            faults=tuple(plug.faults),
        )


def _inside_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
