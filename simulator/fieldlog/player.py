"""Play a frame log's chargers against a live CSMS: the log's own frames, at the log's times (compressed).

Why: a field ticket ("connector 2 showed *in use* all night") comes with the charger's log. Playing
the chargers' side of it against our CSMS shows what our CSMS makes of exactly that conversation.

What is played, per charger (one task each, all in one nursery):

- its `out` CALLs at their log time / `speed`, with its own message ids, meter registers and
  timestamps. Each waits for the CSMS's answer (`call_timeout`, as a real charger does); the next
  goes at its log time or after that answer, whichever is later.
- 1.6 transaction ids are mapped: the CSMS assigns its own in the StartTransaction answer, and every
  later frame naming the log's id (StopTransaction, MeterValues) names the CSMS's instead; a CSMS
  call naming the CSMS's id (RemoteStopTransaction) is read as the log's. 2.0.1 stations name their
  own transactions: nothing to map.
- the CSMS's calls are answered as the log shows (the charger's logged answer to the logged call of
  the same action, in order, preferring one whose call asked the same), else `answers[action]`, else
  the last logged answer of that action again, else CALLERROR NotImplemented (counted per action in
  `unanswered_calls`: the replay left the log there). The CSMS's calls in the log are not sent: we are the charger.
- link records: `disconnect` closes the WebSocket at its time, `connect` opens it again; CALLs the
  log shows while offline are queued and sent, in order, on reconnect (their timestamps untouched).
  A charger without link records connects just before its first record and closes after its last.
- `start`: earlier records are not played, except the charger's last BootNotification before
  `start`, which is sent first (so the CSMS knows the charger), and the link state they leave.
  `end`: later records are not read.

The log is read twice, streamed both times (a big log is never held): `playbook.index_log` first
keeps each charger's answers to the CSMS's calls (a live CSMS asks when it decides, often before
the log's answer would stream by) and record counts; then one reader task hands records to
per-charger channels with bounded buffers, in log order.

Failures are plain-words `errors` (the first 200, then a count), never a traceback: a refused
handshake, a closed connection (the charger reconnects with a back-off, queueing meanwhile), a
CALLERROR, an answer that never came.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection

from ocppj.versions import BY_NAME, V16, OcppVersion

from .frames import FrameLogError, FrameLogHeader, FrameRecord, LinkRecord
from .playbook import (
    CALL,
    ERROR,
    RESULT,
    ChargerBook,
    Errors,
    TxMap,
    answer_frame,
    index_log,
    payload_of,
    pick_answer,
)

__all__ = ["PlayOptions", "PlayResult", "Player"]

BUFFER = 512  # records a charger's channel holds ahead of it: the reader waits on the slowest charger beyond this
MAX_QUEUED = 10_000  # CALLs a charger queues while it cannot connect; more are counted and dropped
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
BACKOFF_MAX = 10.0  # wall seconds between connection attempts after failures (0.5, 1, 2, ... this)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class PlayOptions:
    csms_url: str  # ws://host:port/path — each charger connects to f"{csms_url}/{cp_id}" (id percent-encoded)
    speed: float = 60.0  # log seconds per wall second (math.inf: as fast as the CSMS answers)
    start: float | None = None  # log t to start at (earlier frames are not sent, except the last BootNotification)
    end: float | None = None  # log t to stop at
    answers: Mapping[str, Mapping[str, Any]] | None = None  # action -> payload for CSMS calls the log has no answer for
    only: frozenset[str] | None = None  # charger ids to play
    password: Mapping[str, str] | None = None  # HTTP Basic passwords per charger id, optional
    call_timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None  # for wss:// (None: the system's CAs)


@dataclass
class PlayResult:
    sent: int
    answered: int
    csms_calls: int
    csms_calls_answered_from_log: int
    mapped_transactions: dict[tuple[str, int], int]  # (cp, the log's transactionId) -> the CSMS's
    errors: list[str]  # bounded, plain words
    log_start: float
    log_end: float
    wall_seconds: float
    unanswered_calls: dict[str, int] = field(default_factory=dict)  # CSMS calls answered NotImplemented, per action


class Player:
    """Plays the chargers of one frame log against `options.csms_url`; `run()` returns when the log is played.

    With `options.start`, each charger's frames before it are not sent, except its last BootNotification
    before `start`, which it sends first (a CSMS refuses a charger's calls until it has booted)."""

    def __init__(
        self,
        header: FrameLogHeader,
        records: Callable[[], Iterable[FrameRecord | LinkRecord]],
        options: PlayOptions,
    ) -> None:
        if not options.speed > 0:
            raise ValueError(f"speed {options.speed}: must be above 0")
        self.header = header
        self.options = options
        self._records = records
        self.errors = Errors()
        self.sent = self.answered = self.csms_calls = self.answered_from_log = 0
        self.unanswered: dict[str, int] = {}
        self._chargers: dict[str, _Charger] = {}
        self._origin = options.start if options.start is not None else 0.0
        self._log_end = self._origin
        self._reached = self._origin  # the latest log t a charger has played (flat out, the clock is this)
        self._t0: float | None = None
        self._stopped: float | None = None

    # ----------------------------------------------------------------- the clock
    def log_time(self) -> float:
        """The log's t being played now (start + elapsed wall time * speed)."""
        if self._t0 is None:
            return self._origin
        now = self._stopped if self._stopped is not None else trio.current_time()
        if math.isinf(self.options.speed):
            return self._reached
        return min(self._log_end, self._origin + (now - self._t0) * self.options.speed)

    async def sleep_until(self, t: float) -> None:
        """Until log time `t` is due on the wall clock (at once if it is past)."""
        assert self._t0 is not None
        if math.isinf(self.options.speed):
            await trio.lowlevel.checkpoint()
            return
        await trio.sleep_until(self._t0 + (t - self._origin) / self.options.speed)

    # ----------------------------------------------------------------- running
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> PlayResult:
        """Play the log; `task_status.started()` when playing begins. Returns what happened.

        FrameLogError (before anything is played) when the log has a line the reader cannot read."""
        opts = self.options
        index = await trio.to_thread.run_sync(
            lambda: index_log(_closing_iter(self._records()), only=opts.only, end=opts.end), abandon_on_cancel=True
        )
        if opts.start is None and index.first_t is not None:
            self._origin = index.first_t
        self._log_end = max(self._origin, index.last_t if index.last_t is not None else self._origin)
        for cp in sorted((opts.only or frozenset()) - set(index.chargers)):
            self.errors.add(f"CP {cp}: not in this log (or no records before --to)")
        senders: dict[str, trio.MemorySendChannel[FrameRecord | LinkRecord]] = {}
        async with trio.open_nursery() as nursery:
            for cp, book in index.chargers.items():
                version = self._version(cp)
                if version is None:
                    continue
                send, receive = trio.open_memory_channel[FrameRecord | LinkRecord](BUFFER)
                senders[cp] = send
                charger = self._chargers[cp] = _Charger(self, cp, version, book)
                nursery.start_soon(charger.run, receive)
            self._t0 = trio.current_time()
            nursery.start_soon(self._read, senders)
            task_status.started()
        self._stopped = trio.current_time()
        return self.result()

    def result(self) -> PlayResult:
        """What happened so far (the whole play once `run` returned)."""
        wall = 0.0 if self._t0 is None else (self._stopped or trio.current_time()) - self._t0
        mapped = {(cp, log): csms for cp, c in self._chargers.items() for log, csms in c.txmap.log_to_csms.items()}
        return PlayResult(
            sent=self.sent,
            answered=self.answered,
            csms_calls=self.csms_calls,
            csms_calls_answered_from_log=self.answered_from_log,
            mapped_transactions=mapped,
            errors=self.errors.listing(),
            log_start=self._origin,
            log_end=self._log_end,
            wall_seconds=wall,
            unanswered_calls=dict(self.unanswered),
        )

    def _version(self, cp: str) -> OcppVersion | None:
        name = self.header.charge_points.get(cp)
        version = BY_NAME.get(name or "")
        if version is None:
            why = "is not in the header's charge_points" if name is None else f"speaks OCPP {name!r}, not 1.6 or 2.0.1"
            self.errors.add(f"CP {cp}: {why}; not played")
        return version

    async def _read(self, senders: dict[str, trio.MemorySendChannel[FrameRecord | LinkRecord]]) -> None:
        """The one pass of the log while playing: each record to its charger's channel, in log order."""
        end = self.options.end
        records = self._records()
        try:
            for rec in _until_unreadable(records, self.errors):
                if end is not None and rec.t > end:
                    break
                send = senders.get(rec.cp)
                if send is None:
                    continue
                try:
                    await send.send(rec)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    del senders[rec.cp]  # that charger is done
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
            for send in senders.values():
                send.close()


def _until_unreadable(
    records: Iterable[FrameRecord | LinkRecord], errors: Errors
) -> Iterable[FrameRecord | LinkRecord]:
    """The records up to one the reader cannot read (the log changed since the index pass): an error, not a crash."""
    try:
        yield from records
    except FrameLogError as exc:
        errors.add(f"the log cannot be read further: {exc}")


def _closing_iter(records: Iterable[FrameRecord | LinkRecord]) -> Iterable[FrameRecord | LinkRecord]:
    """`records`, closed (its file) even when the index pass stops early at `end`."""
    try:
        yield from records
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


class _Waiting:
    """One outstanding CALL of the charger: its answer, or that the connection went first."""

    __slots__ = ("msg_id", "event", "answer", "lost")

    def __init__(self, msg_id: Any) -> None:
        self.msg_id = msg_id
        self.event = trio.Event()
        self.answer: list[Any] | None = None
        self.lost = False


class _Charger:
    """One charger of the log: plays its records in order, owns its connection (a nursery for its tasks)."""

    def __init__(self, player: Player, cp: str, version: OcppVersion, book: ChargerBook) -> None:
        opts = player.options
        self.player = player
        self.opts = opts
        self.cp = cp
        self.version = version
        self.book = book
        self.url = f"{opts.csms_url.rstrip('/')}/{quote(cp, safe='')}"
        password = (opts.password or {}).get(cp)
        self.headers = None if password is None else [(b"Authorization", _basic(cp, password))]
        self.txmap = TxMap()
        self.queue: deque[list[Any]] = deque()
        self.dropped = 0
        self.wanted = book.first_link != "connect"  # offline until a first `connect` record
        self.ws: WebSocketConnection | None = None
        self.waiting: _Waiting | None = None
        self.boot: list[Any] | None = None
        self.begun = False
        self.starts: set[Any] = set()  # message ids of 1.6 StartTransactions
        self.used: dict[str, set[int]] = {}
        self.failures = 0
        self.failed_more = 0
        self.retry_at = -math.inf
        self._nursery: trio.Nursery | None = None

    def error(self, text: str) -> None:
        self.player.errors.add(f"CP {self.cp}: {text}")

    async def run(self, receive: trio.MemoryReceiveChannel[FrameRecord | LinkRecord]) -> None:
        try:
            async with receive, trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._play_all(receive)
                await self._close()
                nursery.cancel_scope.cancel()  # the connection's own tasks, should a close hang
        except Exception as exc:  # a bug here must not end the other chargers' play: say it and stop this one
            self.error(f"the player stopped this charger: {type(exc).__name__}: {exc}")
        self._leftovers()

    async def _play_all(self, receive: trio.MemoryReceiveChannel[FrameRecord | LinkRecord]) -> None:
        start = self.opts.start
        handled = 0
        async for rec in receive:
            handled += 1
            if start is not None and rec.t < start:
                self._before_start(rec)
            else:
                if not self.begun:
                    self._begin()
                await self.player.sleep_until(rec.t)
                self.player._reached = max(self.player._reached, rec.t)
                await self._play(rec)
            if handled >= self.book.records:
                return

    def _before_start(self, rec: FrameRecord | LinkRecord) -> None:
        """Before `start` nothing is sent; the link state and the last BootNotification are kept."""
        if isinstance(rec, LinkRecord):
            self.wanted = rec.event == "connect"
        elif rec.direction == "out" and rec.frame[0] == CALL and rec.frame[2:3] == ["BootNotification"]:
            self.boot = rec.frame

    def _begin(self) -> None:
        self.begun = True
        if self.boot is not None:
            self.queue.append(self.boot)

    async def _play(self, rec: FrameRecord | LinkRecord) -> None:
        if isinstance(rec, LinkRecord):
            if rec.event == "connect":
                self.wanted = True
                await self._connect(force=True)
                await self._flush()
            else:
                self.wanted = False
                await self._close()
            return
        frame = rec.frame
        if rec.direction == "in":
            # The CSMS's side in the log: not sent (the live CSMS speaks for itself), but its
            # StartTransaction answers name the log's transaction ids.
            if frame[0] == RESULT and frame[1] in self.starts and isinstance(payload_of(frame), dict):
                self.txmap.log_answered(frame[1], payload_of(frame).get("transactionId"))
            if self.queue:  # a BootNotification waiting since `start`
                await self._connect()
                await self._flush()
            return
        if frame[0] != CALL or len(frame) < 3:
            return  # the charger's logged answers are given when the live CSMS asks
        if self.version == V16 and frame[2] == "StartTransaction":
            self.starts.add(frame[1])
        if len(self.queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self.queue.append(frame)
        await self._connect()
        await self._flush()

    async def _flush(self) -> None:
        """Send what is queued, oldest first, each after the answer to the one before."""
        while self.queue and self.ws is not None:
            if not await self._call(self.ws, self.queue[0]):
                return  # the connection went before the answer: sent again on reconnect
            self.queue.popleft()

    async def _call(self, ws: WebSocketConnection, frame: list[Any]) -> bool:
        """Send one CALL and wait for its answer; False when the connection went first."""
        msg_id, action = frame[1], frame[2]
        payload = payload_of(frame)
        if self.version == V16:
            payload = self.txmap.rewrite(payload)
        waiting = self.waiting = _Waiting(msg_id)
        try:
            with trio.move_on_after(self.opts.call_timeout):
                await ws.send_message(_dumps([CALL, msg_id, action, payload]))
                self.player.sent += 1
                await waiting.event.wait()
        except ConnectionClosed:
            waiting.lost = True
        finally:
            self.waiting = None
        if waiting.lost:
            return False
        answer = waiting.answer
        if answer is None:
            self.error(f"no answer to {action} {msg_id} within {self.opts.call_timeout:g} s")
        elif answer[0] == ERROR:
            said = f" ({answer[3]})" if len(answer) > 3 and answer[3] else ""
            self.error(f"CALLERROR {answer[2] if len(answer) > 2 else '?'} to {action} {msg_id}{said}")
        else:
            self.player.answered += 1
            result = payload_of(answer)
            if self.version == V16 and action == "StartTransaction" and isinstance(result, dict):
                self.txmap.csms_answered(msg_id, result.get("transactionId"))
        return True

    # ----------------------------------------------------------------- the connection
    async def _connect(self, *, force: bool = False) -> None:
        """Open the WebSocket if the log has the charger online and it is not; after a failure, not before the
        back-off is over (unless the log says the charger connects now)."""
        if self.ws is not None or not self.wanted or self._nursery is None:
            return
        if not force and trio.current_time() < self.retry_at:
            return
        why = None
        try:
            ws: WebSocketConnection = await self._nursery.start(self._connection)
        except trio_websocket.ConnectionTimeout:
            why = f"no answer to the WebSocket handshake within {CONNECT_TIMEOUT:g} s"
        except ConnectionRejected as exc:
            body = (exc.body or b"").decode("utf-8", "replace").strip()[:120]
            why = f"the CSMS refused the WebSocket handshake (HTTP {exc.status_code}{': ' + body if body else ''})"
        except HandshakeError as exc:
            why = f"the WebSocket handshake failed ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
        except OSError as exc:
            why = f"cannot connect ({exc.strerror or exc})"
        if why is not None:
            self._failed(why)
            return
        if ws.subprotocol != self.version.subprotocol:
            self.error(f"the CSMS did not accept subprotocol {self.version.subprotocol} (chose {ws.subprotocol!r})")
        self.failures = 0

    async def _connection(self, *, task_status: trio.TaskStatus[WebSocketConnection]) -> None:
        """One WebSocket connection, from handshake to close: handshake failures go to `_connect` (before
        `started`); afterwards a close that does not end cleanly is just the end of it."""
        started = False
        try:
            async with trio_websocket.open_websocket_url(
                self.url,
                self.opts.ssl_context,
                subprotocols=[self.version.subprotocol],
                extra_headers=self.headers,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as ws:
                started = True
                self.ws = ws  # before `started`: a close that comes at once is seen as the CSMS's
                task_status.started(ws)
                await self._receive(ws)
        except (HandshakeError, OSError, trio.BrokenResourceError):
            if not started:
                raise

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self.failures == 1:
            self.error(f"{why} at {self.url}")
        else:
            self.failed_more += 1
        self.retry_at = trio.current_time() + min(BACKOFF_MAX, 0.5 * 2 ** (self.failures - 1))

    async def _close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await ws.aclose()

    async def _receive(self, ws: WebSocketConnection) -> None:
        """The connection's reader: answers for our CALL, the CSMS's CALLs answered as the log says."""
        try:
            while True:
                text = await ws.get_message()
                try:
                    frame = json.loads(text)
                except ValueError:
                    self.error("the CSMS sent a frame that is not JSON")
                    continue
                if not isinstance(frame, list) or len(frame) < 3:
                    continue
                if frame[0] == CALL:
                    await self._answer(ws, frame)
                elif frame[0] in (RESULT, ERROR) and self.waiting is not None and self.waiting.msg_id == frame[1]:
                    self.waiting.answer = frame
                    self.waiting.event.set()
        except ConnectionClosed as exc:
            if self.ws is ws:  # not closed by us
                reason = exc.reason
                said = "" if reason is None else f" ({reason.code}{' ' + reason.reason if reason.reason else ''})"
                self.error(f"the CSMS closed the connection{said}")
        finally:
            if self.ws is ws:
                self.ws = None
                self.retry_at = -math.inf  # reconnect at the next record, as a charger would at once
            if self.waiting is not None:
                self.waiting.lost = True
                self.waiting.event.set()

    async def _answer(self, ws: WebSocketConnection, frame: list[Any]) -> None:
        msg_id, action = frame[1], frame[2]
        payload = frame[3] if len(frame) > 3 else {}
        self.player.csms_calls += 1
        logged = self.book.answers.get(str(action), [])
        to_log = self.txmap.to_log if self.version == V16 else _same
        used = self.used.setdefault(str(action), set())
        picked = pick_answer(logged, used, payload, since=self.opts.start, to_log=to_log)
        answers = self.opts.answers or {}
        if picked is not None:
            out = answer_frame(msg_id, picked.frame)
            self.player.answered_from_log += 1
        elif action in answers:
            out = [RESULT, msg_id, dict(answers[action])]
        elif logged:
            out = answer_frame(msg_id, logged[-1].frame)
            self.player.answered_from_log += 1
        else:
            # Counted, not an error: our CSMS may ask what the log's never did (a TriggerMessage after a reconnect).
            out = [ERROR, msg_id, "NotImplemented", f"the log has no answer to {action}", {}]
            self.player.unanswered[str(action)] = self.player.unanswered.get(str(action), 0) + 1
        with suppress(ConnectionClosed):
            await ws.send_message(_dumps(out))

    def _leftovers(self) -> None:
        if self.failed_more:
            self.error(f"{self.failed_more} more connection attempts failed")
        if self.queue and self.wanted:
            self.error(f"{len(self.queue)} frames never sent (no connection to the CSMS)")
        if self.dropped:
            self.error(f"{self.dropped} frames dropped: more than {MAX_QUEUED} queued without a connection")


def _same(value: Any) -> Any:
    return value


def _basic(cp: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{cp}:{password}".encode())
