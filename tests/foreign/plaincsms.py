"""plaincsms: a small OCPP 1.6J CSMS with its own rules, timings and REST API, to judge with the harness.

Not ours in anything but the room it runs in: the `ocpp` library's v16
`ChargePoint` with `@on` handlers behind `websockets.serve`, a Starlette REST API
under hypercorn's asyncio worker, both in one asyncio loop, state in memory.
Its rules are its own, and not unstuck's:

- BootNotification: Accepted, heartbeat interval 10 s. Every charge point id and
  every idTag is accepted (no passwords, no authorization list).
- A charge point is offline when its socket is closed or nothing (no message,
  no pong to the ping it sends every 5 s) came for 25 s.
- Occupancy (`occupancy`): offline if the charger is; busy if a transaction is
  open on the connector or its last StatusNotification is not Available; free
  if that status is Available; unknown if it never reported one. It never asks
  (no TriggerMessage) and trusts a stored status until the next one.
- Orphans (`is_orphan`): every 5 s, an open transaction whose connector has
  reported Available since it started, for 30 s, is closed: meterStop = the
  latest-stamped Energy.Active.Import.Register it got for it, else meterStart;
  reason "Orphaned".
- A StartTransaction on a connector with an open transaction closes that one
  the same way (reason "Superseded"); the same StartTransaction again (a replay:
  same connector, tag, meterStart and timestamp) gets the same id.
- A StopTransaction closes its transaction; one for a transaction the CSMS
  closed itself corrects it to the charger's meterStop and reason.
- Remote start is refused while it believes the connector busy or a start for
  it is still waiting for the charger's answer, and when the charger is offline.
  An accepted start is a "request"; the next StartTransaction on that connector
  with that idTag (within 2 minutes) is linked to it, and remote stop names it.
- Unlock sends UnlockConnector; answered Unlocked, it closes the transaction
  still open on that connector (reason "Unlocked", meterStop as for an orphan),
  and reports the transaction that was open before it and is closed now.
- No charging sessions, tariffs, fees or reservations.

    python -m tests.foreign.plaincsms --ocpp-port 0 --api-port 0 --token T

prints {"ocpp_url": ..., "api_url": ...} on one line, then serves until SIGTERM.
REST (Bearer token; JSON; errors are {"error": <its code>, "message": ...}):

    GET  /health                                     {"name": "plaincsms", "version": ...}
    GET  /api/connectors?prefix=P                    every connector it knows on chargers whose id starts with P
    GET  /api/connectors/{cp}/{n}                    one (404 unknown_charger)
    POST /api/start {"chargePoint", "connector", "idTag"}  200 {"requestId"} | 409 connector_in_use
         | 503 charger_not_connected | 422 charger_rejected | 504 charger_timeout {"requestId"} | 502 charger_error
    POST /api/stop {"requestId"} or {"transactionId"}      200 | 404 not_found | 409 not_started | 422 | 503 | 504
    POST /api/unlock {"chargePoint", "connector"}    200 {"status", "closedTransactions": [{"transactionId",
         "stopReason"}], "closedRequests": [start request ids]} | 503 | 504 | 502
    GET  /api/transactions?prefix=P                  every transaction, open or closed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import resource
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import websockets
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import IdTagInfo
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.typing import Subprotocol

__all__ = ["PlainCsms", "occupancy", "is_orphan", "main"]

VERSION = "0.1"
HEARTBEAT_INTERVAL = 10  # s, given at boot
OFFLINE_AFTER = 25.0  # s without a message or a pong
PING_EVERY = 5.0
SWEEP_EVERY = 5.0
ORPHAN_GRACE = 30.0  # s of Available after the transaction started
CALL_TIMEOUT = 10.0  # s it waits for a charger's answer
LINK_WINDOW = 120.0  # s after an accepted remote start in which a StartTransaction is linked to it

log = logging.getLogger("plaincsms")


# ------------------------------------------------------------------ the rules (pure)
@dataclass
class Connector:
    status: str | None = None
    since: float = 0.0  # when this status began (monotonic; a repeated status keeps it)


@dataclass
class Transaction:
    id: int
    cp: str
    connector: int
    id_tag: str
    meter_start: int
    start_time: str
    started_at: float  # monotonic, at receipt
    request_id: int | None = None
    meter_stop: int | None = None
    stop_time: str | None = None
    stop_reason: str | None = None
    closed_by: str | None = None  # "charger" (its StopTransaction) or "csms" (a rule of ours)
    register: tuple[datetime, int] | None = None  # the latest-stamped energy register sample

    @property
    def open(self) -> bool:
        return self.stop_reason is None

    def estimate(self) -> int:
        """What a rule of ours closes it with: the last register sample, else where it started."""
        return self.register[1] if self.register is not None else self.meter_start


def occupancy(connected: bool, silent_for: float, status: str | None, open_tx: int | None) -> tuple[str, list[str]]:
    """This CSMS's verdict for one connector, with its reasons."""
    if not connected:
        return "offline", ["charger:disconnected"]
    if silent_for > OFFLINE_AFTER:
        return "offline", [f"charger:silent:{silent_for:.0f}s"]
    if open_tx is not None:
        return "busy", [f"transaction:{open_tx}:open", f"status:{status}"]
    if status is None:
        return "unknown", ["status:none"]
    return ("free" if status == "Available" else "busy"), [f"status:{status}"]


def is_orphan(tx: Transaction, plug: Connector, now: float) -> bool:
    """Open, and its connector has said Available since it started, for the grace."""
    return tx.open and plug.status == "Available" and plug.since >= tx.started_at and now - plug.since >= ORPHAN_GRACE


# ------------------------------------------------------------------ state
@dataclass
class StartRequest:
    """An accepted (or unanswered) remote start, and the transaction it led to."""

    id: int
    cp: str
    connector: int
    id_tag: str
    at: float
    transaction_id: int | None = None


@dataclass
class Charger:
    id: str
    point: Point | None = None
    last_seen: float = 0.0
    connectors: dict[int, Connector] = field(default_factory=dict)

    def plug(self, n: int) -> Connector:
        return self.connectors.setdefault(n, Connector())


def _register_wh(sampled: list[dict[str, Any]]) -> int | None:
    for s in sampled:
        if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            value = float(s["value"])
            return round(value * 1000 if s.get("unit") == "kWh" else value)
    return None


def _stamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ------------------------------------------------------------------ OCPP
class Point(ChargePoint):
    """One connected charger, as the library builds a central system's side."""

    csms: PlainCsms

    async def route_message(self, raw_msg: str) -> None:
        self.csms.chargers[self.id].last_seen = time.monotonic()
        await super().route_message(raw_msg)

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return call_result.BootNotification(current_time=_now_iso(), interval=HEARTBEAT_INTERVAL, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_now_iso())

    @on("StatusNotification")
    def on_status(self, connector_id: int, status: str, **_: Any) -> Any:
        plug = self.csms.chargers[self.id].plug(connector_id)
        if plug.status != status:
            plug.status, plug.since = status, time.monotonic()
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> Any:
        return call_result.Authorize(id_tag_info=IdTagInfo(status="Accepted"))

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any) -> Any:
        tx = self.csms.begin(self.id, connector_id, id_tag, meter_start, timestamp)
        return call_result.StartTransaction(transaction_id=tx.id, id_tag_info=IdTagInfo(status="Accepted"))

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, reason: str = "Local", **_: Any) -> Any:
        self.csms.end(self.id, transaction_id, meter_stop, timestamp, reason)
        return call_result.StopTransaction(id_tag_info=IdTagInfo(status="Accepted"))

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **kw: Any) -> Any:
        self.csms.sample(self.id, connector_id, kw.get("transaction_id"), meter_value)
        return call_result.MeterValues()


class ApiError(Exception):
    """A refusal of the REST API: its HTTP status, its code, a message for a person."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


class PlainCsms:
    """All state, the OCPP handlers' effects, the sweep and the actions the REST API offers."""

    def __init__(self) -> None:
        self.chargers: dict[str, Charger] = {}
        self.transactions: dict[int, Transaction] = {}
        self.requests: dict[int, StartRequest] = {}
        self._tx_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._starting: set[tuple[str, int]] = set()  # remote starts waiting for the charger's answer
        self._open: dict[tuple[str, int], Transaction] = {}  # the open transaction of each connector
        self._by_start: dict[tuple[str, int, str, int, str], Transaction] = {}  # to know a replayed start

    # ---------------------------------------------------------- what chargers tell
    def open_on(self, cp: str, connector: int) -> Transaction | None:
        return self._open.get((cp, connector))

    def begin(self, cp: str, connector: int, id_tag: str, meter_start: int, timestamp: str) -> Transaction:
        again = self._by_start.get((cp, connector, id_tag, meter_start, timestamp))
        if again is not None:  # a replayed StartTransaction: the id it already got
            return again
        old = self.open_on(cp, connector)
        if old is not None:
            self._close(old, old.estimate(), "Superseded")
        now = time.monotonic()
        tx = Transaction(next(self._tx_ids), cp, connector, id_tag, meter_start, timestamp, now)
        request = next(
            (
                r
                for r in self.requests.values()
                if r.transaction_id is None
                and (r.cp, r.connector, r.id_tag) == (cp, connector, id_tag)
                and now - r.at <= LINK_WINDOW
            ),
            None,
        )
        if request is not None:
            request.transaction_id, tx.request_id = tx.id, request.id
        self.transactions[tx.id] = self._open[(cp, connector)] = tx
        self._by_start[(cp, connector, id_tag, meter_start, timestamp)] = tx
        return tx

    def end(self, cp: str, transaction_id: int, meter_stop: int, timestamp: str, reason: str) -> None:
        tx = self.transactions.get(transaction_id)
        if tx is None or tx.cp != cp:
            log.warning("%s: StopTransaction for unknown transaction %s", cp, transaction_id)
            return
        if tx.closed_by == "charger":
            return  # a repeated StopTransaction
        if tx.closed_by == "csms":
            log.info("%s: transaction %s (closed %s) corrected by its StopTransaction", cp, tx.id, tx.stop_reason)
        tx.meter_stop, tx.stop_time, tx.stop_reason, tx.closed_by = meter_stop, timestamp, reason, "charger"
        self._forget_open(tx)

    def sample(self, cp: str, connector: int, transaction_id: int | None, values: list[dict[str, Any]]) -> None:
        tx = self.transactions.get(transaction_id) if transaction_id is not None else self.open_on(cp, connector)
        if tx is None or tx.cp != cp:
            return
        for mv in values:
            wh = _register_wh(mv.get("sampled_value") or [])
            at = _stamp(str(mv.get("timestamp", "")))
            if wh is not None and (tx.register is None or at >= tx.register[0]):
                tx.register = (at, wh)

    def _close(self, tx: Transaction, meter_stop: int, reason: str) -> None:
        tx.meter_stop, tx.stop_time, tx.stop_reason, tx.closed_by = meter_stop, _now_iso(), reason, "csms"
        self._forget_open(tx)
        log.info("%s/%s: transaction %s closed (%s, meterStop %s)", tx.cp, tx.connector, tx.id, reason, meter_stop)

    def open_keys(self) -> list[tuple[str, int]]:
        """(charge point, connector) of every open transaction."""
        return list(self._open)

    def _forget_open(self, tx: Transaction) -> None:
        if self._open.get((tx.cp, tx.connector)) is tx:
            del self._open[(tx.cp, tx.connector)]

    def sweep(self, now: float) -> list[int]:
        """The orphan rule, once; the ids it closed."""
        closed = []
        for tx in list(self._open.values()):
            charger = self.chargers.get(tx.cp)
            if charger is not None and is_orphan(tx, charger.plug(tx.connector), now):
                self._close(tx, tx.estimate(), "Orphaned")
                closed.append(tx.id)
        return closed

    # ---------------------------------------------------------- what the API asks
    def verdict(self, cp: str, connector: int, now: float) -> dict[str, Any]:
        charger = self.chargers[cp]
        plug = charger.connectors.get(connector, Connector())
        tx = self.open_on(cp, connector)
        state, why = occupancy(
            charger.point is not None, now - charger.last_seen, plug.status, None if tx is None else tx.id
        )
        return {
            "chargePoint": cp,
            "connector": connector,
            "state": state,
            "why": why,
            "online": state != "offline",
            "lastStatus": plug.status,
            "openTransaction": None if tx is None else tx.id,
        }

    def _point(self, cp: str) -> Point:
        charger = self.chargers.get(cp)
        if charger is None or charger.point is None:
            raise ApiError(503, "charger_not_connected", f"{cp} is not connected")
        if time.monotonic() - charger.last_seen > OFFLINE_AFTER:
            raise ApiError(503, "charger_not_connected", f"{cp} has been silent for over {OFFLINE_AFTER:g} s")
        return charger.point

    async def _ask(self, cp: str, request: Any) -> Any:
        point = self._point(cp)
        try:
            return await point.call(request, suppress=False)
        except TimeoutError:
            raise ApiError(504, "charger_timeout", f"{cp} did not answer in {CALL_TIMEOUT:g} s") from None
        except websockets.ConnectionClosed:
            raise ApiError(503, "charger_not_connected", f"{cp} disconnected before it answered") from None
        except OCPPError as exc:
            raise ApiError(502, "charger_error", f"{cp} answered with an error: {exc}") from None

    async def remote_start(self, cp: str, connector: int, id_tag: str) -> int:
        key = (cp, connector)
        self._point(cp)
        v = self.verdict(cp, connector, time.monotonic())
        if v["state"] == "busy":
            raise ApiError(409, "connector_in_use", f"{cp}/{connector} is in use", why=v["why"])
        if key in self._starting:
            raise ApiError(409, "connector_in_use", f"{cp}/{connector} is being started", why=["start:pending"])
        self._starting.add(key)
        request = StartRequest(next(self._request_ids), cp, connector, id_tag, time.monotonic())
        try:
            res = await self._ask(cp, call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector))
        except ApiError as exc:
            if exc.code == "charger_timeout":  # it may start all the same: link its transaction if it does
                self.requests[request.id] = request
                exc.extra["requestId"] = request.id
            raise
        finally:
            self._starting.discard(key)
        if res.status != "Accepted":
            raise ApiError(422, "charger_rejected", f"{cp} answered {res.status}")
        self.requests[request.id] = request
        return request.id

    async def remote_stop(self, request_id: int | None, transaction_id: int | None) -> None:
        if request_id is not None:
            request = self.requests.get(request_id)
            if request is None:
                raise ApiError(404, "not_found", f"no start request {request_id}")
            if request.transaction_id is None:
                raise ApiError(409, "not_started", f"start request {request_id} has no transaction (yet)")
            transaction_id = request.transaction_id
        tx = self.transactions.get(transaction_id) if transaction_id is not None else None
        if tx is None:
            raise ApiError(404, "not_found", f"no transaction {transaction_id}")
        res = await self._ask(tx.cp, call.RemoteStopTransaction(transaction_id=tx.id))
        if res.status != "Accepted":
            raise ApiError(422, "charger_rejected", f"{tx.cp} answered {res.status}")

    async def unlock(self, cp: str, connector: int) -> dict[str, Any]:
        """UnlockConnector; the transaction open before it is reported closed if it ended meanwhile (a 1.6
        charger sends StopTransaction UnlockCommand first) or is closed here on an Unlocked answer."""
        before = self.open_on(cp, connector)
        res = await self._ask(cp, call.UnlockConnector(connector_id=connector))
        if res.status == "Unlocked" and before is not None and before.open:
            self._close(before, before.estimate(), "Unlocked")
        closed = [before] if before is not None and not before.open else []
        return {
            "status": res.status,
            "closedTransactions": [{"transactionId": t.id, "stopReason": t.stop_reason} for t in closed],
            "closedRequests": [t.request_id for t in closed if t.request_id is not None],
        }

    # ---------------------------------------------------------- serving
    async def on_connect(self, ws: Any) -> None:
        if ws.subprotocol != "ocpp1.6":
            await ws.close(1002, "ocpp1.6 only")
            return
        cp_id = unquote(ws.request.path.rstrip("/").rsplit("/", 1)[-1])
        charger = self.chargers.setdefault(cp_id, Charger(cp_id))
        point = Point(cp_id, ws, response_timeout=CALL_TIMEOUT)
        point.csms = self
        charger.point, charger.last_seen = point, time.monotonic()
        keepalive = asyncio.create_task(self._keepalive(charger, ws))
        try:
            await point.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
            if charger.point is point:
                charger.point = None

    @staticmethod
    async def _keepalive(charger: Charger, ws: Any) -> None:
        """A ping every 5 s; a pong counts as a sign of life like any message."""
        while True:
            await asyncio.sleep(PING_EVERY)
            try:
                pong = await ws.ping()
                await asyncio.wait_for(pong, OFFLINE_AFTER)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                return
            charger.last_seen = time.monotonic()

    async def sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep(time.monotonic())


# ------------------------------------------------------------------ REST
def _tx_row(t: Transaction) -> dict[str, Any]:
    return {
        "transactionId": t.id,
        "chargePoint": t.cp,
        "connector": t.connector,
        "idTag": t.id_tag,
        "meterStart": t.meter_start,
        "meterStop": t.meter_stop,
        "startTime": t.start_time,
        "stopTime": t.stop_time,
        "stopReason": t.stop_reason,
        "closedBy": t.closed_by,
        "requestId": t.request_id,
    }


def build_app(csms: PlainCsms, token: str) -> Starlette:
    Handler = Callable[[Request], Awaitable[Any]]

    def guarded(fn: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "unauthorized", "message": "Bearer token required"}, 401)
            try:
                return JSONResponse(await fn(request))
            except ApiError as exc:
                return JSONResponse({"error": exc.code, "message": str(exc), **exc.extra}, exc.status)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": "bad_request", "message": repr(exc)}, 400)

        return endpoint

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"name": "plaincsms", "version": VERSION})

    async def connectors(request: Request) -> Any:
        prefix, now = request.query_params.get("prefix", ""), time.monotonic()
        rows = []
        for charger in list(csms.chargers.values()):
            if charger.id.startswith(prefix):
                known = {n for n in charger.connectors if n > 0}
                known |= {n for (cp, n) in csms.open_keys() if cp == charger.id}
                rows += [csms.verdict(charger.id, n, now) for n in sorted(known)]
        return {"connectors": rows}

    async def one_connector(request: Request) -> Any:
        cp, n = request.path_params["cp"], int(request.path_params["n"])
        if cp not in csms.chargers:
            raise ApiError(404, "unknown_charger", f"{cp} never connected")
        return csms.verdict(cp, n, time.monotonic())

    async def start(request: Request) -> Any:
        body = await request.json()
        rid = await csms.remote_start(str(body["chargePoint"]), int(body["connector"]), str(body["idTag"]))
        return {"requestId": rid, "status": "Accepted"}

    async def stop(request: Request) -> Any:
        body = await request.json()
        rid, tid = body.get("requestId"), body.get("transactionId")
        await csms.remote_stop(None if rid is None else int(rid), None if tid is None else int(tid))
        return {"status": "Accepted"}

    async def unlock(request: Request) -> Any:
        body = await request.json()
        return await csms.unlock(str(body["chargePoint"]), int(body["connector"]))

    async def transactions(request: Request) -> Any:
        prefix = request.query_params.get("prefix", "")
        return {"transactions": [_tx_row(t) for t in list(csms.transactions.values()) if t.cp.startswith(prefix)]}

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/connectors", guarded(connectors)),
            Route("/api/connectors/{cp}/{n:int}", guarded(one_connector)),
            Route("/api/start", guarded(start), methods=["POST"]),
            Route("/api/stop", guarded(stop), methods=["POST"]),
            Route("/api/unlock", guarded(unlock), methods=["POST"]),
            Route("/api/transactions", guarded(transactions)),
        ]
    )


async def run(ocpp_port: int, api_port: int, token: str) -> None:
    csms = PlainCsms()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    api_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    api_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    api_sock.bind(("127.0.0.1", api_port))
    config = HypercornConfig()
    config.bind = [f"fd://{api_sock.fileno()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("plaincsms.http")
    async with websockets.serve(
        csms.on_connect, "127.0.0.1", ocpp_port, subprotocols=[Subprotocol("ocpp1.6")], ping_interval=None
    ) as server:
        ports = server.sockets[0].getsockname()[1], api_sock.getsockname()[1]
        sweeper = asyncio.create_task(csms.sweeper())
        app: Any = build_app(csms, token)  # an ASGI app; hypercorn's type names its own protocol types
        api = asyncio.create_task(hypercorn_serve(app, config, shutdown_trigger=stop.wait))
        print(json.dumps({"ocpp_url": f"ws://127.0.0.1:{ports[0]}/ocpp", "api_url": f"http://127.0.0.1:{ports[1]}"}))
        sys.stdout.flush()
        await stop.wait()
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await api


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ocpp-port", type=int, default=0, help="OCPP WebSocket port (0: a free one)")
    ap.add_argument("--api-port", type=int, default=0, help="REST port (0: a free one)")
    ap.add_argument("--token", required=True, help="the bearer token the REST API wants")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(args.log_level)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the chaos scenario opens many sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run(args.ocpp_port, args.api_port, args.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
