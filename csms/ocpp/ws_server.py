"""trio-websocket's server with the limits a public OCPP endpoint needs.

trio-websocket holds a socket whose peer closed before its handshake until the connect timeout
(60 s by default), accepts any number of connections and handshakes, and drops TCP without a
close frame when wsproto finds a text frame that is not UTF-8. This subclass caps open
connections and concurrent handshakes (with a share per address, and the oldest socket that has not
sent its request making room for a newcomer), gives each connection one deadline from its first
byte to its handler's accept or reject, closes a socket as soon as its peer does, and answers a
broken frame with the close code wsproto chose (1007 for invalid UTF-8, RFC 6455 §7.4.1).
Pings and pongs are charged to the peer's message-rate bucket (a flood of them is closed 1008).
It relies on trio-websocket 0.12's private `_handle_connection`, `_reader_task`, `_accept`, `_open_handshake`,
`_get_request`, `_handle_ping_event`, `_handle_pong_event`, `_recv_channel` and `_reader_running`;
tests/e2e/test_limits.py and tests/e2e/test_connection_abuse.py fail if a release changes them.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable, Callable

import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)
from trio_websocket._impl import CloseReason
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping, Pong

from csms.core.addresses import address_key
from csms.metrics import CONNECTION_FAILURES, CONNECTIONS_REFUSED, OCPP_LIMITS
from ocppj.connection import QuietLog, TokenBucket

__all__ = ["GuardedWebSocketServer"]

log = logging.getLogger("csms.server")


class _Connection(WebSocketConnection):
    _bucket: TokenBucket | None = None
    _peer = ""
    _on_accept: Callable[[], None] | None = None

    async def _accept(self, request, subprotocol, extra_headers) -> None:
        # The handshake deadline is lifted here, in the handler's own task, before the answer is sent: a
        # deadline not yet cancelled then never cuts this connection; one already cancelled stops the send
        # at its first checkpoint, so the peer was not told it is accepted.
        if self._on_accept is not None:
            self._on_accept()
        await super()._accept(request, subprotocol, extra_headers)

    def count_pings(self, bucket: TokenBucket, peer: str) -> None:
        """Charge the peer's pings and pongs to `bucket`, its message-rate bucket: trio-websocket answers
        each ping in its reader task, unmetered, and a flood of them cost about half a core."""
        self._bucket, self._peer = bucket, peer

    async def _handle_ping_event(self, event: Ping) -> None:
        if await self._within_rate():
            await super()._handle_ping_event(event)

    async def _handle_pong_event(self, event: Pong) -> None:
        if await self._within_rate():
            await super()._handle_pong_event(event)

    async def _within_rate(self) -> bool:
        """Take a token for a control frame; past the rate, close 1008 once (as for messages) and answer no more."""
        bucket = self._bucket
        if bucket is None:
            return True
        if self._close_reason is not None:
            return False  # closing: nothing is answered any more
        if bucket.take(trio.current_time()):
            return True
        why = f"more than {bucket.rate:g} messages and pings a second (burst {bucket.burst})"
        OCPP_LIMITS.labels("rate_limited").inc()
        log.warning("ocpp.connection_closed peer=%s code=1008 reason=rate_limited (%s)", self._peer, why)
        self._close_reason = CloseReason(1008, why)
        try:
            await self._send(CloseConnection(code=1008, reason=why[:120]))
        except ConnectionClosed:
            pass
        await self._recv_channel.aclose()  # the OCPP side's get_message raises ConnectionClosed
        self._reader_running = False  # the reader stops after this batch of frames; the server closes the socket
        return False

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state == ConnectionState.OPEN:
            # Not the peer's close: wsproto could not parse a frame (1007 invalid UTF-8, 1002 bad framing).
            kind = "invalid_utf8" if event.code == 1007 else "bad_websocket_frame"
            OCPP_LIMITS.labels(kind).inc()
            log.warning(
                "ocpp.connection_closed remote=%s code=%d reason=%s (%s)", _remote(self), event.code, kind, event.reason
            )
            self._close_reason = CloseReason(event.code, event.reason or None)
            try:
                await self._send(CloseConnection(code=event.code, reason=(event.reason or "")[:120]))
            except ConnectionClosed:
                pass
        await super()._handle_close_connection_event(event)


# After our close is sent, how long the peer has to close its side before the socket is dropped.
_CLOSE_GRACE = 1.0

# What a peer that closes, half-closes or resets mid-way makes trio, trio-websocket and ssl raise.
_PEER_GONE = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, ConnectionError)


class _Track:
    """How far one connection got, for the failure's log line and metric label."""

    __slots__ = ("connection", "requested")

    def __init__(self) -> None:
        self.connection: WebSocketConnection | None = None
        self.requested = False  # its WebSocket request came: a timeout after it is the server's check, not the peer

    def stage(self) -> str:
        if self.connection is None:
            return "accept"
        return "open" if self.connection._open_handshake.is_set() else "handshake"


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _describe(group: BaseExceptionGroup) -> str:
    first = _leaves(group)[0]
    return f"{type(first).__name__}: {str(first)[:200]}" if str(first) else type(first).__name__


def _stream_remote(stream: trio.abc.Stream) -> str:
    try:
        sock = stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket  # type: ignore[attr-defined]
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


def _remote(ws: WebSocketConnection) -> str:
    try:
        r = ws.remote
        if not isinstance(r, Endpoint):  # the repr of a stream that is not a socket
            return "?"
        return f"{r.address}:{r.port}"
    except Exception:
        return "?"


def _stream_host(stream: trio.abc.Stream) -> str:
    """The peer's address without its port: what a per-address share is counted by ("?" once the peer is gone)."""
    try:
        sock = stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket  # type: ignore[attr-defined]
        return str(sock.getpeername()[0])
    except Exception:
        return "?"


class _Slot:
    """One connection's handshake slot, held from its first byte until its handler accepts or rejects it."""

    __slots__ = ("host", "held", "waiting", "evicted")

    def __init__(self, host: str | None) -> None:
        self.host = host
        self.held = True
        self.waiting: trio.CancelScope | None = None  # set while its request is awaited: cancelling it evicts
        self.evicted = False


class _HandshakeSlots:
    """Who holds the handshake slots. A newcomer past its address's share, or into a full pool, takes the slot
    of the oldest connection (of its address, or of anyone) that has not sent its request yet: an honest
    charger sends it within milliseconds of connecting, so the one that holds a slot idle is the one to go,
    and no number of idle sockets keeps a charger out. Connections whose request came (their password is
    being checked) are never evicted: with none to evict, the newcomer is refused."""

    def __init__(self, limit: int, per_address: int) -> None:
        self.limit = limit
        self.per_address = max(1, min(per_address, limit))
        self.held = 0
        self._by_host: dict[str, int] = {}
        self._waiting: dict[_Slot, None] = {}  # insertion-ordered: the oldest first

    def take(self, host: str | None) -> tuple[_Slot | None, str]:
        """A slot for a connection from `host` (its address's key; None: no share, as for a trusted proxy),
        or None and the refusal's reason."""
        if host is not None and self._by_host.get(host, 0) >= self.per_address:
            victim = next((s for s in self._waiting if s.host == host), None)
            if victim is None:
                return None, "max_handshakes_per_address"
            self._evict(victim)
        elif self.held >= self.limit:
            victim = next(iter(self._waiting), None)
            if victim is None:
                return None, "max_handshakes"
            self._evict(victim)
        self.held += 1
        if host is not None:
            self._by_host[host] = self._by_host.get(host, 0) + 1
        return _Slot(host), ""

    def waiting(self, slot: _Slot, scope: trio.CancelScope | None) -> None:
        """`slot` awaits its request under `scope` (evictable), or no longer does (None)."""
        slot.waiting = scope
        if scope is None:
            self._waiting.pop(slot, None)
        elif slot.held:
            self._waiting[slot] = None

    def release(self, slot: _Slot) -> None:
        """Give the slot back (once; later calls do nothing)."""
        self._waiting.pop(slot, None)
        if not slot.held:
            return
        slot.held = False
        self.held -= 1
        if slot.host is None:
            return
        left = self._by_host[slot.host] - 1
        if left:
            self._by_host[slot.host] = left
        else:
            del self._by_host[slot.host]

    def _evict(self, slot: _Slot) -> None:
        slot.evicted = True
        if slot.waiting is not None:
            slot.waiting.cancel()
        self.release(slot)


class GuardedWebSocketServer(WebSocketServer):
    def __init__(
        self,
        handler: Callable[[WebSocketRequest], Awaitable[None]],
        listeners: list,
        *,
        max_connections: int,
        max_handshakes: int,
        max_handshakes_per_address: int | None = None,
        share_key: Callable[[str], str | None] = address_key,
        **kwargs,
    ) -> None:
        super().__init__(handler, listeners, **kwargs)
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.open_connections = 0
        self._slots = _HandshakeSlots(max_handshakes, max_handshakes_per_address or max_handshakes)
        self._share_key = share_key  # a peer's address -> what its share is counted by (None: no share)
        self._quiet_log = QuietLog(60.0)

    @property
    def handshaking(self) -> int:
        """Connections holding a handshake slot: from their first byte until their handler accepts or rejects."""
        return self._slots.held

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        """The task boundary of one connection: whatever it raises, at any step from its first byte,
        is counted, logged (a bounded number of lines) and closes this socket only. trio's
        `serve_listeners` would otherwise end the whole server with it."""
        track = _Track()
        remote = _stream_remote(stream)
        try:
            await self._serve_connection(stream, track)
        except* _PEER_GONE as group:
            stage = track.stage()
            CONNECTION_FAILURES.labels(stage, "peer_gone").inc()
            self._quiet_log(
                log,
                logging.INFO,
                f"peer_gone:{stage}",
                trio.current_time(),
                "ocpp.connection_dropped stage=%s remote=%s (%s: the peer closed or reset the socket)",
                stage,
                remote,
                _describe(group),
            )
        except* Exception as group:
            stage = track.stage()
            CONNECTION_FAILURES.labels(stage, "internal_error").inc()
            first = _leaves(group)[0]
            self._quiet_log(
                log,
                logging.ERROR,
                f"error:{stage}:{type(first).__name__}",
                trio.current_time(),
                "ocpp.connection_failed stage=%s remote=%s (closing this connection only)",
                stage,
                remote,
                exc_info=first,
            )
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _serve_connection(self, stream: trio.abc.Stream, track: _Track) -> None:
        if self.open_connections >= self.max_connections:
            CONNECTIONS_REFUSED.labels("max_connections").inc()
            await trio.aclose_forcefully(stream)
            return
        host = _stream_host(stream)
        slot, refused = self._slots.take(self._share_key(host))
        if slot is None:
            CONNECTIONS_REFUSED.labels(refused).inc()
            await trio.aclose_forcefully(stream)
            return
        self.open_connections += 1
        try:
            # One deadline from the first byte until the handler accepts or rejects: reading the request and
            # checking who sent it (a password waits for a worker) alike. Lifted once the WebSocket is open.
            with trio.CancelScope(deadline=trio.current_time() + self._connect_timeout) as deadline:
                async with trio.open_nursery() as nursery:
                    connection = _Connection(
                        stream,
                        WSConnection(ConnectionType.SERVER),
                        message_queue_size=self._message_queue_size,
                        max_message_size=self._max_message_size,
                        receive_buffer_size=self._receive_buffer_size,
                    )
                    track.connection = connection
                    peer_gone = trio.Event()

                    async def read() -> None:
                        try:
                            await connection._reader_task()
                        finally:
                            peer_gone.set()

                    nursery.start_soon(read)
                    request, reason = await self._handshake(connection, peer_gone, slot)
                    track.requested = request is not None
                    if request is None:
                        CONNECTIONS_REFUSED.labels(reason).inc()
                        if reason == "evicted":
                            self._quiet_log(
                                log,
                                logging.WARNING,
                                "evicted",
                                trio.current_time(),
                                "ocpp.handshake_evicted remote=%s (it had not sent its request when a newer connection "
                                "needed its slot: --max-handshakes or --max-handshakes-per-address is full)",
                                host,
                            )
                        nursery.cancel_scope.cancel()
                        await trio.aclose_forcefully(stream)
                        return

                    def opened() -> None:
                        deadline.deadline = math.inf
                        self._slots.release(slot)

                    connection._on_accept = opened
                    try:
                        await self._handler(request)
                    finally:
                        # Answered (or failed): the deadline is met and the slot free.
                        deadline.deadline = math.inf
                        self._slots.release(slot)
                        if connection._open_handshake.is_set():
                            with trio.move_on_after(self._disconnect_timeout):
                                await connection.aclose()  # at once if closed already (by the peer, or 1008)
                            # The close is sent: the peer has a moment to close its side, then the socket goes.
                            with trio.move_on_after(_CLOSE_GRACE):
                                await peer_gone.wait()
                        # Refused: the answer is sent, the socket goes now (trio-websocket would keep it until
                        # the peer closes or the disconnect timeout, holding a place of --max-connections).
                        nursery.cancel_scope.cancel()
            if deadline.cancelled_caught:
                CONNECTIONS_REFUSED.labels("check_timeout" if track.requested else "handshake_timeout").inc()
                if track.requested:
                    self._quiet_log(
                        log,
                        logging.WARNING,
                        "check_timeout",
                        trio.current_time(),
                        "ocpp.handshake_timeout remote=%s (its request came but was neither accepted nor refused "
                        "within --handshake-timeout-seconds of connecting: the server is busy checking passwords)",
                        host,
                    )
        finally:
            self._slots.release(slot)
            self.open_connections -= 1

    async def _handshake(
        self, connection: WebSocketConnection, peer_gone: trio.Event, slot: _Slot
    ) -> tuple[WebSocketRequest | None, str]:
        """The WebSocket request, or None and why: the peer closed first, or a newcomer evicted it.
        The connection's deadline (the caller's) ends it too."""
        request: WebSocketRequest | None = None
        with trio.CancelScope() as waiting:
            self._slots.waiting(slot, waiting)
            try:
                async with trio.open_nursery() as race:

                    async def get() -> None:
                        nonlocal request
                        request = await connection._get_request()
                        self._slots.waiting(slot, None)  # no checkpoint since the request came: not evictable now
                        race.cancel_scope.cancel()

                    async def gone() -> None:
                        await peer_gone.wait()
                        race.cancel_scope.cancel()

                    race.start_soon(get)
                    race.start_soon(gone)
            finally:
                self._slots.waiting(slot, None)
        if slot.evicted:  # evicted before its request was taken in: it holds no slot, so it goes
            return None, "evicted"
        if request is not None:
            return request, ""
        return None, "peer_closed"
