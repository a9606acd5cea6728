"""One OCPP-J connection over a trio WebSocket, used by the CSMS and the simulator.

It owns the receive loop, dispatches incoming Calls to `@on(...)` handlers (the
`ocpp` package's routing decorators), and correlates our outgoing Calls with
their answers. OCPP-J allows one outstanding Call per direction: outgoing calls
take a `trio.Lock`, and each waits for its answer inside a cancel scope.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import logging
import secrets
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, overload

import trio
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import create_route_map

from ocppj import frames, schemas
from ocppj.errors import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
)
from ocppj.versions import V16, OcppVersion

__all__ = ["OcppConnection", "WebSocketLike", "Trace", "Limits", "QuietLog", "TokenBucket", "TokenBuckets"]

log = logging.getLogger("ocppj")

Trace = Callable[[str, str], None]
"""Called with ("in" | "out", frame text) for every frame: the simulator's wire log."""


class WebSocketLike(Protocol):
    async def get_message(self) -> str | bytes: ...
    async def send_message(self, message: str | bytes) -> None: ...


_WS = TypeVar("_WS", bound=WebSocketLike)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one peer may cost us (the CSMS passes these; the simulator runs without).

    OCPP-J allows one outstanding Call per direction, so a peer's Calls are served in order by one
    task with at most `max_queued_calls` waiting; more, or more than `burst` messages beyond
    `messages_per_second` (0: no rate limit), close the connection with 1008 (policy violation). The
    rate is the peer's, not the connection's, when the caller hands each connection of a peer the same
    TokenBucket. Bad frames, CallErrors and unexpected answers are logged once per `log_interval`
    seconds per connection, with a count.
    """

    max_queued_calls: int = 16
    messages_per_second: float = 50.0
    burst: int = 500
    log_interval: float = 60.0


class FloodError(Exception):
    """The peer broke a Limit; the connection is closed with `code`."""

    def __init__(self, code: int, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.code, self.reason, self.kind = code, reason, kind


class TokenBucket:
    """`burst` tokens, refilled at `rate` a second; each message (or ping) takes one. Time is a parameter."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def full(self, now: float) -> bool:
        """Refilled to its burst: the same as a new bucket, so forgetting it loses nothing."""
        return self.tokens + (now - self.at) * self.rate >= self.burst


class TokenBuckets:
    """One TokenBucket per peer, kept across the peer's connections: closing and reopening must not refill it.

    At most `size` are kept. Past that, buckets that have refilled go first (a new one would start full
    anyway), then the ones handed out longest ago.
    """

    __slots__ = ("size", "_buckets")

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, peer: str, rate: float, burst: int, now: float) -> TokenBucket:
        """The peer's bucket (a full new one the first time, or after it was forgotten)."""
        bucket = self._buckets.pop(peer, None)
        if bucket is None:
            if len(self._buckets) >= self.size:
                self._evict(now)
            bucket = TokenBucket(rate, burst, now)
        self._buckets[peer] = bucket  # last in the dict's order: handed out most recently
        return bucket

    def _evict(self, now: float) -> None:
        for peer in [p for p, b in self._buckets.items() if b.full(now)]:
            del self._buckets[peer]
        while len(self._buckets) >= self.size:
            del self._buckets[next(iter(self._buckets))]


class QuietLog:
    """One log line per kind per interval; the next one says how many were left out."""

    __slots__ = ("interval", "next_at", "skipped")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_at: dict[str, float] = {}
        self.skipped: dict[str, int] = {}

    def __call__(
        self,
        logger: logging.Logger,
        level: int,
        kind: str,
        now: float,
        msg: str,
        *args: Any,
        exc_info: BaseException | None = None,
    ) -> None:
        if now < self.next_at.get(kind, float("-inf")):
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            return
        self.next_at[kind] = now + self.interval
        skipped = self.skipped.pop(kind, 0)
        if skipped:
            msg += " (%d more like this in the last %gs not logged)"
            args = (*args, skipped, self.interval)
        logger.log(level, msg, *args, exc_info=exc_info)


class _Waiter:
    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.frame: frames.CallResult | frames.CallError | None = None


@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    snake: str = next(iter(camel_to_snake_case({key: None})))
    return snake


@functools.cache
def _class_routes(cls: type) -> dict[str, dict[str, Any]]:
    """The `ocpp` route map of a handler class, built once per class with the plain functions (called with the
    instance): per connection it cost ~2.8 kB and a getattr with an AttributeError for every `@on` name in
    the process."""
    routes: dict[str, dict[str, Any]] = create_route_map(cls)
    return routes


def to_snake(data: Any) -> Any:
    """The `ocpp` package's camel_to_snake_case, with each key's conversion cached (a regex per key is slow)."""
    if isinstance(data, dict):
        return {_snake_key(k): to_snake(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_snake(v) for v in data]
    return data


def to_payload(obj: Any) -> dict[str, Any]:
    """An `ocpp` call or call_result dataclass (snake_case) or a ready camelCase dict -> wire payload."""
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj):
        payload: dict[str, Any] = snake_to_camel_case(remove_nones(serialize_as_dict(obj)))
        return payload
    raise TypeError(f"handler returned {type(obj).__name__}, expected an ocpp call_result or dict")


class OcppConnection(Generic[_WS]):
    """An OCPP-J endpoint (1.6 or 2.0.1: `version`) on an open WebSocket; `run()` serves until it closes.

    Generic in the WebSocket's type, so `ws` keeps it (the CSMS's trio-websocket connection can also ping and close).
    """

    def __init__(
        self,
        ws: _WS,
        *,
        peer: str,
        handlers: object | None = None,
        call_timeout: float = 30.0,
        validate: bool = True,
        trace: Trace | None = None,
        logger: logging.Logger | None = None,
        limits: Limits | None = None,
        on_event: Callable[[str], None] | None = None,
        version: OcppVersion = V16,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.ws = ws
        self.version = version
        self.peer = peer
        self.call_timeout = call_timeout
        self.validate = validate
        self.trace = trace
        self.log = logger or log
        self._handlers = handlers
        handlers_cls: type = type(handlers)  # `type`, not `type[object]`: mypy sees no Hashable in a class object
        self._routes = _class_routes(handlers_cls) if handlers is not None else {}
        self._call_lock = trio.Lock()
        self._pending: dict[str, _Waiter] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self.closed = False
        self.limits = limits
        # The peer's message-rate bucket, shared with its other connections; None: a new one from `limits`.
        self._bucket = bucket
        # Told "bad_frame", "binary_frame", "rate_limited", "too_many_calls" (the CSMS counts them).
        self.on_event = on_event or (lambda _kind: None)
        self._quiet = QuietLog(limits.log_interval if limits is not None else 0.0)
        self.close_code: int | None = None  # set when this side closed the connection for a violation

    # ------------------------------------------------------------------ sending
    async def _send(self, text: str) -> None:
        if self.trace is not None:
            self.trace("out", text)
        try:
            await self.ws.send_message(text)
        except Exception as exc:  # trio_websocket.ConnectionClosed and friends
            if _is_closed_error(exc):
                raise ConnectionClosedError(f"connection to {self.peer} is closed") from exc
            raise

    async def call(self, request: Any, *, timeout: float | None = None) -> Any:
        """Send a `call.X` dataclass of this connection's version and return its `call_result.X` answer."""
        action = type(request).__name__
        payload = await self.call_raw(action, to_payload(request), timeout=timeout)
        return self.version.result_of(action, to_snake(payload))

    async def call_raw(self, action: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Send a Call; return the CallResult payload (camelCase dict).

        Raises CallTimeoutError, CallErrorReceived, InvalidResponseError or
        ConnectionClosedError; the connection stays usable after each of them.
        The timeout covers the whole call, including waiting behind an earlier
        outstanding call (one per direction), so a caller is never held longer.
        """
        if self.validate:
            schemas.validate(action, payload, response=False, version=self.version)
        timeout = self.call_timeout if timeout is None else timeout
        uid = f"{self._id_prefix}-{next(self._ids)}"
        waiter = _Waiter()
        with trio.move_on_after(timeout):
            async with self._call_lock:
                if self.closed:
                    raise ConnectionClosedError(f"connection to {self.peer} is closed")
                self._pending[uid] = waiter
                try:
                    await self._send(frames.encode_call(uid, action, payload))
                    await waiter.event.wait()
                finally:
                    self._pending.pop(uid, None)
        frame = waiter.frame
        if frame is None:
            if self.closed:
                raise ConnectionClosedError(f"{self.peer} closed while {action} was waiting")
            raise CallTimeoutError(action, uid, timeout, self.peer)
        if isinstance(frame, frames.CallError):
            raise CallErrorReceived(action, frame.error_code, frame.error_description, frame.error_details)
        if self.validate:
            try:
                schemas.validate(action, frame.payload, response=True, version=self.version)
            except OcppCallError as exc:
                raise InvalidResponseError(f"{self.peer} answered {action} with an invalid payload: {exc}") from None
        answer: dict[str, Any] = frame.payload
        return answer

    async def send_raw(self, text: str) -> None:
        """Send any text as-is (tests of a peer's error handling)."""
        await self._send(text)

    # ---------------------------------------------------------------- receiving
    async def run(self) -> None:
        """Serve incoming frames until the WebSocket closes; then fail pending calls.

        Without limits, calls to sync handlers are answered inline (no task per call on the hot
        path) and async handlers run as tasks of this connection's nursery. With limits, Calls are
        served in order by one task from a bounded queue, so a peer that sends without reading
        answers costs a bounded amount of memory and is closed. Either way the loop keeps reading
        answers to our own calls meanwhile.
        """
        try:
            async with trio.open_nursery() as nursery:
                if self.limits is None:
                    await self._read(nursery, None, None)
                else:
                    send, receive = trio.open_memory_channel[frames.Call](self.limits.max_queued_calls)
                    nursery.start_soon(self._serve_calls, receive)
                    bucket = self._bucket or TokenBucket(
                        self.limits.messages_per_second, self.limits.burst, trio.current_time()
                    )
                    try:
                        async with send:
                            await self._read(nursery, send, bucket)
                    except FloodError as exc:
                        await self._close_for(exc)
                nursery.cancel_scope.cancel()
        finally:
            self.closed = True
            for waiter in self._pending.values():
                waiter.event.set()

    async def _read(
        self, nursery: trio.Nursery, calls: trio.MemorySendChannel[frames.Call] | None, bucket: TokenBucket | None
    ) -> None:
        limits = self.limits
        while True:
            try:
                text = await self.ws.get_message()
            except Exception as exc:
                if _is_closed_error(exc):
                    return
                raise
            if bucket is None:
                answer = self._on_frame(text, nursery)
                if answer is not None:
                    await self._send_answer(answer)
                continue
            assert limits is not None and calls is not None  # `run` passes a bucket only with limits and a queue
            if limits.messages_per_second > 0 and not bucket.take(trio.current_time()):
                raise FloodError(
                    1008,
                    f"more than {limits.messages_per_second:g} messages a second (burst {limits.burst})",
                    "rate_limited",
                )
            if isinstance(text, bytes):
                # OCPP-J 1.6 §3: messages are JSON in text frames; 1003 is "unsupported data".
                raise FloodError(1003, "binary frames are not supported: OCPP-J sends JSON text frames", "binary_frame")
            msg = self._decode(text)
            if isinstance(msg, str):
                await self._send_answer(msg)
            elif isinstance(msg, frames.Call):
                try:
                    calls.send_nowait(msg)
                except trio.WouldBlock:
                    raise FloodError(
                        1008,
                        f"more than {limits.max_queued_calls} calls waiting for "
                        "answers (OCPP-J allows one outstanding call)",
                        "too_many_calls",
                    ) from None
            elif msg is not None:
                self._on_answer(msg)

    async def _serve_calls(self, calls: trio.MemoryReceiveChannel[frames.Call]) -> None:
        """Answer the peer's Calls one at a time, in the order they came."""
        async for msg in calls:
            route = self._routes.get(msg.action)
            check = self.validate and not (route or {}).get("_skip_schema_validation", False)
            answer = self._on_call(msg, None)
            if isinstance(answer, _Awaiting):
                await self._finish_async(msg, answer.result, check)
            elif answer is not None:
                await self._send_answer(answer)

    async def _close_for(self, exc: FloodError) -> None:
        self.on_event(exc.kind)
        self.close_code = exc.code
        self.log.warning(
            "ocpp.connection_closed peer=%s code=%d reason=%s (%s)", self.peer, exc.code, exc.kind, exc.reason
        )
        aclose = getattr(self.ws, "aclose", None)
        if aclose is not None:
            with trio.move_on_after(2):
                await aclose(exc.code, exc.reason[:120])

    def _on_frame(self, text: str | bytes, nursery: trio.Nursery) -> str | None:
        """Route one frame; returns an answer to send now, if there is one."""
        msg = self._decode(text)
        if msg is None or isinstance(msg, str):
            return msg
        if isinstance(msg, frames.Call):
            return self._on_call(msg, nursery)
        self._on_answer(msg)
        return None

    def _decode(self, text: str | bytes) -> frames.Call | frames.CallResult | frames.CallError | str | None:
        """The frame, or the CallError text to answer a broken one with."""
        if self.trace is not None:
            self.trace("in", text if isinstance(text, str) else text.decode("utf-8", "replace"))
        try:
            return frames.decode(text)
        except OcppCallError as exc:
            self.on_event("bad_frame")
            self._quiet(
                self.log,
                logging.WARNING,
                "bad_frame",
                trio.current_time(),
                "ocpp.bad_frame peer=%s code=%s reason=%r",
                self.peer,
                exc.code,
                exc.description,
            )
            return _error_frame(exc.unique_id or "-1", exc, self.version)

    def _on_answer(self, msg: frames.CallResult | frames.CallError) -> None:
        waiter = self._pending.get(msg.unique_id)
        if waiter is None or waiter.frame is not None:
            self._quiet(
                self.log,
                logging.WARNING,
                "unexpected_answer",
                trio.current_time(),
                "ocpp.unexpected_answer peer=%s id=%s (late after a timeout, or never asked)",
                self.peer,
                msg.unique_id,
            )
            return
        waiter.frame = msg
        waiter.event.set()

    @overload
    def _on_call(self, msg: frames.Call, nursery: trio.Nursery) -> str | None: ...

    @overload
    def _on_call(self, msg: frames.Call, nursery: None) -> str | _Awaiting | None: ...

    def _on_call(self, msg: frames.Call, nursery: trio.Nursery | None) -> str | _Awaiting | None:
        """Call the handler; a sync result is answered now, a coroutine finishes in a task
        (or, without a nursery, is handed back to the caller to await)."""
        route = self._routes.get(msg.action)
        try:
            if route is None or "_on_action" not in route:
                if msg.action in schemas.known_actions(self.version):
                    raise OcppCallError("NotSupported", f"{msg.action} is not supported by this endpoint")
                raise OcppCallError("NotImplemented", f"unknown action {msg.action!r}")
            check = self.validate and not route.get("_skip_schema_validation", False)
            if check:
                schemas.validate(msg.action, msg.payload, response=False, unique_id=msg.unique_id, version=self.version)
            result = route["_on_action"](self._handlers, **to_snake(msg.payload))
        except Exception as exc:
            return self._failure(msg, exc)
        if inspect.isawaitable(result):
            if nursery is None:
                return _Awaiting(result)
            nursery.start_soon(self._finish_async, msg, result, check)
            return None
        return self._success(msg, result, check)

    async def _finish_async(self, msg: frames.Call, pending: Any, check: bool) -> None:
        try:
            result = await pending
        except ConnectionClosedError:
            return
        except Exception as exc:
            await self._send_answer(self._failure(msg, exc))
            return
        await self._send_answer(self._success(msg, result, check))

    def _success(self, msg: frames.Call, result: Any, check: bool) -> str:
        try:
            payload = to_payload(result)
            if check:
                try:
                    schemas.validate(msg.action, payload, response=True, version=self.version)
                except OcppCallError as exc:
                    self.log.error("ocpp.bad_own_response peer=%s action=%s error=%s", self.peer, msg.action, exc)
                    raise OcppCallError("InternalError", "the handler produced an invalid response") from None
        except Exception as exc:
            return self._failure(msg, exc)
        return frames.encode_result(msg.unique_id, payload)

    def _failure(self, msg: frames.Call, exc: Exception) -> str:
        """The CallError frame for a Call that failed: its own code, or InternalError for a crash."""
        if isinstance(exc, OcppCallError):
            self._quiet(
                self.log,
                logging.WARNING,
                "call_error",
                trio.current_time(),
                "ocpp.call_error peer=%s action=%s id=%s code=%s reason=%r",
                self.peer,
                msg.action,
                msg.unique_id,
                exc.code,
                exc.description,
            )
            return _error_frame(msg.unique_id, exc, self.version)
        self.log.error(
            "ocpp.handler_crashed peer=%s action=%s id=%s", self.peer, msg.action, msg.unique_id, exc_info=exc
        )
        return _error_frame(
            msg.unique_id, OcppCallError("InternalError", f"{msg.action} failed inside the receiver"), self.version
        )

    async def _send_answer(self, frame: str) -> None:
        try:
            await self._send(frame)
        except ConnectionClosedError:
            self.log.info("ocpp.answer_lost peer=%s (connection closed)", self.peer)


class _Awaiting:
    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


def _error_frame(uid: str, exc: OcppCallError, version: OcppVersion) -> str:
    return frames.encode_error(uid, version.code(exc.code), exc.description, exc.details)


def _is_closed_error(exc: BaseException) -> bool:
    import trio_websocket

    return isinstance(exc, trio_websocket.ConnectionClosed | trio.ClosedResourceError | trio.BrokenResourceError)
