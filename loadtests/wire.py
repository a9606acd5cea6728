"""One charge point's WebSocket, on gevent: OCPP-J over `websockets.sync.client`.

Locust runs on gevent and monkey-patches sockets, threads and selectors, so the
synchronous websockets client cooperates as it is: its background reader
"thread" is a greenlet and a blocking `recv` yields to the hub (checked by
`tests/loadtests/test_pieces.py` with 100 connections at once in one patched process).
No trio here, and no second event loop.

`Link` is the gevent twin of the simulator's trio `Link` (simulator/link.py), with
the same rules: one FIFO outbox, so the CSMS sees messages in the order the charge
point produced them; transaction messages wait while offline and are replayed in
order (OCPP 1.6 §4.7), other Calls are dropped when they cannot go out; one
outstanding Call; faults act through `cut` (TCP dropped, no close frame) and `mute`.
Every Call it sends reports to `on_request(action, ms, length, exc)`: the locust
`request` event. A Call lost because the charge point itself cut the link is not
reported: that is the fault, not the CSMS.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.pool import Group
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from simulator.configstore import ConfigStore
from simulator.trace import TraceWriter

__all__ = [
    "SUBPROTOCOL",
    "Link",
    "Outgoing",
    "WireError",
    "CallErrorReceived",
    "CallTimeoutError",
    "LinkDownError",
    "NoAnswer",
    "NotImplementedCall",
]

SUBPROTOCOL = "ocpp1.6"
MIN_SERVED_S = 5.0  # a connection online for less than this counts as a failed attempt (back-off)
BACKOFF_MAX = 60.0
CLOSE_TIMEOUT = 2.0
GOING_AWAY = 1001
Payload = dict[str, Any]
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class WireError(Exception):
    """Root of what a Call can end in besides a CallResult."""


class CallErrorReceived(WireError):
    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: CallError {code}: {description}")
        self.code = code


class CallTimeoutError(WireError):
    pass


class LinkDownError(WireError):
    """The connection ended before the answer came."""


class NoAnswer(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by an answer handler: this CSMS request is never answered (a hung or failing charger)."""


class NotImplementedCall(Exception):  # noqa: N818 - a control-flow signal: answered with CallError NotImplemented
    pass


@dataclass(eq=False)
class Outgoing:
    """One Call waiting to be sent; `build` runs at send time (a transactionId may be new by then)."""

    action: str
    build: Callable[[], Payload | None]
    transactional: bool
    on_done: Callable[[Payload | None], None] | None = None
    done: Event = field(default_factory=Event)
    result: Payload | None = None
    attempts: int = 0

    def finish(self, result: Payload | None) -> None:
        self.result = result
        if self.on_done is not None:
            self.on_done(result)
        self.done.set()


class Link:
    """Keeps `{url}/{cp_id}` connected (with back-off), boots, heartbeats, and carries the charge point's Calls."""

    def __init__(
        self,
        cp_id: str,
        url: str,
        *,
        boot_payload: Payload,
        config: ConfigStore,
        call_timeout: float,
        trace: TraceWriter,
        now: Callable[[], float],
        on_request: Callable[[str, str, float, int, BaseException | None], None],
        answer: Callable[[str, Payload], Payload],
        on_up: Callable[[bool], None],
        rng: random.Random | None = None,
        subprotocol: str = SUBPROTOCOL,
    ) -> None:
        self.cp_id = cp_id
        self.subprotocol = subprotocol  # ocpp1.6 or ocpp2.0.1: what it offers
        self.url = f"{url}/{cp_id}"
        self.boot_payload = boot_payload
        self.config = config
        self.call_timeout = call_timeout
        self.trace = trace
        self.now = now
        self.on_request = on_request
        self.answer = answer
        self.on_up = on_up
        self.rng = rng or random.Random(cp_id)
        self.muted = False
        self.online = Event()  # connected and booted: Calls go out now
        self._items: deque[Outgoing] = deque()
        self._wake = Event()
        self._ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, AsyncResult]] = {}
        self._needs_boot = True
        self._offline_until = 0.0
        self._discard_on_reconnect = False
        self._ending: str | None = None  # who ends the open connection: "fault" or "charge point"
        self._closing = False
        self._greenlets = Group()  # per-connection greenlets: drain, heartbeats, answers

    # ------------------------------------------------------------- state
    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def queued(self) -> int:
        return sum(1 for item in self._items if item.transactional)

    def flush(self, timeout: float) -> bool:
        """Until everything queued so far has been answered or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._items:
            left = deadline - time.monotonic()
            if left <= 0 or not self._items[-1].done.wait(left):
                return not self._items
        return True

    # ----------------------------------------------------------- sending
    def send(
        self,
        action: str,
        payload: Payload | Callable[[], Payload | None],
        *,
        transactional: bool = False,
        on_done: Callable[[Payload | None], None] | None = None,
    ) -> Outgoing:
        """Queue a Call. Offline or muted, a non-transaction Call is dropped at once."""
        build = payload if callable(payload) else (lambda: payload)
        item = Outgoing(action, build, transactional, on_done)
        if not transactional and (self.muted or not self.online.is_set()):
            item.finish(None)
        else:
            self._items.append(item)
            self._wake.set()
        return item

    def request(self, action: str, payload: Payload) -> Payload | None:
        """Send a Call and wait for its answer (None if offline or it failed)."""
        item = self.send(action, payload)
        item.done.wait()
        return item.result

    # ------------------------------------------------------------ faults
    def cut(
        self, *, offline_for: float, reboot: bool = False, lose_queue: bool = False, discard_on_reconnect: bool = False
    ) -> None:
        """Drop the TCP connection now (no WebSocket close) and stay away `offline_for` s."""
        self._offline_until = self.now() + offline_for
        self._discard_on_reconnect = self._discard_on_reconnect or discard_on_reconnect
        if reboot:
            self._needs_boot = True
            self.muted = False
        if lose_queue:
            self._lose_queue()
        self.online.clear()
        ws = self._ws
        if ws is not None:
            self._ending = "fault"
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)  # the peer sees the TCP connection end, no close frame
            except OSError:
                pass

    def mute(self) -> None:
        """A hung charger: nothing is sent any more (until a reboot), the socket stays open."""
        self.muted = True
        self._drop(keep=lambda item: item.transactional)

    def close(self, reason: str = "charge point shutting down") -> None:
        """End for good: close the WebSocket in order (1001) and stop reconnecting."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            self._ending = self._ending or "charge point"
            try:
                ws.close(GOING_AWAY, reason[:100])
            except Exception:  # noqa: BLE001 - already closing or closed: nothing left to do
                pass

    def _lose_queue(self) -> None:
        lost = self._drop()
        self.trace.write(self.cp_id, "link", event="queue_lost", messages=lost)

    def _drop(self, keep: Callable[[Outgoing], bool] = lambda _item: False) -> int:
        kept: deque[Outgoing] = deque()
        dropped = 0
        for item in self._items:
            if keep(item):
                kept.append(item)
            else:
                dropped += 1
                item.finish(None)
        self._items = kept
        return dropped

    # ------------------------------------------------------------ running
    def run(self) -> None:
        """Connect, serve, reconnect with back-off; returns once `close` was called (run it in a greenlet)."""
        failures = 0
        while not self._closing:
            wait = self._offline_until - self.now()
            if wait > 0:
                gevent.sleep(wait)
                if self._closing:
                    return
            self._ending = None
            up_for = None
            t0 = time.perf_counter()
            try:
                ws = connect(
                    self.url,
                    subprotocols=[self.subprotocol],
                    open_timeout=15,
                    close_timeout=CLOSE_TIMEOUT,
                    ping_interval=None,
                    max_size=2**20,
                )
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                self.on_request_ws(t0, exc)
                self.trace.write(self.cp_id, "link", event="connect_failed", why=_why(exc))
            except Exception as exc:  # noqa: BLE001 - a bug must not end this charge point: show it, try again
                self.trace.write(self.cp_id, "error", what="connect", why=_why(exc))
            else:
                self.on_request_ws(t0, None)
                try:
                    with ws:
                        up_for = self._serve(ws)
                except Exception as exc:  # noqa: BLE001 - as above, and the trace has the details
                    self.trace.write(self.cp_id, "error", what="crash", why=_why(exc), tb=traceback.format_exc())
            if self._closing:
                return
            if self._ending == "fault":
                continue  # a fault cut this connection and set when to come back
            served = up_for is not None and up_for >= MIN_SERVED_S
            failures = 0 if served else failures + 1
            base = 1.0 if served else min(BACKOFF_MAX, 2.0 ** max(0, failures - 1))
            gevent.sleep(base * (0.5 + self.rng.random()))

    def on_request_ws(self, t0: float, exc: BaseException | None) -> None:
        """The WebSocket handshake is reported too (request_type WebSocket in locust's statistics)."""
        self.on_request("WebSocket", "connect", (time.perf_counter() - t0) * 1000.0, 0, exc)

    def _serve(self, ws: Any) -> float | None:
        """Serve one connection; how long it was online (None: never booted on it)."""
        self._ws = ws
        self._ending = None
        self.trace.write(self.cp_id, "link", event="connected")
        reader = gevent.spawn(self._read, ws)
        try:
            booted = self._needs_boot
            if booted and not self._boot(ws):
                return None
            if self._discard_on_reconnect:
                self._discard_on_reconnect = False
                self._lose_queue()
            self.online.set()
            up_since = self.now()
            self._greenlets.spawn(self._drain, ws)
            self._greenlets.spawn(self._heartbeats)
            self.on_up(booted)
            reader.join()
            return self.now() - up_since
        finally:
            self.online.clear()
            if not reader.ready():
                try:  # the reader returns the close code once the socket is done
                    ws.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                reader.join(CLOSE_TIMEOUT)
                reader.kill()
            code = reader.value
            self._greenlets.kill(block=False)
            self._ws = None
            for _action, ar in list(self._pending.values()):
                ar.set_exception(LinkDownError("connection closed"))
            self._pending.clear()
            self._drop(keep=lambda item: item.transactional)
            self.trace.write(self.cp_id, "link", event="closed", by=self._ending or "csms", code=code)

    def _boot(self, ws: Any) -> bool:
        """BootNotification until Accepted; False if the connection closed first."""
        while True:
            try:
                res = self._call(ws, "BootNotification", self.boot_payload)
            except LinkDownError:
                return False
            except WireError:
                gevent.sleep(10)
                continue
            interval = int(res.get("interval", 0) or 0)
            if res.get("status") == "Accepted":
                if interval > 0:
                    self.config.set("HeartbeatInterval", interval)
                self._needs_boot = False
                return True
            gevent.sleep(interval if interval > 0 else 10)

    def _read(self, ws: Any) -> int | None:
        """Frames in until the connection ends; returns the close code (1006: no close frame)."""
        while True:
            try:
                text = ws.recv()
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else 1006
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            self.trace.write(self.cp_id, "in", frame=text)
            try:
                msg = json.loads(text)
                kind, uid = msg[0], str(msg[1])
            except (ValueError, IndexError, KeyError, TypeError):
                continue
            if kind == 2 and len(msg) >= 4:
                self._greenlets.spawn(self._answer, ws, uid, str(msg[2]), msg[3] if isinstance(msg[3], dict) else {})
            elif kind in (3, 4):
                waiting = self._pending.pop(uid, None)
                if waiting is None:
                    continue
                action, ar = waiting
                if kind == 3:
                    ar.set((msg[2] if len(msg) > 2 and isinstance(msg[2], dict) else {}, len(text)))
                else:
                    code = msg[2] if len(msg) > 2 else "GenericError"
                    ar.set_exception(CallErrorReceived(action, str(code), str(msg[3]) if len(msg) > 3 else ""))

    def _call(self, ws: Any, action: str, payload: Payload) -> Payload:
        """One Call and its CallResult, reported to locust; raises a WireError otherwise."""
        uid = f"{next(self._ids)}"
        ar: AsyncResult = AsyncResult()
        self._pending[uid] = (action, ar)
        text = _dumps([2, uid, action, payload])
        self.trace.write(self.cp_id, "out", frame=text)
        t0 = time.perf_counter()
        try:
            try:
                ws.send(text)
            except ConnectionClosed:
                raise LinkDownError("connection closed") from None
            try:
                result, length = ar.get(timeout=self.call_timeout)
            except gevent.Timeout:
                raise CallTimeoutError(f"{action}: no answer within {self.call_timeout:g} s") from None
        except WireError as exc:
            if not (isinstance(exc, LinkDownError) and self._ending is not None):  # our own cut is no failure
                self.on_request("OCPP", action, (time.perf_counter() - t0) * 1000.0, 0, exc)
            raise
        finally:  # also when the connection's greenlets are killed mid-call: then nothing is reported
            self._pending.pop(uid, None)
        self.on_request("OCPP", action, (time.perf_counter() - t0) * 1000.0, length, None)
        return result

    def _answer(self, ws: Any, uid: str, action: str, payload: Payload) -> None:
        try:
            frame: list[Any] = [3, uid, self.answer(action, payload)]
        except NoAnswer:
            return
        except NotImplementedCall:
            frame = [4, uid, "NotImplemented", f"{action} is not implemented", {}]
        except (KeyError, TypeError, ValueError) as exc:
            code = "FormationViolation" if self.subprotocol == SUBPROTOCOL else "FormatViolation"  # 2.0.1's spelling
            frame = [4, uid, code, f"{action}: {_why(exc)}"[:200], {}]
        text = _dumps(frame)
        if self._ws is not ws:
            return  # that connection is gone: the answer goes nowhere, as on a real wire
        self.trace.write(self.cp_id, "out", frame=text)
        try:
            ws.send(text)
        except ConnectionClosed:
            pass

    def _heartbeats(self) -> None:
        while True:
            interval = self.config.int("HeartbeatInterval")
            gevent.sleep(interval if interval > 0 else 60)
            if interval > 0 and not any(item.action == "Heartbeat" for item in self._items):
                self.send("Heartbeat", {})  # one queued at most, however long the CSMS is silent

    def _drain(self, ws: Any) -> None:
        """Send the outbox in order; on a closed connection leave the head for the next one."""
        while True:
            while not self._items:
                self._wake.clear()
                self._wake.wait()
            item = self._items[0]
            if self.muted:
                gevent.sleep(1e9)  # until a reboot cuts this connection
            payload = item.build()
            if payload is None:
                self._pop(item)
                item.finish(None)
                continue
            try:
                result: Payload | None = self._call(ws, item.action, payload)
            except LinkDownError:
                return
            except WireError:
                item.attempts += 1
                if item.transactional and item.attempts < max(1, self.config.int("TransactionMessageAttempts")):
                    gevent.sleep(self.config.int("TransactionMessageRetryInterval") * item.attempts)
                    continue
                result = None
            self._pop(item)
            item.finish(result)

    def _pop(self, item: Outgoing) -> None:
        if self._items and self._items[0] is item:
            self._items.popleft()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
