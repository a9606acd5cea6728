"""`csms serve`: one trio nursery runs the database writer, the OCPP WebSocket server and the REST API."""

from __future__ import annotations

import gc
import json
import logging
import math
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import Endpoint, WebSocketConnection, WebSocketRequest

from csms.api.app import create_app
from csms.api.body_limit import BodyLimit
from csms.api.proxies import is_trusted_proxy, parse_trusted_proxies
from csms.clock import Clock, SystemClock
from csms.cluster import ClusterNode, run_cluster
from csms.config import Settings
from csms.context import Context
from csms.core.addresses import address_key
from csms.core.chargepoint_auth import (
    UNIFORM_REFUSAL,
    Admit,
    Refuse,
    charge_point_id_problem,
    checks_a_password,
    decide_handshake,
)
from csms.core.maintenance import Thresholds
from csms.core.throttle import AttemptThrottle
from csms.db import credential_store, event_store
from csms.db.database import Database
from csms.db.engine import make_engine, redact
from csms.db.ocpp_store import BULK_STATEMENTS
from csms.db.schema import prepare
from csms.logs import quote_value
from csms.metrics import CONNECTED, CONNECTIONS_REPLACED, HANDSHAKES_REFUSED, OCPP_LIMITS
from csms.ocpp import presence
from csms.ocpp.handlers import ChargePointHandlers
from csms.ocpp.handlers201 import ChargePointHandlers201
from csms.ocpp.registry import LiveChargePoint, Registry
from csms.ocpp.ws_server import GuardedWebSocketServer
from csms.services.maintenance import (
    maintenance_loop,
    probe_after_reconnect,
    run_offline,
    watch_silent_connectors,
)
from csms.services.payment_calls import run_payment_cancels
from csms.services.payment_provider import load_provider
from csms.services.watch import Watcher
from csms.services.webhooks import WebhookDispatcher
from ocppj import V201, VERSIONS, Limits, OcppConnection, OcppVersion, negotiate

__all__ = ["serve", "Addresses", "run_until_signal", "tune_gc"]

log = logging.getLogger("csms.server")
_PATH_PREFIX = "/ocpp/"


@dataclass(frozen=True)
class Addresses:
    ocpp: str  # ws://host:port/ocpp or wss:// with TLS (charge points append /{chargePointId})
    http: str  # http://host:port or https://

    def as_json(self) -> str:
        return json.dumps({"ocpp": self.ocpp, "http": self.http})


def _charge_point_id(path: str) -> tuple[str, str | None] | None:
    """`/ocpp/{id}` -> (id, why it is not a valid id or None); None when the path is not `/ocpp/{one segment}`.

    Chargers configured with a trailing slash (`/ocpp/CP001/`) are the same id.
    """
    path = path.split("?", 1)[0]
    if not path.startswith(_PATH_PREFIX):
        return None
    segment = path[len(_PATH_PREFIX) :].rstrip("/")
    if not segment or "/" in segment:
        return None
    cp_id = unquote(segment)
    return cp_id, charge_point_id_problem(cp_id)


def _header(request: WebSocketRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _remote(request: WebSocketRequest) -> str:
    """The peer's address for logs; "?" once the peer is gone (getpeername fails with ENOTCONN, and that
    must not escape the handler: it took the whole server down under a 20,000-connection ramp)."""
    try:
        r = request.remote
    except OSError:
        return "?"
    return f"{r.address}:{r.port}" if isinstance(r, Endpoint) else str(r)


def _address(request: WebSocketRequest) -> str:
    """The peer's IP address, without its port: what the guess throttle and the refusal log count by."""
    try:
        r = request.remote
    except OSError:
        return "?"
    return str(r.address) if isinstance(r, Endpoint) else "?"


def _clip(value: str, limit: int = 120) -> str:
    """A value a client sent, cut for the log: a refused request's 15 KB path must not cost 15 KB of log."""
    return value if len(value) <= limit else value[:limit] + "…"


class _PerAddressLog:
    """At most `lines` log lines per address per `interval`; the next one logged says how many were left out.
    A refusal flood from one address costs the log a few lines a minute, and each other address keeps its own."""

    def __init__(self, lines: int, interval: float) -> None:
        self.lines, self.interval = lines, interval
        self._windows: dict[str, tuple[float, int, int]] = {}  # address -> (window start, logged, left out)

    def allow(self, address: str, now: float) -> int | None:
        """None: leave this line out; else log it, saying how many were left out before it (0: none)."""
        start, logged, left_out = self._windows.get(address, (now, 0, 0))
        if now - start >= self.interval:
            start, logged = now, 0
        if logged >= self.lines:
            self._windows[address] = (start, logged, left_out + 1)
            return None
        self._windows[address] = (start, logged + 1, 0)
        if len(self._windows) > 10_000:  # bounded: forget the windows that ended (or, in a storm, all)
            live = {a: w for a, w in self._windows.items() if now - w[0] < self.interval}
            self._windows = live if len(live) <= 10_000 else {}
        return left_out


def _forget(ctx: Context, live: LiveChargePoint) -> bool:
    """A connection has closed: its charge point leaves the live registry (unless a newer one replaced it)."""
    return ctx.registry.detach(live)


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
    if proto is None or receive is None:
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
        # scrypt checks run in worker threads, a few at a time: a flood of wrong passwords
        # costs the CSMS at most this many cores.
        self._password_checks = trio.CapacityLimiter(2)
        # A charger coming back from the address it last authenticated from takes whichever is free first of
        # those two and a worker of its own: strangers' guesses queued on the two do not keep it out.
        self._returning_checks = trio.CapacityLimiter(1)
        # Past these, a guess is answered 401 at once, unchecked (csms.core.throttle): per id and address and
        # per address (an IPv6 /64). No per-id bucket: a stranger failing on purpose from anywhere would lock
        # the charger out, and a charger's password (16-40 machine-made characters) is not guessed from many
        # addresses either.
        s = ctx.settings
        self._guesses = AttemptThrottle(
            window=60.0,
            per_name_and_address=s.handshake_failures_per_id_and_address,
            per_address=s.handshake_failures_per_address,
            per_name=None,
        )
        self._refusal_log = _PerAddressLog(lines=10, interval=60.0)
        # Behind a balancer every charger comes from its address: no per-address key for it (one rule with
        # the HTTP port's, csms.api.proxies).
        self._proxies = parse_trusted_proxies(s.trusted_proxies)

    def _key(self, address: str) -> str | None:
        """What a per-address limit counts `address` by; None for a trusted proxy (exempt)."""
        return None if is_trusted_proxy(address, self._proxies) else address_key(address)

    async def _refuse(
        self,
        request: WebSocketRequest,
        status: int,
        reason: str,
        why: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: str | None = None,
        **kv: str,
    ) -> None:
        HANDSHAKES_REFUSED.labels(reason).inc()
        address = _address(request)
        key = self._key(address)
        # A trusted proxy's refusals are capped per path (per charger), not all together: one stranger's
        # refusals must not silence those of the chargers behind the same balancer.
        left_out = self._refusal_log.allow(key or f"{address}|{_clip(request.path, 80)}", trio.current_time())
        if left_out is not None:
            extra = "".join(f" {k}={quote_value(_clip(v))}" for k, v in kv.items())
            more = f" ({left_out} more refusals from this address not logged)" if left_out else ""
            log.warning(
                "handshake.refused reason=%s path=%s%s remote=%s (%s)%s",
                reason,
                _clip(request.path),
                extra,
                _remote(request),
                _clip(why, 400),
                more,
            )
        await request.reject(status, extra_headers=headers or None, body=(why if body is None else body).encode())

    async def __call__(self, request: WebSocketRequest) -> None:
        ctx = self.ctx
        parsed = _charge_point_id(request.path)
        if parsed is None:
            return await self._refuse(request, 404, "bad_path", f"connect to {_PATH_PREFIX}{{chargePointId}}")
        cp_id, problem = parsed
        if problem is not None:
            return await self._refuse(request, 400, "bad_charge_point_id", problem)
        authorization, lab_mode = _header(request, b"authorization"), ctx.settings.allow_unknown_chargers
        address = self._key(_address(request))
        if authorization is not None and (throttled := self._throttled(cp_id, address, lab_mode=lab_mode)):
            return await self._refuse_decision(request, throttled, cp_id)  # a guesser costs not even a read
        # Who may connect (csms.core.chargepoint_auth): read per handshake, so `csms chargers add` and the
        # REST API take effect at once, also while this process runs.
        access = await ctx.db.read_grouped(lambda s: credential_store.load_access(s, cp_id))
        decide = partial(
            decide_handshake,
            cp_id,
            access,
            authorization,
            lab_mode=lab_mode,
            registration_slots_left=ctx.registration_slots_left(cp_id),
        )
        decision: Admit | Refuse
        if checks_a_password(access, authorization, lab_mode=lab_mode):
            decision = await self._check_password(cp_id, address, decide, lab_mode=lab_mode)
        else:
            decision = decide()
        if not isinstance(decision, Admit):
            return await self._refuse_decision(request, decision, cp_id)
        # Then the version, after who it is (SteVe's order). OCPP-J §3.1.2: the charger MUST name its
        # version(s) in Sec-WebSocket-Protocol, in its order of preference; the first we speak wins. As
        # SteVe does (HTTP 400, "No protocol (OCPP version) is specified"), offering none or only others is
        # refused, with a body and a log line saying why.
        offered = list(request.proposed_subprotocols)
        version = negotiate(offered)
        if version is None:
            why = (
                f"none of the offered subprotocols ({_clip(', '.join(offered))}) is spoken here"
                if offered
                else "no subprotocol offered (OCPP-J §3.1.2: the charge point must offer its OCPP version)"
            )
            spoken = " and ".join(sorted((v.subprotocol for v in VERSIONS.values()), reverse=True))
            return await self._refuse(
                request,
                400,
                "subprotocol",
                f"{why}; this CSMS speaks {spoken}: offer one of them in Sec-WebSocket-Protocol",
                charge_point=cp_id,
                offered=_clip(",".join(offered)) or "none",
            )
        if access.known:
            ctx.known_charge_points.add(cp_id)
        if decision.registers:
            ctx.pending_registrations.add(cp_id)
        try:
            ws = await request.accept(subprotocol=version.subprotocol)
            await self._serve(ws, cp_id, _remote(request), decision, version)
        finally:
            if decision.registers and not ctx.registry.is_connected(cp_id):
                ctx.pending_registrations.discard(cp_id)

    def _throttled(self, cp_id: str, address: str | None, *, lab_mode: bool) -> Refuse | None:
        """The refusal of a guess past the throttle's limits (answered unchecked), or None; a trusted proxy
        (`address` None) is not throttled."""
        if address is None:
            return None
        wait = self._guesses.wait(cp_id, address, trio.current_time())
        if wait <= 0:
            return None
        return Refuse(
            401,
            "throttled",
            f"too many failed password checks for this id or from this address: the next is checked in "
            f"{math.ceil(wait)} s",
            challenge=True,
            answer=None if lab_mode else UNIFORM_REFUSAL,
        )

    async def _refuse_decision(self, request: WebSocketRequest, refusal: Refuse, cp_id: str) -> None:
        await self._refuse(
            request,
            refusal.status,
            refusal.reason,
            refusal.why,
            headers=refusal.headers,
            body=refusal.body,
            charge_point=cp_id,
        )

    async def _check_password(
        self, cp_id: str, address: str | None, decide: Callable[[], Admit | Refuse], *, lab_mode: bool
    ) -> Admit | Refuse:
        """`decide` (a scrypt check) in a worker thread, unless this id or address failed too often: then a
        refusal at once. An attempt counts from its start, so guesses sent at once are held as surely as
        guesses in a row; nothing awaits between the throttle's look and its count. An attempt cut off
        (the handshake deadline) before a worker took it is taken back: it was never checked."""
        if address is None:  # a trusted proxy: no per-address key
            return await trio.to_thread.run_sync(decide, limiter=self._password_checks)
        now = trio.current_time()
        if throttled := self._throttled(cp_id, address, lab_mode=lab_mode):
            return throttled
        self._guesses.begin(cp_id, address, now)
        limiter = self._limiter(self._guesses.trusted(cp_id, address))
        checked = False

        def check() -> Admit | Refuse:
            nonlocal checked
            checked = True
            return decide()

        try:
            decision = await trio.to_thread.run_sync(check, limiter=limiter)
        except BaseException:
            if not checked:
                self._guesses.withdraw(cp_id, address, now)
            raise
        if isinstance(decision, Admit):
            self._guesses.succeeded(cp_id, address, now)
        return decision

    def _limiter(self, returning: bool) -> trio.CapacityLimiter:
        """The workers a check waits for: the two shared ones; a returning charger takes one of them when one
        is free (nothing awaits between this look and the take), else its own."""
        if returning and not self._password_checks.available_tokens:
            return self._returning_checks
        return self._password_checks

    async def _serve(
        self, ws: WebSocketConnection, cp_id: str, remote: str, admitted: Admit, version: OcppVersion
    ) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        handlers = ChargePointHandlers201(ctx, cp_id) if version == V201 else ChargePointHandlers(ctx, cp_id)
        s = ctx.settings
        limits = Limits(
            max_queued_calls=s.ocpp_max_queued_calls,
            messages_per_second=s.ocpp_messages_per_second,
            burst=s.ocpp_message_burst,
        )
        # One bucket per charge point id, whatever its connection: messages and pings take from it.
        bucket = ctx.message_bucket(cp_id, trio.current_time()) if s.ocpp_messages_per_second > 0 else None
        count_pings = getattr(ws, "count_pings", None)  # csms.ocpp.ws_server's connections have it
        if bucket is not None and count_pings is not None:
            count_pings(bucket, cp_id)
        conn = OcppConnection(
            ws,
            peer=cp_id,
            handlers=handlers,
            call_timeout=s.call_timeout_seconds,
            limits=limits,
            on_event=lambda kind: OCPP_LIMITS.labels(kind).inc(),
            version=version,
            bucket=bucket,
        )
        live = LiveChargePoint(
            cp_id, conn, now, now, ctx.settings.heartbeat_interval, remote=remote, authenticated=admitted.authenticated
        )
        if version == V201:  # its open transactions, by its own ids: commands name them before its next event
            live.station_tx.update(await ctx.db.read(lambda s: event_store.open_station_transactions(s, cp_id)))
        handlers.live = live

        def seen() -> None:
            live.last_seen = ctx.clock.now()

        if not _on_every_frame(ws, seen):
            conn.trace = lambda direction, _text: seen() if direction == "in" else None
        old = ctx.registry.attach(live)
        CONNECTED.set(len(ctx.registry))
        if old is not None:
            # The newcomer passed the same handshake as the first (with the password, where one is
            # set), so it is the charger coming back (the old socket is often half-open). Last one wins.
            CONNECTIONS_REPLACED.inc()
            log.warning(
                "charge_point.replaced charge_point=%s remote=%s old_remote=%s authenticated=%s "
                "(the same id connected again; the old connection is closed)",
                cp_id,
                remote,
                old.remote,
                "yes" if admitted.authenticated else "no (lab mode)",
            )
            self.nursery.start_soon(old.connection.ws.aclose, 1000, "replaced by a new connection")
        log.info(
            "charge_point.connected charge_point=%s remote=%s authenticated=%s ocpp=%s",
            cp_id,
            remote,
            "yes" if admitted.authenticated else "no (lab mode)",
            version.name,
        )
        presence.record(
            ctx,
            cp_id,
            presence.CONNECTED,
            now,
            presence.connected_details(version.name, remote, admitted.authenticated, old is not None),
        )
        failed = False
        try:
            async with trio.open_nursery() as watchers:
                watchers.start_soon(watch_silent_connectors, ctx, live)
                watchers.start_soon(probe_after_reconnect, ctx, live)
                await conn.run()
                watchers.cancel_scope.cancel()
        except Exception:
            # One charge point's failure must never take the server (and every other one) down.
            log.exception("charge_point.connection_failed charge_point=%s (closing this connection only)", cp_id)
            failed = True
            with trio.move_on_after(2):
                await ws.aclose(1011, "internal error")
        finally:
            if _forget(ctx, live):
                log.info("charge_point.disconnected charge_point=%s", cp_id)
            if ctx.registry.local(cp_id) is None:  # not replaced by a newer connection (its connect says so)
                closed, at = ws.closed, ctx.clock.now()
                code, reason = (None, None) if closed is None else (closed.code, closed.reason)
                details = presence.disconnected_details(code, reason, live.ping_failed, live.connected_at, at, failed)
                presence.record(ctx, cp_id, presence.DISCONNECTED, at, details)
            CONNECTED.set(len(ctx.registry))


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Security profile 2: TLS 1.2 or newer (the 1.6 security whitepaper), the server's own certificate."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def _warn_about_exposure(settings: Settings, state: credential_store.StartupState) -> None:
    """Say it loudly at start-up when this process lets in more than a site's provisioned chargers."""
    if settings.allow_unknown_chargers:
        log.warning(
            "csms.LAB_MODE --allow-unknown-chargers is on: ANY charge point id may connect WITHOUT a password, and "
            "its first BootNotification registers it and a station (at most --max-auto-registered=%d, %d used so "
            "far; then refused). Charge points that have a password still need it. For test benches only: never "
            "on a network you do not control.",
            settings.max_auto_registered,
            state.auto_registered,
        )
    if settings.accept_unknown_id_tags:
        log.warning(
            "csms.ACCEPT_UNKNOWN_ID_TAGS --accept-unknown-id-tags is on: every id tag that is not in the "
            "list may charge. For test benches only."
        )
    if not settings.tls_cert:
        log.warning(
            "csms.no_tls OCPP (ws://) and REST (http://) are served without TLS: charge point passwords "
            "and API tokens cross the network readable; give --tls-cert/--tls-key, or terminate TLS in "
            "front of this process"
        )


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
        await trio.to_thread.run_sync(partial(prepare, engine, upgrade_older=settings.schema_upgrade == "auto"))
        db = Database(engine, bulk_statements=BULK_STATEMENTS, read_timeout=settings.db_read_timeout_seconds)
        state = await trio.to_thread.run_sync(db.run_sync, credential_store.load_startup_state)
        ctx = Context(
            settings=settings,
            clock=clock,
            db=db,
            registry=Registry(),
            known_charge_points=state.known,
            accepted_charge_points=state.accepted,
            auto_registered=state.auto_registered,
            payments=load_provider(settings.payment_provider),
        )
        log.info("csms.database url=%s charge_points=%d", redact(engine.url.render_as_string(False)), len(state.known))
        _warn_about_exposure(settings, state)
        # Start-up maintenance runs before any charge point can connect.
        actions = await trio.to_thread.run_sync(
            partial(run_offline, db, Thresholds.from_settings(settings), clock.now(), dry_run=False)
        )
        log.info("csms.startup_maintenance actions=%d", len(actions))
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run_writer)
            # Cluster mode only (--node-id): presence, forwarding, duties.
            node = ClusterNode(ctx, settings.node_id) if settings.node_id is not None else None
            await nursery.start(run_cluster, node)
            async with trio.open_nursery() as front:
                duties = (lambda: True) if node is None else (lambda: node.duties_held)
                await front.start(partial(maintenance_loop, clustered=node is not None), ctx, duties)
                await front.start(run_payment_cancels, ctx)
                epoch = (lambda: 0) if node is None else (lambda: node.epoch)
                webhooks, watcher = await _start_watch(ctx, front, duties, epoch)
                addresses = await _start_front(ctx, front, shutdown, webhooks, watcher)
                log.info(
                    "csms.listening ocpp=%s/{chargePointId} http=%s docs=%s/docs",
                    addresses.ocpp,
                    addresses.http,
                    addresses.http,
                )
                if settings.ports_file:
                    await trio.Path(settings.ports_file).write_text(addresses.as_json(), encoding="utf-8")
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


async def _start_watch(
    ctx: Context, nursery: trio.Nursery, duties: Callable[[], bool], epoch: Callable[[], int]
) -> tuple[WebhookDispatcher, Watcher]:
    """Webhook receivers (their outbox rows, a worker each while `duties()`) and the watcher that feeds them
    and the dashboard."""
    s = ctx.settings
    webhooks = WebhookDispatcher(
        s.webhooks,
        ctx.db,
        retry_seconds=s.webhook_retry_seconds,
        max_attempts=s.webhook_max_attempts,
        queue_size=s.webhook_queue_size,
    )
    for target in s.webhooks:
        log.info("csms.webhook receiver=%s signed=%s", target.label, "yes" if target.secret else "no")
    await nursery.start(webhooks.run, duties)
    watcher = Watcher(ctx, webhooks, duties=duties, epoch=epoch)
    await nursery.start(watcher.run)
    return webhooks, watcher


async def _start_front(
    ctx: Context, nursery: trio.Nursery, shutdown: trio.Event, webhooks: WebhookDispatcher, watcher: Watcher
) -> Addresses:
    settings = ctx.settings
    endpoint = OcppEndpoint(ctx, nursery)
    tls = _tls_context(settings)
    listeners: list[trio.SocketListener] | list[trio.SSLListener[trio.SocketStream]]
    if tls is None:
        listeners = await trio.open_tcp_listeners(settings.ocpp_port, host=settings.ocpp_host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            settings.ocpp_port, tls, host=settings.ocpp_host, https_compatible=True
        )
    server = GuardedWebSocketServer(
        endpoint,
        listeners,
        max_message_size=settings.max_frame_bytes,
        connect_timeout=settings.handshake_timeout_seconds,
        max_connections=settings.max_connections,
        max_handshakes=settings.max_handshakes,
        max_handshakes_per_address=settings.max_handshakes_per_address,
        share_key=endpoint._key,
    )
    await nursery.start(server.run)
    ocpp_port = server.port
    hc = HypercornConfig()
    hc.bind = [f"{settings.http_host}:{settings.http_port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 3
    if tls is not None:
        hc.certfile, hc.keyfile = settings.tls_cert, settings.tls_key
    app = BodyLimit(
        create_app(ctx, dispatcher=webhooks, watcher=watcher),
        max_bytes=settings.max_body_bytes,
        timeout=settings.body_timeout_seconds,
    )
    binds = await nursery.start(partial(hypercorn_serve, app, hc, shutdown_trigger=shutdown.wait))
    scheme = ("wss", "https") if tls is not None else ("ws", "http")
    http = binds[0] if binds else f"{scheme[1]}://{settings.http_host}:{settings.http_port}"
    return Addresses(ocpp=f"{scheme[0]}://{_host(settings.ocpp_host)}:{ocpp_port}/ocpp", http=http)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def tune_gc() -> None:
    """Fewer, cheaper collections: start-up objects are frozen out of the scans, and the
    young-generation threshold is raised so full collections (100 ms pauses under load) are rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1_000)


async def run_until_signal(settings: Settings) -> None:
    """The process entry point: SIGINT/SIGTERM trigger a graceful shutdown."""
    tune_gc()
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
