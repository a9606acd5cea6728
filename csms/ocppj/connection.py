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
from typing import Any, Protocol

import trio
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import create_route_map
from ocpp.v16 import call_result as v16_call_result

from . import frames, schemas
from .errors import (
    CallErrorReceived,
    CallTimeoutError,
    ConnectionClosedError,
    InvalidResponseError,
    OcppCallError,
)

__all__ = ["OcppConnection", "WebSocketLike", "Trace"]

log = logging.getLogger("ocppj")

Trace = Callable[[str, str], None]
"""Called with ("in" | "out", frame text) for every frame: the simulator's wire log."""


class WebSocketLike(Protocol):
    async def get_message(self) -> str | bytes: ...
    async def send_message(self, message: str | bytes) -> None: ...


class _Waiter:
    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.frame: frames.CallResult | frames.CallError | None = None


@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    return next(iter(camel_to_snake_case({key: None})))


def to_snake(data: Any) -> Any:
    """The `ocpp` package's camel_to_snake_case, with each key's conversion cached (a regex per key is slow)."""
    if isinstance(data, dict):
        return {_snake_key(k): to_snake(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_snake(v) for v in data]
    return data


def to_payload(obj: Any) -> dict[str, Any]:
    """A v16 dataclass (snake_case) or a ready camelCase dict -> wire payload."""
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj):
        return snake_to_camel_case(remove_nones(serialize_as_dict(obj)))
    raise TypeError(f"handler returned {type(obj).__name__}, expected a v16 call_result or dict")


class OcppConnection:
    """An OCPP-J 1.6 endpoint on an open WebSocket; `run()` serves until it closes."""

    def __init__(
        self,
        ws: WebSocketLike,
        *,
        peer: str,
        handlers: object | None = None,
        call_timeout: float = 30.0,
        validate: bool = True,
        trace: Trace | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.ws = ws
        self.peer = peer
        self.call_timeout = call_timeout
        self.validate = validate
        self.trace = trace
        self.log = logger or log
        self._routes = create_route_map(handlers) if handlers is not None else {}
        self._call_lock = trio.Lock()
        self._pending: dict[str, _Waiter] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self.closed = False

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
        """Send a v16 `call.X` dataclass and return the `call_result.X` answer."""
        action = type(request).__name__
        payload = await self.call_raw(action, to_payload(request), timeout=timeout)
        cls = getattr(v16_call_result, action)
        return cls(**to_snake(payload))

    async def call_raw(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a Call; return the CallResult payload (camelCase dict).

        Raises CallTimeoutError, CallErrorReceived, InvalidResponseError or
        ConnectionClosedError; the connection stays usable after each of them.
        The timeout covers the whole call, including waiting behind an earlier
        outstanding call (one per direction), so a caller is never held longer.
        """
        if self.validate:
            schemas.validate(action, payload, response=False)
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
                schemas.validate(action, frame.payload, response=True)
            except OcppCallError as exc:
                raise InvalidResponseError(f"{self.peer} answered {action} with an invalid payload: {exc}") from None
        return frame.payload

    async def send_raw(self, text: str) -> None:
        """Send any text as-is (tests of a peer's error handling)."""
        await self._send(text)

    # ---------------------------------------------------------------- receiving
    async def run(self) -> None:
        """Serve incoming frames until the WebSocket closes; then fail pending calls.

        Calls to sync handlers are answered inline (no task per call on the hot
        path); async handlers run as tasks of this connection's nursery, so the
        loop keeps reading answers to our own calls meanwhile.
        """
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        text = await self.ws.get_message()
                    except Exception as exc:
                        if _is_closed_error(exc):
                            break
                        raise
                    answer = self._on_frame(text, nursery)
                    if answer is not None:
                        await self._send_answer(answer)
                nursery.cancel_scope.cancel()
        finally:
            self.closed = True
            for waiter in self._pending.values():
                waiter.event.set()

    def _on_frame(self, text: str | bytes, nursery: trio.Nursery) -> str | None:
        """Route one frame; returns an answer to send now, if there is one."""
        if self.trace is not None:
            self.trace("in", text if isinstance(text, str) else text.decode("utf-8", "replace"))
        try:
            msg = frames.decode(text)
        except OcppCallError as exc:
            self.log.warning("ocpp.bad_frame peer=%s code=%s reason=%r", self.peer, exc.code, exc.description)
            return _error_frame(exc.unique_id or "-1", exc)
        if isinstance(msg, frames.Call):
            return self._on_call(msg, nursery)
        waiter = self._pending.get(msg.unique_id)
        if waiter is None or waiter.frame is not None:
            self.log.warning(
                "ocpp.unexpected_answer peer=%s id=%s (late after a timeout, or never asked)",
                self.peer, msg.unique_id,
            )
            return None
        waiter.frame = msg
        waiter.event.set()
        return None

    def _on_call(self, msg: frames.Call, nursery: trio.Nursery) -> str | None:
        """Call the handler; a sync result is answered now, a coroutine finishes in a task."""
        route = self._routes.get(msg.action)
        try:
            if route is None or "_on_action" not in route:
                if msg.action in schemas.known_actions():
                    raise OcppCallError("NotSupported", f"{msg.action} is not supported by this endpoint")
                raise OcppCallError("NotImplemented", f"unknown action {msg.action!r}")
            check = self.validate and not route.get("_skip_schema_validation", False)
            if check:
                schemas.validate(msg.action, msg.payload, response=False, unique_id=msg.unique_id)
            result = route["_on_action"](**to_snake(msg.payload))
        except Exception as exc:
            return self._failure(msg, exc)
        if inspect.isawaitable(result):
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
                    schemas.validate(msg.action, payload, response=True)
                except OcppCallError as exc:
                    self.log.error("ocpp.bad_own_response peer=%s action=%s error=%s", self.peer, msg.action, exc)
                    raise OcppCallError("InternalError", "the handler produced an invalid response") from None
        except Exception as exc:
            return self._failure(msg, exc)
        return frames.encode_result(msg.unique_id, payload)

    def _failure(self, msg: frames.Call, exc: Exception) -> str:
        """The CallError frame for a Call that failed: its own code, or InternalError for a crash."""
        if isinstance(exc, OcppCallError):
            self.log.warning("ocpp.call_error peer=%s action=%s id=%s code=%s reason=%r",
                             self.peer, msg.action, msg.unique_id, exc.code, exc.description)
            return _error_frame(msg.unique_id, exc)
        self.log.error("ocpp.handler_crashed peer=%s action=%s id=%s", self.peer, msg.action, msg.unique_id,
                       exc_info=exc)
        return _error_frame(msg.unique_id, OcppCallError("InternalError", f"{msg.action} failed inside the receiver"))

    async def _send_answer(self, frame: str) -> None:
        try:
            await self._send(frame)
        except ConnectionClosedError:
            self.log.info("ocpp.answer_lost peer=%s (connection closed)", self.peer)


def _error_frame(uid: str, exc: OcppCallError) -> str:
    return frames.encode_error(uid, exc.code, exc.description, exc.details)


def _is_closed_error(exc: BaseException) -> bool:
    import trio_websocket

    return isinstance(exc, trio_websocket.ConnectionClosed | trio.ClosedResourceError | trio.BrokenResourceError)
