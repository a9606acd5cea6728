"""A minimal OCPP 2.0.1 central system we did not write, to prove the 2.0.1 test peers against.

Only the `ocpp` library's asyncio `ocpp.v201.ChargePoint` with `@on` handlers behind `websockets.serve`, in
a background thread with its own event loop (as tests/simulator/libcsms.py is for 1.6). It answers what a
station sends, records every Call it receives, and sends Calls (`ocpp.v201.call.X`) to a connected station
from the test thread. HTTP Basic auth is checked when `passwords` names the station.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, NamedTuple

import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint as LibChargePoint
from ocpp.v201 import call_result

__all__ = ["LibCentral201", "Received"]

SUBPROTOCOL = "ocpp2.0.1"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Received(NamedTuple):
    """One Call the central system received: from which station, the action, its camelCase payload."""

    station: str
    action: str
    payload: dict[str, Any]
    at: float


class _Station(LibChargePoint):
    """The library's v201 ChargePoint as a central system sees one station."""

    central: LibCentral201

    async def route_message(self, raw_msg: str) -> None:
        with contextlib.suppress(ValueError):
            msg = json.loads(raw_msg)
            if isinstance(msg, list) and len(msg) >= 4 and msg[0] == 2:
                self.central._record(Received(self.id, msg[2], msg[3], time.monotonic()))
        await super().route_message(raw_msg)

    @on("BootNotification")
    def on_boot(self, charging_station: dict, reason: str, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=self.central.heartbeat_interval, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict, **_: Any) -> Any:
        return call_result.Authorize(id_token_info={"status": self.central.token_status(id_token["id_token"])})

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, transaction_info: dict, id_token: dict | None = None, **_: Any):
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info={"status": self.central.token_status(id_token["id_token"])})

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list, **_: Any) -> Any:
        return call_result.MeterValues()

    @on("NotifyEvent")
    def on_notify_event(self, generated_at: str, seq_no: int, event_data: list, **_: Any) -> Any:
        return call_result.NotifyEvent()

    @on("SecurityEventNotification")
    def on_security_event(self, type: str, timestamp: str, **_: Any) -> Any:
        return call_result.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, status: str, **_: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @on("LogStatusNotification")
    def on_log_status(self, status: str, **_: Any) -> Any:
        return call_result.LogStatusNotification()

    @on("NotifyReport")
    def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **_: Any) -> Any:
        return call_result.NotifyReport()


class LibCentral201:
    """Run with `start()` (returns the port) and `stop()`; the other methods are thread-safe."""

    def __init__(self, *, heartbeat_interval: int = 300, response_timeout: float = 5.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.response_timeout = response_timeout
        self.passwords: dict[str, str] = {}  # station id -> HTTP Basic password it must present
        self.remote_start_ids = itertools.count(1)
        self.port = 0
        self.connections: list[tuple[str, str | None]] = []  # (station id, subprotocol) of every WebSocket
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._stations: dict[str, _Station] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @staticmethod
    def token_status(id_token: str) -> str:
        return "Invalid" if id_token.startswith("BAD") else "Accepted"

    def start(self, port: int = 0) -> int:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(port, ready)), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the ocpp-library 2.0.1 central system did not start")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def url(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{station_id}"

    async def _main(self, port: int, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with websockets.serve(
            self._on_connect, "127.0.0.1", port, subprotocols=[SUBPROTOCOL], process_request=self._check_auth
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stop.wait()

    def _check_auth(self, connection: Any, request: Any) -> Any:
        station_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        expected = self.passwords.get(station_id)
        if expected is None:
            return None
        token = base64.b64encode(f"{station_id}:{expected}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {token}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong or missing password\n")
        return None

    async def _on_connect(self, ws: Any) -> None:
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        self.connections.append((station_id, ws.subprotocol))
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "ocpp2.0.1 only")
            return
        station = _Station(station_id, ws, response_timeout=self.response_timeout)
        station.central = self
        self._stations[station_id] = station
        try:
            await station.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._stations.get(station_id) is station:
                del self._stations[station_id]

    def _record(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)

    # ------------------------------------------------------- test-thread API
    def received(self, station: str | None = None, action: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r for r in self._received if (station is None or r.station == station) and action in (None, r.action)
            ]

    def received_since(self, after: int) -> list[Received]:
        """Every Call received from position `after` on (a cursor for a poller)."""
        with self._lock:
            return self._received[after:]

    def connected(self) -> list[str]:
        return list(self._stations)

    def send(self, station_id: str, request: Any, *, validate: bool = True) -> Any:
        """Send an `ocpp.v201.call.X` to a connected station; blocks for its `call_result` (None: CallError).

        `validate=False` sends it unchecked and takes any answer: to see what a station does with a bad Call.
        """
        assert self._loop is not None
        # A station's own connect returns when its handshake is answered, a moment before this side registers it.
        assert self.wait_for(lambda: station_id in self._stations, 5.0), f"{station_id} never connected"
        coro = self._stations[station_id].call(request, skip_schema_validation=not validate)
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(self.response_timeout + 5)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()
