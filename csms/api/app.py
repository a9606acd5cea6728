"""The REST API (FastAPI on trio via anyio), sharing live state with the OCPP side."""

from __future__ import annotations

import importlib.metadata
import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from csms import ui
from csms.api import (
    chargepoints,
    connectors,
    docs,
    id_tags,
    maintenance,
    payments,
    sessions,
    stations,
    tariffs,
    transactions,
    webhooks,
)
from csms.api.deadline import RequestDeadline
from csms.api.envelope import ERROR_RESPONSES, ApiError, envelope, http_status, refuse_nul_in_url
from csms.api.idempotency import IdempotencyKeys
from csms.api.proxies import SecureTransport, parse_trusted_proxies
from csms.context import Context
from csms.core.web_access import TokenThrottle
from csms.db.database import DatabaseHungError, is_outage
from csms.errors import CsmsError
from csms.services.watch import Watcher
from csms.services.webhooks import WebhookDispatcher

__all__ = ["create_app"]

log = logging.getLogger("csms.api")

try:  # what /health and the OpenAPI page say; a checkout that was never installed says so
    VERSION = importlib.metadata.version("unstuck")
except importlib.metadata.PackageNotFoundError:
    VERSION = "0+unknown"


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def create_app(ctx: Context, *, dispatcher: WebhookDispatcher | None = None, watcher: Watcher | None = None) -> FastAPI:
    """The REST API and the dashboard; `dispatcher` and `watcher` are the running ones (None in tests that
    build the app by hand: no receivers, no status history)."""
    app = FastAPI(
        title="unstuck CSMS",
        version=VERSION,
        description="OCPP 1.6J central system: stations, sessions, occupancy, unlock, maintenance.",
        responses=ERROR_RESPONSES,
        dependencies=[Depends(refuse_nul_in_url)],
        docs_url=None,  # /docs and /redoc are csms/api/docs.py's: their assets served from here, not a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.webhooks = dispatcher
    app.state.watcher = watcher
    app.state.token_throttle = TokenThrottle()  # failed bearer tokens per client address (csms.api.auth)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        if exc.status >= 500:
            log.error("api.error path=%s status=%s message=%r", request.url.path, exc.status, exc.message)
        return envelope(False, exc.message, exc.data, exc.status, exc.headers)

    @app.exception_handler(CsmsError)
    async def _domain_error(request: Request, exc: CsmsError):
        status = http_status(exc)
        if status >= 500:
            log.warning("api.upstream_error path=%s status=%s message=%r", request.url.path, status, exc.message)
        return envelope(False, exc.message, exc.payload(), status)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError):
        problems = [f"{_field_name(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()]
        message = "Invalid request data: " + "; ".join(problems)
        log.info("api.bad_request path=%s problems=%r", request.url.path, problems)
        return envelope(False, message, {"errors": problems}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return envelope(False, str(exc.detail), None, exc.status_code)

    # Registered by class, database errors are answered here and go no further; the catch-all below
    # answers too, but Starlette then re-raises to the server, which logs a traceback per request.
    async def _database_error(request: Request, exc: Exception):
        if is_outage(exc):
            ctx.db.outage.failed(f"{request.method} {request.url.path}", exc)  # one line per outage
            return envelope(
                False,
                "The database is unavailable; try again shortly (queued charger updates are "
                "kept and stored when it is back)",
                None,
                503,
            )
        log.error("api.crashed path=%s", request.url.path, exc_info=exc)
        return envelope(False, "Internal error; see the server log", None, 500)

    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(DatabaseHungError, _database_error)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        return await _database_error(request, exc)

    @app.get("/health/live", tags=["ops"])
    async def live():
        """200 while this process serves: the check for a load balancer. A node whose database is down still
        takes chargers (their updates wait in memory) and answers REST with 503, so taking every node out of
        the balancer for a database blip would only refuse chargers everywhere. `database` is as last seen."""
        return {
            "status": "ok",
            "database": "down" if ctx.db.outage.down else "up",
            "connectedChargePoints": len(ctx.registry),
        }

    @app.get("/health", tags=["ops"], responses={503: {"description": "The database is down (`database: down`)"}})
    async def health():
        """Readiness, for monitoring: `ok` only when the database answers `SELECT 1` within 2 s; else 503 and
        `database: down`. A load balancer checks `/health/live` instead."""
        problem = await ctx.db.ping(timeout=2.0)
        body = {
            "name": "unstuck csms",
            "version": VERSION,
            "status": "ok" if problem is None else "degraded",
            "database": "up" if problem is None else "down",
            "connectedChargePoints": len(ctx.registry),
            "dbQueue": ctx.db.queued,
        }
        if problem is not None:
            body["message"] = f"database unavailable: {problem}"
            return JSONResponse(body, status_code=503)
        return body

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(stations.router)
    app.include_router(chargepoints.router)
    app.include_router(sessions.router)
    app.include_router(connectors.router)
    app.include_router(transactions.router)
    app.include_router(payments.router)
    app.include_router(maintenance.router)
    app.include_router(id_tags.router)
    app.include_router(webhooks.router)
    app.include_router(tariffs.router)
    ui.mount(app)  # the dashboard at /ui/
    docs.mount(app)  # /docs and /redoc
    # Outermost but for CORS: every other middleware (the console's cookies) sees the scheme as the browser used it.
    app.add_middleware(IdempotencyKeys, ctx=ctx)  # inside the deadline: a request too late claims no key
    app.add_middleware(RequestDeadline, budget=ctx.settings.request_budget_seconds)  # inside: sees PROXIED
    app.add_middleware(SecureTransport, trusted=parse_trusted_proxies(ctx.settings.trusted_proxies))
    if ctx.settings.cors_origins:
        # Off unless --cors-origin names a web front end: without CORS headers a browser page from
        # another origin cannot call this API with a user's token. Bearer tokens, no cookies. Outermost, so
        # that the answers of the middlewares above (a replayed command, a refusal) carry the headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed", "Retry-After"],
            allow_credentials=False,
        )
    return app
