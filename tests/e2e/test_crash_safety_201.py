"""Crash safety for OCPP 2.0.1: SIGKILL `csms serve` while stations send TransactionEvents, lose nothing acknowledged.

The 1.6 test (test_crash_safety.py) drives the simulator's fleet, which speaks 1.6 only. Here a small fleet of
2.0.1 stations of our own, raw OCPP-J frames over `websockets` (asyncio, all in one thread; nothing of ocppj
or trio on the station's side), charges cars with TransactionEvent Started / Updated / Ended against a real
`csms serve`, through a TCP relay of the test's (AnswerGate). The CSMS is SIGKILLed four times and restarted on
the same database and ports, each kill landing somewhere chosen:
- commits held: the test holds the database's write lock first, so events are received, none committed (none
  may have been acknowledged; each must be stored when it is sent again);
- answers held: the relay holds back what the CSMS sends, so events are committed and their answers die with
  it (each is sent again and must be recognised, not stored twice);
- anywhere: wherever the traffic is.
A station does what the spec asks of it: transaction events are queued and delivered in order, one at a time;
one that got no CallResult is sent again, unchanged (same seqNo, timestamp and meter), on the next connection;
events made while it is offline say `offline: true`.

Then every event the CSMS acknowledged must be in the database (`transactions.station_tx_id`): each acknowledged
Started a stored transaction with its meterStart, each acknowledged Ended that transaction closed with its
meterStop, seqNo and reason, one row per station transaction (none stored twice, none superseded), no row the
stations never made. The CSMS's log (one line per applied event, after its commit) says which events in flight at
a kill it had committed. The mutant `transaction_event_acked_before_commit` (tests.support.mutants) must fail
the same checks. About 45 s per database on a 2-core machine; `-s` prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets
from sqlalchemy import select

from tests.support.db import with_db, writes_held
from tests.support.mutants import command
from tests.support.server import CsmsProcess, start_csms

PREFIX = "C201-"
SUBPROTOCOL = "ocpp2.0.1"
ENERGY = "Energy.Active.Import.Register"
CALL_TIMEOUT = 15.0  # longer than a held write lock: a slow answer is not a lost one
# Where a kill lands: with the database's write lock held (events received, none committed: none may have been
# acknowledged), with the CSMS's answers held in the relay (events committed, their answers lost: the resends
# must be recognised, not stored again), or wherever the traffic is.
COMMITS_HELD, ANSWERS_HELD, ANYWHERE = "commits held", "answers held", "anywhere"
KILL_KINDS = (COMMITS_HELD, ANSWERS_HELD, ANYWHERE)
SERVE_ARGS = ["--allow-unknown-chargers", "--max-auto-registered", "1000000"]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- what a station made and what it was told
@dataclass
class TxEvent:
    """One TransactionEvent as its station made it; resent unchanged until a CallResult acknowledges it."""

    station: str
    tx_id: str
    event_type: str  # Started, Updated, Ended
    seq_no: int
    meter_wh: int
    payload: dict[str, Any]
    sends: list[float] = field(default_factory=list)  # time.monotonic() of every send, the first and each resend
    acked_at: float | None = None  # when the CallResult came
    error: str | None = None  # a CallError's code (none expected)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.station, self.tx_id, self.event_type, self.seq_no)


class _ConnectionLost(Exception):
    pass


class RawStation:
    """An OCPP 2.0.1 station with one EVSE: charges car after car and keeps its transaction events queued."""

    def __init__(self, station_id: str, url: str, rng: random.Random) -> None:
        self.id, self.url, self.rng = station_id, url, rng
        self.events: list[TxEvent] = []  # every event it made, in order
        self.queue: deque[TxEvent] = deque()  # not yet acknowledged
        self.notes: deque[tuple[str, dict[str, Any]]] = deque()  # StatusNotifications: sent if online, never queued
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.booted = asyncio.Event()
        self.online = False
        self.driving_done = False
        self.open_tx: str | None = None
        self.meter = rng.randint(0, 50_000)
        self.connects = 0
        self.timeouts = 0  # calls unanswered in CALL_TIMEOUT (a slow CSMS, not a loss: the event is sent again)
        self.errors: list[str] = []  # CallErrors and failures of the station itself: none expected

    # ------------------------------------------------------------ the car side
    async def drive(self) -> None:
        await self.booted.wait()
        n = 0
        while not self.stop.is_set():
            if await self._pause(0.2, 1.0):
                break
            n += 1
            tx = f"{n:04d}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}"
            self.meter += self.rng.randint(0, 50)
            self.open_tx = tx
            self._make(
                "Started", tx, 0, "Authorized", "Transaction.Begin", charging_state="Charging",
                evse={"id": 1, "connectorId": 1}, id_token={"idToken": f"TAG-{self.id}", "type": "ISO14443"},
            )  # fmt: skip
            seq, updates = 1, self.rng.randint(0, 2)
            # Every event after a pause of its own, so that any of the three may be the one in flight at a kill.
            while not await self._pause(0.3, 0.8) and seq <= updates:
                self.meter += self.rng.randint(100, 900)
                self._make("Updated", tx, seq, "MeterValuePeriodic", "Sample.Periodic", charging_state="Charging")
                seq += 1
            self.meter += self.rng.randint(0, 300)
            self._make("Ended", tx, seq, "StopAuthorized", "Transaction.End", stopped_reason="Local")
            self.open_tx = None
        self.driving_done = True

    async def _pause(self, low: float, high: float) -> bool:
        """Sleep a random while; True if told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.rng.uniform(low, high))
        return self.stop.is_set()

    def _make(
        self, event_type: str, tx: str, seq: int, trigger: str, context: str, *, charging_state: str | None = None,
        stopped_reason: str | None = None, evse: dict[str, int] | None = None, id_token: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        at = _now_iso()
        info: dict[str, Any] = {"transactionId": tx}
        if charging_state:
            info["chargingState"] = charging_state
        if stopped_reason:
            info["stoppedReason"] = stopped_reason
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": at,
            "triggerReason": trigger,
            "seqNo": seq,
            "transactionInfo": info,
            "meterValue": [
                {
                    "timestamp": at,
                    "sampledValue": [
                        {"value": self.meter, "context": context, "measurand": ENERGY, "unitOfMeasure": {"unit": "Wh"}}
                    ],
                }
            ],
        }
        if evse:
            payload["evse"] = evse
        if id_token:
            payload["idToken"] = id_token
        if not self.online:
            payload["offline"] = True  # it happened while the CSMS was out of reach
        event = TxEvent(self.id, tx, event_type, seq, self.meter, payload)
        self.events.append(event)
        self.queue.append(event)
        self.wake.set()

    # ------------------------------------------------------------ the wire side
    async def link(self) -> None:
        """Connect, boot once, deliver; on any loss reconnect and deliver what is still unacknowledged."""
        while True:
            try:
                async with websockets.connect(
                    self.url, subprotocols=[SUBPROTOCOL], open_timeout=5, close_timeout=1
                ) as ws:
                    self.connects += 1
                    await self._session(ws)
            except (OSError, TimeoutError, websockets.WebSocketException, _ConnectionLost):
                pass  # the CSMS is down or was killed: try again
            except Exception as exc:  # a bug of this station: surfaced by the test, not hidden by a reconnect
                self.errors.append(f"station failed: {exc!r}")
            finally:
                self.online = False
                self.notes.clear()
            await asyncio.sleep(self.rng.uniform(0.2, 0.5))

    async def _session(self, ws: Any) -> None:
        pending: dict[str, asyncio.Future[list[Any]]] = {}
        reader = asyncio.create_task(self._read(ws, pending))
        try:
            if not self.booted.is_set():
                answer = await self._call(ws, reader, pending, "BootNotification", _boot())
                if answer[0] != 3 or answer[2].get("status") != "Accepted":
                    self.errors.append(f"boot answered {answer}")
                    await asyncio.sleep(1.0)
                    return
                await self._call(ws, reader, pending, "StatusNotification", _status("Available"))
                self.booted.set()
            self.online = True
            while True:
                if self.notes:
                    action, payload = self.notes.popleft()
                    await self._call(ws, reader, pending, action, payload)
                    continue
                if not self.queue:
                    self.wake.clear()
                    await _first(self.wake.wait(), reader)
                    if reader.done():
                        return
                    continue
                event = self.queue[0]
                answer = await self._call(ws, reader, pending, "TransactionEvent", event.payload, event)
                if answer[0] == 3:
                    event.acked_at = time.monotonic()
                    self.queue.popleft()
                    continue
                event.error = str(answer[2])
                self.errors.append(f"{event.key} answered {answer}")
                if answer[2] == "SecurityError":  # the CSMS forgot the boot: boot again, then resend
                    self.booted.clear()
                    return
                self.queue.popleft()  # a CallError is an answer: a station gives up on that message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _call(
        self, ws: Any, reader: asyncio.Task[None], pending: dict[str, asyncio.Future[list[Any]]],
        action: str, payload: dict[str, Any], event: TxEvent | None = None,
    ) -> list[Any]:  # fmt: skip
        unique_id = uuid.uuid4().hex
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        pending[unique_id] = answer
        if event is not None:
            event.sends.append(time.monotonic())
        await ws.send(json.dumps([2, unique_id, action, payload]))
        await asyncio.wait({answer, reader}, timeout=CALL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        if not reader.done():  # no answer in time: a station drops such a connection and delivers on a new one
            self.timeouts += 1
            await ws.close()
        raise _ConnectionLost(action)

    async def _read(self, ws: Any, pending: dict[str, asyncio.Future[list[Any]]]) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] in (3, 4) and (answer := pending.pop(msg[1], None)) is not None and not answer.done():
                    answer.set_result(msg)
                elif msg[0] == 2:
                    await ws.send(json.dumps(self._answer(msg[1], msg[2], msg[3])))

    def _answer(self, unique_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
        """The CSMS's own calls: status triggers (after a reconnect) and transaction status questions."""
        if action == "TriggerMessage":
            if payload.get("requestedMessage") != "StatusNotification":
                return [3, unique_id, {"status": "Rejected"}]
            self.notes.append(("StatusNotification", _status("Occupied" if self.open_tx else "Available")))
            self.wake.set()
            return [3, unique_id, {"status": "Accepted"}]
        if action == "GetTransactionStatus":
            tx = payload.get("transactionId")
            answer: dict[str, Any] = {"messagesInQueue": any(e.tx_id == tx or tx is None for e in self.queue)}
            if tx is not None:
                answer["ongoingIndicator"] = tx == self.open_tx
            return [3, unique_id, answer]
        return [4, unique_id, "NotImplemented", f"{action} is not implemented by this test station", {}]


async def _first(awaitable: Any, reader: asyncio.Task[None]) -> None:
    """Wait for `awaitable` or for the connection's reader to end (the connection is gone), whichever is first."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()


def _boot() -> dict[str, Any]:
    return {"reason": "PowerUp", "chargingStation": {"vendorName": "unstuck-tests", "model": "Crash201"}}


def _status(status: str) -> dict[str, Any]:
    return {"timestamp": _now_iso(), "connectorStatus": status, "evseId": 1, "connectorId": 1}


class AnswerGate:
    """A TCP relay in front of the CSMS that can hold back what the CSMS sends: held over a kill, those answers
    never arrive, as if the machine died before they left it, so the kill lands after the commits."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.transport.abort()  # the CSMS is down: the station sees its connection refused, as without us
            return
        self._transports |= {client_w.transport, up_w.transport}
        try:  # each pump ends when its side closes and cuts the other side, so both end
            await asyncio.gather(
                self._pump(client_r, up_w, None), self._pump(up_r, client_w, self._open), return_exceptions=True
            )
        finally:
            for w in (client_w, up_w):
                self._transports.discard(w.transport)
                w.transport.abort()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event | None) -> None:
        while data := await src.read(65536):
            if gate is not None:
                await gate.wait()
            dst.write(data)
            await dst.drain()
        dst.transport.abort()  # one side closed: so does the other, at once (a killed CSMS sends no close frame)

    def hold(self) -> None:
        self._open.clear()

    def drop_held(self) -> None:
        """Cut every connection, with whatever was held back, and let traffic through again."""
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        self._open.set()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


class StationFleet:
    """The stations on one asyncio loop in a thread of their own, behind an AnswerGate; the test drives it with
    blocking calls."""

    def __init__(self, ocpp_url: str, count: int, seed: int) -> None:
        parts = urlsplit(ocpp_url)
        assert parts.port is not None
        self.gate = AnswerGate(parts.port)
        self._path = parts.path
        rng = random.Random(seed)
        self.stations = [RawStation(f"{PREFIX}{i:02d}", "", random.Random(rng.getrandbits(64))) for i in range(count)]
        self._loop = asyncio.new_event_loop()
        self._closing: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._closing = asyncio.Event()
        await self.gate.start()
        for st in self.stations:
            st.url = f"ws://127.0.0.1:{self.gate.port}{self._path}/{st.id}"
        tasks = [asyncio.create_task(job()) for st in self.stations for job in (st.link, st.drive)]
        await self._closing.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.gate.close()

    def hold_answers(self) -> None:
        self._loop.call_soon_threadsafe(self.gate.hold)

    def drop_held_answers(self) -> None:
        self._loop.call_soon_threadsafe(self.gate.drop_held)

    def start(self) -> None:
        self._thread.start()

    def _until(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return True

    def wait_booted(self, timeout: float) -> bool:
        return self._until(lambda: all(st.booted.is_set() for st in self.stations), timeout)

    def stop_driving(self) -> None:
        """Every station ends the transaction it has open and starts no other."""
        for st in self.stations:
            self._loop.call_soon_threadsafe(st.stop.set)

    def wait_delivered(self, timeout: float) -> bool:
        """Until every station has ended its last transaction and every event is acknowledged (or refused)."""
        return self._until(lambda: all(st.driving_done and not st.queue for st in self.stations), timeout)

    def close(self) -> None:
        if self._thread.is_alive() and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join(15)
        if not self._thread.is_alive():
            self._loop.close()

    def events(self) -> list[TxEvent]:
        return [e for st in self.stations for e in st.events]


# ---------------------------------------------------------------- pure: the verdict
@dataclass(frozen=True)
class Row:
    """A stored transaction, as the CSMS keeps it."""

    id: int
    charge_point_id: str
    station_tx_id: str | None
    meter_start: int
    meter_stop: int | None
    closed: bool
    stop_reason: str | None
    seq_no: int | None


_EVENT_LINE = re.compile(
    r"transaction\.event charge_point=(\S+) station_transaction=(\S+) event=(\S+) seq_no=(\d+) .*? step=(\S+)"
)


def logged_events(log: str) -> Counter[tuple[str, str, str, int]]:
    """How many times the CSMS logged applying each event: logged after its commit, so twice means it was
    committed before a kill and sent again because the kill lost its answer."""
    return Counter((m[1], m[2], m[3], int(m[4])) for m in _EVENT_LINE.finditer(log))


@dataclass(frozen=True)
class KillFigures:
    at: float  # seconds into the run
    kind: str  # KILL_KINDS
    in_flight: int  # events sent before the kill and not acknowledged by then
    in_flight_by_type: str  # e.g. "Started 4, Updated 8, Ended 3"
    committed: int  # ... of which the CSMS had stored before it died (the answer was lost; the resend was recognised)
    acked_after: int  # ... acknowledged after the restart

    def line(self) -> str:
        if not self.in_flight:
            return f"kill at t={self.at:.1f}s ({self.kind}): no event in flight (it landed between messages)"
        return (
            f"kill at t={self.at:.1f}s ({self.kind}): {self.in_flight} events in flight ({self.in_flight_by_type}), "
            f"{self.committed} of them committed before it (their answers died with it), "
            f"{self.acked_after}/{self.in_flight} acknowledged after the restart"
        )


@dataclass
class Verdict:
    made: int = 0
    acked: Counter[str] = field(default_factory=Counter)  # by event type
    resent: int = 0  # events sent more than once
    offline: int = 0  # events made while the CSMS was down
    transactions: int = 0  # station transactions with an acknowledged Started
    stored: int = 0  # rows for the fleet's stations
    # "lost Started", "lost Updated", "lost Ended" (acknowledged, its transaction not stored), "Started not
    # reflected" (meterStart), "Ended not reflected" (open, meterStop, seqNo, reason), "stored twice", "stranger"
    # (a row no station made), "unacknowledged" (never answered by the end)
    problems: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    kills: list[KillFigures] = field(default_factory=list)

    def problem(self, kind: str, detail: str) -> None:
        self.problems[kind] += 1
        self.details.append(f"{kind}: {detail}")


def _by_type(events: Iterable[TxEvent]) -> str:
    counts = Counter(e.event_type for e in events)
    return ", ".join(f"{t} {counts[t]}" for t in ("Started", "Updated", "Ended") if counts[t])


def judge(events: list[TxEvent], rows: list[Row], kills: list[tuple[str, float]], log: str, t0: float) -> Verdict:
    """Every acknowledged event reflected in `rows`, nothing stored twice; `kills` as (kind, time.monotonic())."""
    v = Verdict(made=len(events), stored=len(rows))
    v.resent = sum(1 for e in events if len(e.sends) > 1)
    v.offline = sum(1 for e in events if e.payload.get("offline"))
    by_tx: dict[tuple[str, str | None], list[Row]] = {}
    for r in rows:
        by_tx.setdefault((r.charge_point_id, r.station_tx_id), []).append(r)
    made = {(e.station, e.tx_id) for e in events}
    for key, found in by_tx.items():
        if key not in made:
            v.problem("stranger", str(found))
        elif len(found) > 1:
            v.problem("stored twice", f"{key}: {found}")
    for e in events:
        found = by_tx.get((e.station, e.tx_id))
        if e.acked_at is None:
            v.problem("unacknowledged", f"{e.key} ({len(e.sends)} sends, CallError {e.error})")
            continue
        v.acked[e.event_type] += 1
        if not found:
            v.problem(f"lost {e.event_type}", f"{e.key} meter {e.meter_wh}, sent {len(e.sends)} times")
        elif e.event_type == "Started" and found[0].meter_start != e.meter_wh:
            v.problem("Started not reflected", f"{e.key} sent meterStart {e.meter_wh}, stored {found[0]}")
        elif e.event_type == "Ended" and (
            (found[0].closed, found[0].meter_stop, found[0].seq_no, found[0].stop_reason)
            != (True, e.meter_wh, e.seq_no, "Local")
        ):
            v.problem("Ended not reflected", f"{e.key} sent meterStop {e.meter_wh}, stored {found[0]}")
    v.transactions = v.acked["Started"]
    applied = logged_events(log)
    for kind, at in kills:
        flight = [e for e in events if any(s <= at for s in e.sends) and (e.acked_at is None or e.acked_at > at)]
        v.kills.append(
            KillFigures(
                at=at - t0,
                kind=kind,
                in_flight=len(flight),
                in_flight_by_type=_by_type(flight),
                committed=sum(1 for e in flight if applied[e.key] > 1),
                acked_after=sum(1 for e in flight if e.acked_at is not None),
            )
        )
    return v


# ---------------------------------------------------------------- shell
def _rows(db_url: str) -> list[Row]:
    from csms.db.models import Transaction

    def read(s: Any) -> list[Row]:
        found = s.scalars(select(Transaction).where(Transaction.charge_point_id.like(f"{PREFIX}%")))
        return [
            Row(t.id, t.charge_point_id, t.station_tx_id, t.meter_start, t.meter_stop, t.stop_time is not None,
                t.stop_reason, t.seq_no)
            for t in found
        ]  # fmt: skip

    return with_db(db_url, read)


@dataclass
class CrashRun201:
    db_url: str
    workdir: Path
    stations: int = 15
    kills: int = 4
    load_seconds: float = 6.0  # traffic before each kill, and after the last restart
    hold_seconds: float = 1.5  # commits or answers held back just before a kill
    seed: int = 201
    command: list[str] | None = None  # a mutant instead of `python -m csms`
    kills_made: list[tuple[str, float]] = field(default_factory=list)  # (kind, time.monotonic())
    restart_seconds: list[float] = field(default_factory=list)
    verdict: Verdict | None = None
    delivered: bool = False
    station_errors: list[str] = field(default_factory=list)
    connects: int = 0
    timeouts: int = 0
    seconds: float = 0.0

    def run(self) -> None:
        began = time.monotonic()
        csms: CsmsProcess = start_csms(self.db_url, self.workdir, SERVE_ARGS, timeout=60, command=self.command)
        ports = ["--ocpp-port", str(urlsplit(csms.ocpp).port), "--http-port", str(urlsplit(csms.http).port)]
        fleet = StationFleet(csms.ocpp, self.stations, self.seed)
        try:
            fleet.start()
            assert fleet.wait_booted(30), "the stations did not all boot"
            for k in range(self.kills):
                kind = KILL_KINDS[k % len(KILL_KINDS)]
                time.sleep(self.load_seconds - (self.hold_seconds if kind != ANYWHERE else 0.0))
                with writes_held(self.db_url) if kind == COMMITS_HELD else nullcontext():
                    if kind == ANSWERS_HELD:
                        fleet.hold_answers()
                    if kind != ANYWHERE:
                        time.sleep(self.hold_seconds)
                    self.kills_made.append((kind, time.monotonic()))
                    csms.proc.kill()  # SIGKILL: no shutdown, no flush
                    csms.proc.wait()
                fleet.drop_held_answers()
                restart = time.monotonic()
                csms = start_csms(self.db_url, self.workdir, [*SERVE_ARGS, *ports], timeout=60, command=self.command)
                self.restart_seconds.append(time.monotonic() - restart)
            time.sleep(self.load_seconds)
            fleet.stop_driving()
            self.delivered = fleet.wait_delivered(60)
            rows = _rows(self.db_url)
        finally:
            fleet.close()
            csms.stop()
        self.station_errors = [f"{st.id}: {err}" for st in fleet.stations for err in st.errors]
        self.connects = sum(st.connects for st in fleet.stations)
        self.timeouts = sum(st.timeouts for st in fleet.stations)
        self.verdict = judge(fleet.events(), rows, self.kills_made, csms.log(), began)
        self.seconds = time.monotonic() - began

    def report(self, name: str) -> str:
        v = self.verdict
        assert v is not None
        lines = [
            f"2.0.1 crash safety on {name}: {self.stations} stations, {len(self.kills_made)} SIGKILLs "
            f"(restarts took {', '.join(f'{s:.1f}' for s in self.restart_seconds)} s), {self.connects} connections "
            f"({self.timeouts} dropped after a call timed out), "
            f"{self.seconds:.0f} s in all",
            *(f"  {f.line()}" for f in v.kills),
            f"  events made {v.made}, acknowledged {sum(v.acked.values())} ("
            + ", ".join(f"{t} {v.acked[t]}" for t in ("Started", "Updated", "Ended"))
            + f"); sent more than once {v.resent}; made offline {v.offline}",
            f"  transactions acknowledged {v.transactions}, stored {v.stored}; problems "
            + (", ".join(f"{k} {n}" for k, n in sorted(v.problems.items())) or "none")
            + ("" if self.delivered else " (not every event was delivered in time)"),
            *(f"    {d}" for d in v.details[:15]),
            *(f"  station error: {e}" for e in self.station_errors[:10]),
        ]
        return "\n".join(lines)


def _db_name(db_url: str) -> str:
    return "SQLite" if db_url.startswith("sqlite") else "PostgreSQL"


def assert_nothing_lost(run: CrashRun201) -> None:
    text = run.report(_db_name(run.db_url))
    print(text)
    v = run.verdict
    assert v is not None
    assert run.delivered and not run.station_errors, text
    assert not v.problems, text
    assert v.transactions == v.stored == v.acked["Ended"] > 0, text
    # The test proves something only if kills caught events in the air, and each was delivered after all.
    assert all(f.in_flight > 0 for f in v.kills if f.kind != ANYWHERE), text
    assert all(f.committed == 0 for f in v.kills if f.kind == COMMITS_HELD), text
    assert all(f.committed > 0 for f in v.kills if f.kind == ANSWERS_HELD), text
    assert all(f.acked_after == f.in_flight for f in v.kills), text


def test_sigkill_under_201_transaction_events_loses_nothing_acknowledged(db_url, tmp_path):
    run = CrashRun201(db_url, tmp_path)
    run.run()
    assert_nothing_lost(run)


def test_acknowledging_a_transaction_event_before_its_commit_is_caught(sqlite_url, tmp_path):
    """The mutation: TransactionEvent answered before its commit. Killed while commits wait, acknowledged events
    are gone, and the same checks find them lost."""
    run = CrashRun201(sqlite_url, tmp_path, kills=1, command=command("transaction_event_acked_before_commit"))
    run.run()
    text = run.report("SQLite, transaction_event_acked_before_commit")
    print(text)
    v = run.verdict
    assert v is not None and "mutant.on" in (tmp_path / "csms.log").read_text(), text
    assert v.problems["lost Started"] + v.problems["Started not reflected"] > 0, text
    assert v.problems["stored twice"] == v.problems["stranger"] == 0, text


# ---------------------------------------------------------------- the oracle itself, without a CSMS
def _event(tx: str, event_type: str, seq: int, meter: int, acked: bool = True) -> TxEvent:
    return TxEvent("C201-00", tx, event_type, seq, meter, {}, sends=[1.0], acked_at=2.0 if acked else None)


def _row(id: int, tx: str, meter_start: int, meter_stop: int | None, seq: int, reason: str | None = "Local") -> Row:
    return Row(id, "C201-00", tx, meter_start, meter_stop, meter_stop is not None, reason, seq)


def test_the_oracle_finds_each_kind_of_loss_and_duplicate():
    events = [
        *(_event("a", t, s, m) for t, s, m in (("Started", 0, 100), ("Updated", 1, 150), ("Ended", 2, 200))),
        *(_event("b", t, s, m) for t, s, m in (("Started", 0, 300), ("Ended", 1, 400))),  # b's Ended lost
        _event("c", "Started", 0, 500),  # c lost whole
        *(_event("d", t, s, m) for t, s, m in (("Started", 0, 600), ("Ended", 1, 700))),  # d stored twice
        _event("e", "Started", 0, 800, acked=False),  # never answered: no promise, but reported
    ]
    rows = [
        _row(1, "a", 100, 200, 2),
        _row(2, "b", 300, 350, 1, "Superseded"),
        _row(3, "d", 600, 700, 1),
        _row(4, "d", 600, 700, 1),
        _row(5, "z", 0, 0, 0),
    ]
    v = judge(events, rows, [], "", 0.0)
    assert v.problems == Counter(
        {"Ended not reflected": 1, "lost Started": 1, "stored twice": 1, "stranger": 1, "unacknowledged": 1}
    ), v.details
    assert (v.transactions, v.stored, v.acked["Ended"]) == (4, 5, 3)


def test_the_log_says_which_events_were_committed_twice():
    line = (
        "INFO transaction.event charge_point=C201-03 station_transaction=0007-ab event=Started seq_no=0 "
        "trigger=Authorized offline=False step={} transaction=12 connector=1\n"
    )
    log = line.format("start") + line.format("duplicate") + line.replace("Started seq_no=0", "Ended seq_no=2")
    assert logged_events(log) == Counter(
        {("C201-03", "0007-ab", "Started", 0): 2, ("C201-03", "0007-ab", "Ended", 2): 1}
    )
