"""ASGI: a REST command sent with an `Idempotency-Key` header runs at most once, on any node.

The rules are csms.core.idempotency's; this reads the request body (to tell one request from another),
claims the key in the database before the command runs (a durable write: a node that dies after it
leaves the key taken), passes the request on, and stores the answer for replays. Commands are POST,
PUT, PATCH and DELETE under /api/; without the header nothing changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from csms.api.envelope import envelope
from csms.core.idempotency import KEY_HEADER, Outcome, check_key, decide, fingerprint, kept_answer
from csms.db import idempotency_store
from csms.db.database import is_outage

if TYPE_CHECKING:
    from csms.context import Context

__all__ = ["IdempotencyKeys"]

log = logging.getLogger("csms.api")

_COMMANDS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_BODY = 64 * 1024  # REST command bodies are a few hundred bytes
_MAX_KEPT = 64 * 1024  # an answer longer than this is not replayed in full (none of the commands' is)


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
        mine = fingerprint(scope["method"], target, _header(scope, b"authorization") or "", body)
        db, now = self.ctx.db, self.ctx.clock.now()
        try:
            existing = await db.write(lambda s: idempotency_store.claim(s, key, mine, now))
            outcome = decide(existing, mine)
            stored = await db.read(lambda s: idempotency_store.answer(s, key)) if outcome is Outcome.REPLAY else None
        except Exception as exc:
            if not is_outage(exc):
                raise
            await envelope(False, "The database is unavailable; try again shortly", None, 503)(scope, receive, send)
            return
        if outcome is Outcome.MISMATCH:
            log.info("api.idempotency_key_reused path=%s", scope.get("path", "")[:120])
            message_ = "This Idempotency-Key was used for another request; use a new key for a new request"
            await envelope(False, message_, {"code": "IdempotencyKeyReused"}, 422)(scope, receive, send)
            return
        if outcome is Outcome.IN_PROGRESS or (outcome is Outcome.REPLAY and stored is None):
            message_ = (
                "A request with this Idempotency-Key is still running, or its server stopped while it ran; "
                "it is not run again"
            )
            await envelope(False, message_, {"code": "IdempotencyKeyInUse"}, 409, {"Retry-After": "1"})(
                scope, receive, send
            )
            return
        if outcome is Outcome.REPLAY:
            assert stored is not None
            headers = [(b"content-type", (stored.content_type or "application/json").encode("latin-1"))]
            payload = stored.body.encode("utf-8")
            headers += [(b"content-length", str(len(payload)).encode()), (b"idempotent-replayed", b"true")]
            await send({"type": "http.response.start", "status": stored.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await self._run(scope, body, send, key)

    async def _run(self, scope: Any, body: bytes, send: Any, key: str) -> None:
        """The command itself, its answer passed on as it comes and kept (or the key given back)."""
        sent = False

        async def replay_body() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

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

        db = self.ctx.db
        try:
            await self.app(scope, replay_body, keep)
        except Exception:
            # Whether the command ran is unknown: the key stays taken, answered as an internal error (cancelled,
            # it stays "running": 409 to a retry).
            text = '{"success": false, "message": "Internal error; the command may have run"}'
            now = self.ctx.clock.now()
            await db.write(lambda s: idempotency_store.finish(s, key, 500, "application/json", text, now))
            raise
        if kept_answer(status):
            text = b"".join(chunks)[:_MAX_KEPT].decode("utf-8", "replace")
            now = self.ctx.clock.now()
            await db.write(lambda s: idempotency_store.finish(s, key, status, content_type, text, now))
        else:
            await db.write(lambda s: idempotency_store.release(s, key))
