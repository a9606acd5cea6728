"""The charge point's side of the wire: one WebSocket at a time, boot, heartbeats, an ordered outbox.

Every outgoing Call goes through one FIFO outbox, so the CSMS sees messages in
the order the charge point produced them (StartTransaction before the Charging
status that follows it). Transaction messages wait in the outbox while offline
and are replayed in order on reconnect (OCPP 1.6 §4.7); other Calls are dropped
when they cannot go out. Faults act on the link through `cut` and `mute`.

An orderly end (the run is over, a Reset) closes the WebSocket with a close frame
(1001, going away); a fault's `cut` drops the TCP connection without one, because
a dropped connection is what it simulates.
"""

from __future__ import annotations

import base64
import ssl
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_websocket
from trio_websocket import open_websocket_url
from wsproto.utilities import LocalProtocolError

from ocppj import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
    OcppConnection,
)

from .configstore import ConfigStore
from .identity import Identity
from .rng import Rng
from .stats import Stats
from .trace import TraceWriter
from .wire import WIRES, Wire

__all__ = ["Link", "Outgoing"]

MIN_SERVED_S = 5.0  # a connection online for less than this counts as a failed attempt (back-off)
CALL_FAILURES = (CallTimeoutError, CallErrorReceived, InvalidResponseError)
BACKOFF_MAX = 60.0  # s, the longest wait between two failed connection attempts
CLOSE_TIMEOUT = 2.0  # s, the longest an orderly close waits for the peer's close frame
GOING_AWAY = 1001  # RFC 6455 §7.4.1: the endpoint is going away (shut down, restarting)

Payload = dict[str, Any]


@dataclass(eq=False)
class Outgoing:
    """One Call waiting to be sent; `build` runs at send time (a transactionId may be new by then)."""

    action: str
    build: Callable[[], Payload | None]  # None: nothing to send any more, skip it
    transactional: bool
    on_done: Callable[[Payload | None], None] | None = None  # None result: dropped or failed
    done: trio.Event = field(default_factory=trio.Event)
    result: Payload | None = None
    attempts: int = 0
    owner: object = None  # the transaction it speaks of (GetTransactionStatus asks what is queued for one)

    def finish(self, result: Payload | None) -> None:
        self.result = result
        if self.on_done is not None:
            self.on_done(result)
        self.done.set()


class _Outbox:
    """FIFO of Calls; the head stays until it is answered, so a reconnect resends it."""

    __slots__ = ("items", "_wake")

    def __init__(self) -> None:
        self.items: deque[Outgoing] = deque()
        self._wake = trio.Event()

    def put(self, item: Outgoing) -> None:
        self.items.append(item)
        self._wake.set()

    async def head(self) -> Outgoing:
        while not self.items:
            if self._wake.is_set():
                self._wake = trio.Event()
            await self._wake.wait()
        return self.items[0]

    def pop(self, item: Outgoing) -> None:
        if self.items and self.items[0] is item:
            self.items.popleft()

    def drop(self, keep: Callable[[Outgoing], bool] = lambda _item: False) -> int:
        kept: deque[Outgoing] = deque()
        dropped = 0
        for item in self.items:
            if keep(item):
                kept.append(item)
            else:
                dropped += 1
                item.finish(None)
        self.items = kept
        return dropped


def _transactional(item: Outgoing) -> bool:
    return item.transactional


class Link:
    """Keeps `{url}/{cp_id}` connected (with back-off) and carries the charge point's Calls."""

    def __init__(
        self,
        cp_id: str,
        url: str,
        *,
        identity: Identity,
        config: ConfigStore,
        call_timeout: float,
        boot_on_reconnect: bool,
        rng: Rng,
        trace: TraceWriter,
        stats: Stats,
        now: Callable[[], float],
        handlers: Callable[[], object],
        on_up: Callable[[bool], None],
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        wire: Wire = WIRES["1.6"],
    ) -> None:
        self.cp_id = cp_id
        self.url = f"{url}/{cp_id}"
        # OCPP 1.6 security profiles 1 and 2: HTTP Basic with the id as user (wss:// adds TLS; a
        # wss URL without a context trusts the system's CAs).
        self._headers = (
            None
            if password is None
            else [(b"Authorization", b"Basic " + base64.b64encode(f"{cp_id}:{password}".encode()))]
        )
        self.ssl_context = ssl_context
        self.identity = identity
        self.wire = wire  # the OCPP version offered, and how BootNotification is worded in it
        self.boot_reason = "PowerUp"  # 2.0.1 says why it boots; a Reset sets RemoteReset for the next one
        self.replay_hold = 0.0  # slow_replay: after a reconnect, what was queued offline waits this long
        self.config = config
        self.call_timeout = call_timeout
        self.boot_on_reconnect = boot_on_reconnect
        self.rng = rng
        self.trace = trace
        self.stats = stats
        self.now = now
        self.handlers = handlers  # a fresh `@on` handler object per connection
        self.on_up = on_up  # called with `booted` once a connection is ready for Calls
        self.muted = False
        self._hung = trio.Event()  # set by mute()
        self._outbox = _Outbox()
        self._conn: OcppConnection | None = None
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._scope: trio.CancelScope | None = None
        self._ending: str | None = None  # who ends the open connection: "fault" (a cut) or "charge point"
        self._online = trio.Event()
        self._booted = trio.Event()
        self._needs_boot = True
        self._offline_until = 0.0
        self._discard_on_reconnect = False
        self._attempts = 0

    # ------------------------------------------------------------- state
    @property
    def online(self) -> bool:
        """Connected and booted: Calls go out now."""
        return self._online.is_set()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def booted(self) -> bool:
        return self._booted.is_set()

    @property
    def queued(self) -> int:
        return sum(1 for item in self._outbox.items if item.transactional)

    async def wait_online(self) -> None:
        """Until connected and booted; returns too once the charger hung (heartbeat_stop) before it ever
        booted: it never will, and a fleet waiting for it would wait for ever."""
        if self._online.is_set():
            return
        async with trio.open_nursery() as nursery:

            async def online() -> None:
                await self._online.wait()
                nursery.cancel_scope.cancel()

            async def hung_unbooted() -> None:
                await self._hung.wait()
                if not self._booted.is_set():
                    nursery.cancel_scope.cancel()

            nursery.start_soon(online)
            nursery.start_soon(hung_unbooted)

    async def flush(self) -> None:
        """Until everything queued so far has been answered (or dropped)."""
        while self._outbox.items:
            await self._outbox.items[-1].done.wait()

    # ----------------------------------------------------------- sending
    def send(
        self,
        action: str,
        payload: Payload | Callable[[], Payload | None],
        *,
        transactional: bool = False,
        on_done: Callable[[Payload | None], None] | None = None,
        owner: object = None,
    ) -> Outgoing:
        """Queue a Call. Offline or muted, a non-transaction Call is dropped at once."""
        build = payload if callable(payload) else (lambda: payload)
        item = Outgoing(action, build, transactional, on_done, owner=owner)
        if not transactional and (self.muted or not self.online):
            item.finish(None)
        else:
            self._outbox.put(item)
        return item

    def owners(self) -> list[object]:
        """What the Calls still waiting for their answer speak of (their transactions), in order."""
        return [item.owner for item in self._outbox.items if item.owner is not None]

    async def request(self, action: str, payload: Payload) -> Payload | None:
        """Send a Call and wait for its answer (None if offline or it failed)."""
        item = self.send(action, payload)
        await item.done.wait()
        return item.result

    # ------------------------------------------------------------ faults
    def cut(
        self, *, offline_for: float, reboot: bool = False, lose_queue: bool = False, discard_on_reconnect: bool = False
    ) -> None:
        """Drop the TCP connection now (no WebSocket close) and stay away `offline_for` s.

        reboot: BootNotification on the way back, and a hung charger is alive again;
        lose_queue: queued Calls are forgotten now; discard_on_reconnect: ... on the way back.
        """
        self._offline_until = self.now() + offline_for
        self._ending = "fault"
        self._discard_on_reconnect = self._discard_on_reconnect or discard_on_reconnect
        if reboot:
            self._needs_boot = True
            self.muted = False
        if lose_queue:
            self._lose_queue()
        if self._scope is not None:
            self._scope.cancel()  # an exit under cancellation closes the socket without a close frame
        if self._online.is_set():
            self._online = trio.Event()

    def mute(self) -> None:
        """A hung charger: nothing is sent any more (until a reboot), the socket stays open."""
        self.muted = True
        self._hung.set()
        self._outbox.drop(keep=_transactional)

    def _lose_queue(self) -> None:
        lost = self._outbox.drop()
        self.stats.queued_lost += lost
        self.trace.write(self.cp_id, "link", event="queue_lost", messages=lost)

    async def close(self, reason: str) -> None:
        """Close the open WebSocket in order: a close frame (1001) and the peer's, within CLOSE_TIMEOUT.

        The link reconnects afterwards as after any close; a Reset `cut`s it first.
        """
        ws = self._ws
        if ws is None:
            return
        self._ending = self._ending or "charge point"
        with trio.move_on_after(CLOSE_TIMEOUT):
            await ws.aclose(GOING_AWAY, reason)

    # ------------------------------------------------------------ running
    async def run(self) -> None:
        """Connect, serve, and reconnect with back-off, until cancelled; then close in order.

        The connection runs shielded from that cancellation, so its reader is still there
        to take the peer's close frame: cancelled at once, it would only drop the TCP
        connection, and every CSMS would see 1006 (abnormal closure) at the end of a run.
        """
        life = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_connected, life)
            try:
                await trio.sleep_forever()
            finally:
                try:
                    with trio.CancelScope(shield=True):
                        await self.close("charge point shutting down")
                finally:
                    life.cancel()

    async def _keep_connected(self, life: trio.CancelScope) -> None:
        with life:
            await self._reconnect_loop()

    async def _reconnect_loop(self) -> None:
        failures = 0
        while True:
            wait = self._offline_until - self.now()
            if wait > 0:
                await trio.sleep(wait)
            scope = self._scope = trio.CancelScope()
            served = False
            with scope:
                try:
                    self._attempts += 1
                    async with open_websocket_url(
                        self.url,
                        self.ssl_context,
                        subprotocols=[self.wire.version.subprotocol],
                        extra_headers=self._headers,
                        connect_timeout=10,
                        disconnect_timeout=2,
                    ) as ws:
                        self._ws = ws
                        try:
                            up_for = await self._serve(ws)
                        finally:
                            self._ws = None
                        served = up_for is not None and up_for >= MIN_SERVED_S
                        if served:
                            failures = 0
                except (trio_websocket.HandshakeError, OSError) as exc:
                    self.stats.connect_failures += 1
                    self.trace.write(self.cp_id, "link", event="connect_failed", why=_why(exc))
                except trio_websocket.ConnectionClosed:
                    pass
                except LocalProtocolError:
                    # trio-websocket answers a ping that crosses our close frame with a pong wsproto
                    # refuses in the closing state: the connection is ending anyway.
                    pass
                except Exception as exc:  # a bug must not take the fleet down: count it, show it, go on
                    self.stats.errors["crash"] += 1
                    self.trace.write(self.cp_id, "error", what="crash", why=_why(exc), tb=traceback.format_exc())
            self._scope = None
            if scope.cancelled_caught:
                continue  # a fault cut the link and set when to come back
            failures += 0 if served else 1
            base = 1.0 if served else min(BACKOFF_MAX, 2.0 ** max(0, failures - 1))
            await trio.sleep(base * (0.5 + self.rng.random("backoff", self._attempts)))

    async def _serve(self, ws: trio_websocket.WebSocketConnection) -> float | None:
        """Serve one connection; how long it was online (None: never), so a CSMS that
        accepts and closes at once gets back-off rather than a reconnect a second."""
        conn = OcppConnection(
            ws,
            peer="csms",
            handlers=self.handlers(),
            call_timeout=self.call_timeout,
            trace=self._frame_hook(),
            version=self.wire.version,
        )
        self.stats.connected += 1
        self.stats.connects += 1
        self.stats.peak_connected = max(self.stats.peak_connected, self.stats.connected)
        self.trace.write(self.cp_id, "link", event="connected")
        self._ending = None
        up_since: float | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, conn, nursery.cancel_scope)
                self._conn = conn
                booted = self._needs_boot or self.boot_on_reconnect
                if booted and self.muted:
                    # Hung (heartbeat_stop) before it ever booted: connected, but it says nothing, not even
                    # BootNotification (which would tell the CSMS, and the ground truth, it is alive again).
                    return None
                if booted and not await self._boot(conn):
                    nursery.cancel_scope.cancel()
                    return None
                if self._discard_on_reconnect:
                    self._discard_on_reconnect = False
                    self._lose_queue()
                self._online.set()
                up_since = self.now()
                hold = self.replay_hold if self.queued else 0.0  # slow_replay: the backlog waits, answers do not
                nursery.start_soon(self._drain, conn, hold)
                nursery.start_soon(self._heartbeats)
                self.on_up(booted)
            # Here the nursery has waited for the connection to end.
            return None if up_since is None else self.now() - up_since
        except BaseException:
            self._ending = self._ending or "charge point"  # our own failure (or the run's end), not the CSMS's
            raise
        finally:
            self._conn = None
            if self._online.is_set():
                self._online = trio.Event()
            self._outbox.drop(keep=_transactional)
            self.stats.connected -= 1
            # by: "fault" (a cut), "charge point" (its own close or failure), else the CSMS closed it.
            code = None if ws.closed is None else ws.closed.code
            self.trace.write(self.cp_id, "link", event="closed", by=self._ending or "csms", code=code)

    async def _receive(self, conn: OcppConnection, scope: trio.CancelScope) -> None:
        await conn.run()
        scope.cancel()

    async def _boot(self, conn: OcppConnection) -> bool:
        """BootNotification until Accepted (Pending/Rejected: again after the given interval).

        False if the connection closed first.
        """
        while True:
            try:
                res = await conn.call_raw("BootNotification", self.wire.boot(self.identity, self.boot_reason))
            except ConnectionClosedError:
                return False
            except CALL_FAILURES as exc:
                self.error("BootNotification", exc)
                await trio.sleep(10)
                continue
            interval = int(res.get("interval", 0))
            if res.get("status") == "Accepted":
                if interval > 0:
                    self.config.set("HeartbeatInterval", interval)
                self._needs_boot = False
                self.boot_reason = "PowerUp"
                self.stats.boots += 1
                self._booted.set()
                return True
            await trio.sleep(interval if interval > 0 else 10)

    async def _heartbeats(self) -> None:
        while True:
            interval = self.config.int("HeartbeatInterval")
            await trio.sleep(interval if interval > 0 else 60)
            if interval > 0 and not any(item.action == "Heartbeat" for item in self._outbox.items):
                self.send("Heartbeat", {})  # one queued at most, however long the CSMS is silent

    async def _drain(self, conn: OcppConnection, hold: float = 0.0) -> None:
        """Send the outbox in order (after `hold` s); on a closed connection leave the head for the next one."""
        if hold > 0:
            self.trace.write(self.cp_id, "link", event="replay_held", seconds=hold, queued=self.queued)
            await trio.sleep(hold)
        while True:
            item = await self._outbox.head()
            if self.muted:
                await trio.sleep_forever()  # until a reboot cuts this connection
            payload = item.build()
            if payload is None:
                self._outbox.pop(item)
                item.finish(None)
                continue
            try:
                result = await conn.call_raw(item.action, payload)
            except ConnectionClosedError:
                return
            except OcppCallError as exc:  # our own payload breaks the schema: drop it, never jam the queue
                self.error(item.action, exc)
                result = None
            except CALL_FAILURES as exc:
                self.error(item.action, exc)
                item.attempts += 1
                if item.transactional and item.attempts < max(1, self.config.int("TransactionMessageAttempts")):
                    await trio.sleep(self.config.int("TransactionMessageRetryInterval") * item.attempts)
                    continue
                result = None
            self._outbox.pop(item)
            item.finish(result)

    def _frame_hook(self) -> Callable[[str, str], None]:
        keep = self.trace.frame_hook(self.cp_id)
        stats = self.stats

        def hook(direction: str, text: str) -> None:
            if direction == "out":
                stats.sent += 1
            else:
                stats.received += 1
            if keep is not None:
                keep(direction, text)

        return hook

    def error(self, action: str, exc: Exception) -> None:
        kind = type(exc).__name__
        self.stats.errors[f"{action}:{kind}"] += 1
        self.trace.write(self.cp_id, "error", what=kind, action=action, why=str(exc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
