"""ASGI: a REST command sent with an `Idempotency-Key` header runs at most once, on any node.

The rules are csms.core.idempotency's; this checks the caller's token first (a stranger claims nothing),
reads the request body (to tell one request from another), claims the key in the database before the
command runs (a durable write: a node that dies after it leaves the key taken), passes the request on,
and stores the answer for replays. Commands are POST, PUT, PATCH and DELETE under /api/; without the
header nothing changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from csms.api.auth import authenticate
from csms.api.envelope import ApiError, envelope
from csms.core.idempotency import KEY_HEADER, Outcome, check_key, decide, fingerprint, kept_answer, stored_key
from csms.db import idempotency_store
from csms.db.database import is_outage

if TYPE_CHECKING:
    from csms.context import Context

__all__ = ["IdempotencyKeys"]

log = logging.getLogger("csms.api")

_COMMANDS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_BODY = 64 * 1024  # REST command bodies are a few hundred bytes
_IN_USE = (
    "A request with this Idempotency-Key is still running, or its server stopped while it ran; it is not run again"
)


def _header(scope: Any, name: bytes) -> str | None:
    values = [raw.decode("latin-1") for k, raw in scope.get("headers", []) if k.lower() == name]
    return values[-1] if values else None


class IdempotencyKeys:
    def __init__(self, app: Any, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        key = None
        if scope["type"] == "http" and scope.get("method") in _COMMANDS and scope.get("path", "").startswith("/api/"):
            key = _header(scope, KEY_HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        problem = check_key(key)
        if problem is not None:
            await envelope(False, problem, {"code": "InvalidIdempotencyKey"}, 400)(scope, receive, send)
            return
        try:  # as the route would, and answered as it would: a stranger's request claims no key
            caller = await authenticate(Request(scope))
        except ApiError as exc:
            await envelope(False, exc.message, exc.data, exc.status, exc.headers)(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > _MAX_BODY:
                await envelope(False, "Request body too large", None, 413)(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        target = scope.get("path", "") + "?" + scope.get("query_string", b"").decode("latin-1")
        mine = fingerprint(scope["method"], target, caller.token, body)
        row_key = stored_key(caller.token, key)
        db, now = self.ctx.db, self.ctx.clock.now()
        try:
            existing = await db.write(lambda s: idempotency_store.claim(s, row_key, mine, now))
            outcome = decide(existing, mine)
            stored = (
                await db.read(lambda s: idempotency_store.answer(s, row_key)) if outcome is Outcome.REPLAY else None
            )
        except Exception as exc:
            if not is_outage(exc):
                raise
            db.outage.failed("idempotency key", exc)
            await envelope(False, "The database is unavailable; try again shortly", None, 503)(scope, receive, send)
            return
        if outcome is Outcome.MISMATCH:
            log.info("api.idempotency_key_reused path=%s", scope.get("path", "")[:120])
            reused = "This Idempotency-Key was used for another request; use a new key for a new request"
            await envelope(False, reused, {"code": "IdempotencyKeyReused"}, 422)(scope, receive, send)
            return
        if outcome is Outcome.IN_PROGRESS or (outcome is Outcome.REPLAY and stored is None):
            in_use = envelope(False, _IN_USE, {"code": "IdempotencyKeyInUse"}, 409, {"Retry-After": "1"})
            await in_use(scope, receive, send)
            return
        if outcome is Outcome.REPLAY:
            assert stored is not None
            payload = stored.body.encode("utf-8")
            headers = [
                (b"content-type", (stored.content_type or "application/json").encode("latin-1")),
                (b"content-length", str(len(payload)).encode()),
                (b"idempotent-replayed", b"true"),
            ]
            await send({"type": "http.response.start", "status": stored.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await self._run(scope, body, receive, send, row_key)

    async def _run(self, scope: Any, body: bytes, receive: Any, send: Any, row_key: str) -> None:
        """The command itself, its answer passed on as it comes and kept (or the key given back)."""
        given = False

        async def body_then_receive() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then what the client does (a disconnect, when it goes)

        status, content_type, chunks = 500, None, []

        async def keep(message: Any) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = next(
                    (v.decode("latin-1") for k, v in message.get("headers", []) if k.lower() == b"content-type"), None
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, body_then_receive, keep)
        except Exception:
            # Whether the command ran is unknown: the key stays taken, answered as an internal error (cancelled,
            # it stays "running": 409 to a retry).
            await self._settle(row_key, 500, "application/json", '{"success":false,"message":"Internal error"}')
            raise
        if kept_answer(status):
            await self._settle(row_key, status, content_type, b"".join(chunks).decode("utf-8", "replace"))
        else:
            await self._settle(row_key, None, None, "")

    async def _settle(self, row_key: str, status: int | None, content_type: str | None, text: str) -> None:
        """Keep the answer (status given) or give the key back (None). The answer has gone to the client: a
        failure here is logged (once per outage) and leaves the key taken, 409 to a retry, never a second run."""
        now = self.ctx.clock.now()
        try:
            if status is None:
                await self.ctx.db.write(lambda s: idempotency_store.release(s, row_key))
            else:
                await self.ctx.db.write(lambda s: idempotency_store.finish(s, row_key, status, content_type, text, now))
        except Exception as exc:
            self.ctx.db.log_failure(exc, "idempotency key", log, "api.idempotency_settle_failed (the key stays taken)")
