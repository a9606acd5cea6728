"""`csms serve`: one trio nursery runs the database writer, the OCPP WebSocket server and the REST API."""

from __future__ import annotations

import gc
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from sqlalchemy import select
from trio_websocket import Endpoint, WebSocketConnection, WebSocketRequest, serve_websocket

from .api.app import create_app
from .clock import Clock, SystemClock
from .config import Settings
from .context import Context
from .db.database import Database
from .db.engine import create_schema, make_engine, redact
from .db.models import ChargePoint
from .db.ocpp_store import BULK_STATEMENTS
from .handlers import ChargePointHandlers
from .maintenance import Thresholds
from .maintenance_runner import maintenance_loop, run_offline, watch_silent_connectors
from .metrics import CONNECTED, HANDSHAKES_REFUSED
from .ocppj import SUBPROTOCOL, OcppConnection
from .payment_provider import load_provider
from .registry import LiveChargePoint, Registry

__all__ = ["serve", "Addresses", "run_until_signal"]

log = logging.getLogger("csms.server")
_PATH_PREFIX = "/ocpp/"


@dataclass(frozen=True)
class Addresses:
    ocpp: str  # ws://host:port/ocpp  (charge points append /{chargePointId})
    http: str  # http://host:port

    def as_json(self) -> str:
        return json.dumps({"ocpp": self.ocpp, "http": self.http})


def _charge_point_id(path: str) -> str | None:
    """`/ocpp/{id}` -> id. Chargers configured with a trailing slash (`/ocpp/CP001/`) are the same id."""
    path = path.split("?", 1)[0]
    if not path.startswith(_PATH_PREFIX):
        return None
    cp_id = unquote(path[len(_PATH_PREFIX):].rstrip("/"))
    if not cp_id or "/" in cp_id or len(cp_id) > 64:
        return None
    return cp_id


def _remote(request: WebSocketRequest) -> str:
    r = request.remote
    return f"{r.address}:{r.port}" if isinstance(r, Endpoint) else str(r)


def _on_every_frame(ws: WebSocketConnection, seen: Callable[[], None]) -> bool:
    """Call `seen()` whenever bytes arrive from the peer: OCPP messages, pings, pongs, close frames.

    OCPP-J lets a charger keep its connection alive with WebSocket pings alone, so liveness
    must count them. trio-websocket answers pings and matches pongs inside its reader task
    with no hook for either, so this wraps the connection's wsproto `receive_data`, which
    every received byte passes through. Returns False if a trio-websocket release no longer
    has it: then OCPP messages and pongs to our own pings still count (and
    tests/e2e/test_maintenance.py fails on the charger that only pings).
    """
    proto = getattr(ws, "_wsproto", None)
    receive = getattr(proto, "receive_data", None)
    if receive is None:
        return False

    def receive_data(data: bytes | None) -> None:
        seen()
        receive(data)

    proto.receive_data = receive_data
    return True


class OcppEndpoint:
    """Accepts charge-point WebSockets and serves each with an OcppConnection."""

    def __init__(self, ctx: Context, nursery: trio.Nursery) -> None:
        self.ctx = ctx
        self.nursery = nursery

    async def _refuse(self, request: WebSocketRequest, status: int, reason: str, why: str, **kv: str) -> None:
        HANDSHAKES_REFUSED.labels(reason).inc()
        extra = " ".join(f"{k}={v}" for k, v in kv.items())
        log.warning("handshake.refused reason=%s path=%s %s remote=%s (%s)", reason, request.path, extra,
                    _remote(request), why)
        await request.reject(status, body=why.encode())

    async def __call__(self, request: WebSocketRequest) -> None:
        ctx = self.ctx
        cp_id = _charge_point_id(request.path)
        if cp_id is None:
            return await self._refuse(request, 404, "bad_path", f"connect to {_PATH_PREFIX}{{chargePointId}}")
        # OCPP-J 1.6 §3.1.2: the charger MUST name its version in Sec-WebSocket-Protocol. Offering
        # only others is refused. Offering none is accepted as ocpp1.6 on purpose, with a warning
        # (chargers in the field omit the header), and answered without the header, as a client
        # that offered none requires (RFC 6455 §4.1).
        offered = list(request.proposed_subprotocols)
        if offered and SUBPROTOCOL not in offered:
            return await self._refuse(
                request, 400, "subprotocol",
                f"none of the offered subprotocols ({', '.join(offered)}) is spoken here; this CSMS speaks "
                f"{SUBPROTOCOL} only: offer Sec-WebSocket-Protocol: {SUBPROTOCOL}",
                charge_point=cp_id, offered=",".join(offered),
            )
        if cp_id not in ctx.known_charge_points and not ctx.settings.allow_unknown_chargers:
            return await self._refuse(
                request, 404, "unknown_charge_point",
                "unknown charge point; register a station for it or run with --allow-unknown-chargers",
                charge_point=cp_id,
            )
        if not offered:
            log.warning("handshake.no_subprotocol charge_point=%s remote=%s (no subprotocol offered, assuming %s)",
                        cp_id, _remote(request), SUBPROTOCOL)
        ws = await request.accept(subprotocol=SUBPROTOCOL if offered else None)
        now = ctx.clock.now()
        handlers = ChargePointHandlers(ctx, cp_id)
        conn = OcppConnection(ws, peer=cp_id, handlers=handlers, call_timeout=ctx.settings.call_timeout_seconds)
        live = LiveChargePoint(cp_id, conn, now, now, ctx.settings.heartbeat_interval)
        handlers.live = live

        def seen() -> None:
            live.last_seen = ctx.clock.now()

        # TEST BREAK pongs_not_liveness (mutation testing only): liveness from OCPP messages alone.
        if "pongs_not_liveness" in ctx.settings.test_breaks or not _on_every_frame(ws, seen):
            conn.trace = lambda direction, _text: seen() if direction == "in" else None
        old = ctx.registry.attach(live)
        CONNECTED.set(len(ctx.registry))
        if old is not None:
            log.info("charge_point.replaced charge_point=%s (a new connection took over)", cp_id)
            self.nursery.start_soon(old.connection.ws.aclose)
        log.info("charge_point.connected charge_point=%s remote=%s", cp_id, request.remote)
        try:
            async with trio.open_nursery() as watchers:
                watchers.start_soon(watch_silent_connectors, ctx, live)
                await conn.run()
                watchers.cancel_scope.cancel()
        except Exception:
            # One charge point's failure must never take the server (and every other one) down.
            log.exception("charge_point.connection_failed charge_point=%s (closing this connection only)", cp_id)
            with trio.move_on_after(2):
                await ws.aclose(1011, "internal error")
        finally:
            # TEST BREAK registry_never_forgets (mutation testing only): a closed connection stays "online".
            if "registry_never_forgets" not in ctx.settings.test_breaks and ctx.registry.detach(live):
                log.info("charge_point.disconnected charge_point=%s", cp_id)
            CONNECTED.set(len(ctx.registry))


def _load_known(db: Database) -> set[str]:
    return set(db.run_sync(lambda s: list(s.scalars(select(ChargePoint.id)))))


async def serve(
    settings: Settings,
    *,
    clock: Clock | None = None,
    shutdown: trio.Event | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the CSMS until `shutdown` is set (or the task is cancelled); reports Addresses when ready."""
    clock = SystemClock() if clock is None else clock
    shutdown = trio.Event() if shutdown is None else shutdown
    engine = make_engine(settings.db_url)
    try:
        await trio.to_thread.run_sync(create_schema, engine)
        db = Database(engine, bulk_statements=BULK_STATEMENTS)
        known = await trio.to_thread.run_sync(_load_known, db)
        ctx = Context(settings=settings, clock=clock, db=db, registry=Registry(), known_charge_points=known,
                      payments=load_provider(settings.payment_provider))
        log.info("csms.database url=%s charge_points=%d", redact(engine.url.render_as_string(False)), len(known))
        # Start-up maintenance runs before any charge point can connect.
        actions = await trio.to_thread.run_sync(
            partial(run_offline, db, Thresholds.from_settings(settings), clock.now(), dry_run=False))
        log.info("csms.startup_maintenance actions=%d", len(actions))
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run_writer)
            async with trio.open_nursery() as front:
                await front.start(maintenance_loop, ctx)
                addresses = await _start_front(ctx, front, shutdown)
                log.info("csms.listening ocpp=%s/{chargePointId} http=%s docs=%s/docs",
                         addresses.ocpp, addresses.http, addresses.http)
                if settings.ports_file:
                    with open(settings.ports_file, "w", encoding="utf-8") as fh:
                        fh.write(addresses.as_json())
                task_status.started(addresses)
                await shutdown.wait()
                log.info("csms.stopping closing=%d connections", len(ctx.registry))
                for live in ctx.registry:
                    front.start_soon(live.connection.ws.aclose, 1001, "CSMS shutting down")
                with trio.move_on_after(5):
                    while len(ctx.registry):
                        await trio.sleep(0.05)
                front.cancel_scope.cancel()
            nursery.cancel_scope.cancel()  # the writer flushes what is queued before it returns
        log.info("csms.stopped writes=%d batches=%d", db.writes, db.batches)
    finally:
        engine.dispose()


async def _start_front(ctx: Context, nursery: trio.Nursery, shutdown: trio.Event) -> Addresses:
    settings = ctx.settings
    endpoint = OcppEndpoint(ctx, nursery)
    server = await nursery.start(
        partial(
            serve_websocket, endpoint, settings.ocpp_host, settings.ocpp_port, None,
            max_message_size=settings.max_frame_bytes,
        )
    )
    ocpp_port = server.port
    hc = HypercornConfig()
    hc.bind = [f"{settings.http_host}:{settings.http_port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 3
    binds = await nursery.start(partial(hypercorn_serve, create_app(ctx), hc, shutdown_trigger=shutdown.wait))
    http = binds[0] if binds else f"http://{settings.http_host}:{settings.http_port}"
    return Addresses(ocpp=f"ws://{_host(settings.ocpp_host)}:{ocpp_port}/ocpp", http=http)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _tune_gc() -> None:
    """Fewer, cheaper collections: start-up objects are frozen out of the scans, and the
    young-generation threshold is raised so full collections (100 ms pauses under load) are rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1_000)


async def run_until_signal(settings: Settings) -> None:
    """The process entry point: SIGINT/SIGTERM trigger a graceful shutdown."""
    _tune_gc()
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("csms.signal %s: shutting down gracefully", signal.Signals(signum).name)
                    shutdown.set()
                    return

        nursery.start_soon(watch_signals)
        await serve(settings, shutdown=shutdown)
        nursery.cancel_scope.cancel()
