"""One OCPP-J connection over a trio WebSocket, used by the CSMS and the simulator.

It owns the receive loop, dispatches incoming Calls to `@on(...)` handlers (the
`ocpp` package's routing decorators), and correlates our outgoing Calls with
their answers. OCPP-J allows one outstanding Call per direction: outgoing calls
take a `trio.Lock`, and each waits for its answer inside a cancel scope.
"""

from __future__ import annotations

import dataclasses
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
        return cls(**camel_to_snake_case(payload))

    async def call_raw(
        self, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a Call; return the CallResult payload (camelCase dict).

        Raises CallTimeoutError, CallErrorReceived, InvalidResponseError or
        ConnectionClosedError; the connection stays usable after each of them.
        """
        if self.validate:
            schemas.validate(action, payload, response=False)
        timeout = self.call_timeout if timeout is None else timeout
        async with self._call_lock:
            if self.closed:
                raise ConnectionClosedError(f"connection to {self.peer} is closed")
            uid = f"{self._id_prefix}-{next(self._ids)}"
            waiter = _Waiter()
            self._pending[uid] = waiter
            try:
                await self._send(frames.encode_call(uid, action, payload))
                with trio.move_on_after(timeout):
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
        """Serve incoming frames until the WebSocket closes; then fail pending calls."""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        text = await self.ws.get_message()
                    except Exception as exc:
                        if _is_closed_error(exc):
                            break
                        raise
                    self._on_frame(text, nursery)
                nursery.cancel_scope.cancel()
        finally:
            self.closed = True
            for waiter in self._pending.values():
                waiter.event.set()

    def _on_frame(self, text: str | bytes, nursery: trio.Nursery) -> None:
        if self.trace is not None:
            self.trace("in", text if isinstance(text, str) else text.decode("utf-8", "replace"))
        try:
            msg = frames.decode(text)
        except OcppCallError as exc:
            self.log.warning("ocpp.bad_frame peer=%s code=%s reason=%r", self.peer, exc.code, exc.description)
            nursery.start_soon(self._send_error, exc.unique_id or "-1", exc)
            return
        if isinstance(msg, frames.Call):
            nursery.start_soon(self._handle_call, msg)
            return
        waiter = self._pending.get(msg.unique_id)
        if waiter is None or waiter.frame is not None:
            self.log.warning(
                "ocpp.unexpected_answer peer=%s id=%s (late after a timeout, or never asked)",
                self.peer, msg.unique_id,
            )
            return
        waiter.frame = msg
        waiter.event.set()

    async def _send_error(self, uid: str, exc: OcppCallError) -> None:
        try:
            await self._send(frames.encode_error(uid, exc.code, exc.description, exc.details))
        except ConnectionClosedError:
            pass

    async def _handle_call(self, msg: frames.Call) -> None:
        action = msg.action
        try:
            route = self._routes.get(action)
            if route is None or "_on_action" not in route:
                if action in schemas.known_actions():
                    raise OcppCallError("NotSupported", f"{action} is not supported by this endpoint")
                raise OcppCallError("NotImplemented", f"unknown action {action!r}")
            skip = route.get("_skip_schema_validation", False)
            if self.validate and not skip:
                schemas.validate(action, msg.payload, response=False, unique_id=msg.unique_id)
            result = route["_on_action"](**camel_to_snake_case(msg.payload))
            if inspect.isawaitable(result):
                result = await result
            payload = to_payload(result)
            if self.validate and not skip:
                try:
                    schemas.validate(action, payload, response=True)
                except OcppCallError as exc:
                    self.log.error("ocpp.bad_own_response peer=%s action=%s error=%s", self.peer, action, exc)
                    raise OcppCallError("InternalError", "the handler produced an invalid response") from None
        except OcppCallError as exc:
            self.log.warning(
                "ocpp.call_error peer=%s action=%s id=%s code=%s reason=%r",
                self.peer, action, msg.unique_id, exc.code, exc.description,
            )
            await self._send_error(msg.unique_id, exc)
            return
        except ConnectionClosedError:
            return
        except Exception:
            self.log.exception("ocpp.handler_crashed peer=%s action=%s id=%s", self.peer, action, msg.unique_id)
            await self._send_error(
                msg.unique_id, OcppCallError("InternalError", f"{action} failed inside the receiver")
            )
            return
        try:
            await self._send(frames.encode_result(msg.unique_id, payload))
        except ConnectionClosedError:
            self.log.info("ocpp.answer_lost peer=%s action=%s id=%s (connection closed)", self.peer, action, msg.unique_id)


def _is_closed_error(exc: BaseException) -> bool:
    import trio_websocket

    return isinstance(exc, trio_websocket.ConnectionClosed | trio.ClosedResourceError | trio.BrokenResourceError)
