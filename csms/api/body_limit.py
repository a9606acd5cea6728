"""An ASGI middleware that reads each REST request body, bounded in size and time, before the app does.

Without it a 50 MB body was read whole before authentication, and a POST whose body never came
held its connection open for minutes. A Content-Length above the limit is answered 413 without
reading a byte; a chunked body is counted as it streams and cut off at the limit; a body that has
not fully arrived within the timeout is answered 408. The app then gets the body from memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import anyio

from csms.metrics import HTTP_LIMITS

__all__ = ["BodyLimit"]

log = logging.getLogger("csms.api")


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class BodyLimit:
    def __init__(self, app: Any, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            messages = await self._read_body(scope, receive)
        except _Refused as exc:
            HTTP_LIMITS.labels(exc.kind).inc()
            log.warning("api.refused kind=%s path=%s (%s)", exc.kind, scope.get("path"), exc.message)
            return await _answer(send, exc.status, exc.message)

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Mapping[str, Any], receive: Any) -> list[dict]:
        length = None
        for key, value in scope.get("headers", ()):
            if key.lower() == b"content-length":
                length = value
        if length is not None:
            if not length.strip().isdigit():
                raise _Refused(400, "bad_content_length", "Content-Length must be a number of bytes")
            if int(length) > self.max_bytes:
                raise _Refused(
                    413,
                    "body_too_large",
                    f"request body of {int(length)} bytes is over the limit of {self.max_bytes} bytes",
                )
        messages: list[dict] = []
        size = 0
        with anyio.move_on_after(self.timeout) as scope_:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    return messages  # http.disconnect: the app sees it as it would have
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    raise _Refused(413, "body_too_large", f"request body is over the limit of {self.max_bytes} bytes")
                if not message.get("more_body", False):
                    return messages
        assert scope_.cancel_called
        raise _Refused(408, "body_timeout", f"request body did not arrive within {self.timeout:g} s")


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"success": False, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
