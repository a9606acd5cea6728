"""An independent OCPP 1.6 central system for the simulator's tests.

Built only from the `ocpp` library's own asyncio `ChargePoint` + `@on` handlers
over `websockets.serve` (as the library's README does), in a background thread
with its own event loop, so nothing of ours (ocppj, trio) is on its side of
the wire. It records every Call it receives and can send Calls to a connected
charge point from the test thread.

Also runnable on its own, as the loopback CSMS for the scale measurement:
    python tests/simulator/libcsms.py --port 9000 --interval 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, NamedTuple

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibChargePoint
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo

__all__ = ["LibCentral", "Received", "Started"]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Received:
    """One Call the central system received: which charge point, action, camelCase payload."""

    __slots__ = ("cp", "action", "payload", "at")

    def __init__(self, cp: str, action: str, payload: dict[str, Any]) -> None:
        self.cp, self.action, self.payload, self.at = cp, action, payload, time.monotonic()

    def __repr__(self) -> str:
        return f"Received({self.cp}, {self.action}, {self.payload})"


class Started(NamedTuple):
    """A StartTransaction the central system answered, with the transactionId it handed out."""

    cp: str
    transaction_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    timestamp: str


class _Point(LibChargePoint):
    """The library's ChargePoint as a central system sees one charger."""

    central: LibCentral

    async def route_message(self, raw_msg: str) -> None:
        msg = json.loads(raw_msg)
        if msg and msg[0] == 2:
            self.central._record(Received(self.id, msg[2], msg[3]))
        await super().route_message(raw_msg)

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        return call_result.BootNotification(
            current_time=_now(), interval=self.central.heartbeat_interval, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        return call_result.StatusNotification()

    @on("Authorize")
    async def on_authorize(self, id_tag: str) -> Any:
        if self.central.authorize_delay:
            await asyncio.sleep(self.central.authorize_delay)
        return call_result.Authorize(id_tag_info=IdTagInfo(status=self.central.tag_status(id_tag)))

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any) -> Any:
        transaction_id = next(self.central.tx_ids)
        self.central._give(Started(self.id, transaction_id, connector_id, id_tag, meter_start, timestamp))
        return call_result.StartTransaction(
            transaction_id=transaction_id,
            id_tag_info=IdTagInfo(status=self.central.tag_status(id_tag)),
        )

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, **_: Any) -> Any:
        return call_result.StopTransaction(id_tag_info=IdTagInfo(status="Accepted"))

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list, **_: Any) -> Any:
        return call_result.MeterValues()


class LibCentral:
    """Run with `start()` (returns the port) and `stop()`; thread-safe accessors."""

    def __init__(self, *, heartbeat_interval: int = 300, response_timeout: float = 5.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.response_timeout = response_timeout
        self.authorize_delay = 0.0  # s before Authorize is answered (a slow authorization backend)
        self.tx_ids = itertools.count(1)
        self.port = 0
        self._received: list[Received] = []
        self._started: list[Started] = []  # every transactionId handed out, in order
        self._lock = threading.Lock()
        self._points: dict[str, _Point] = {}
        self.connections: list[str] = []  # charge point id of every WebSocket accepted, in order
        # (charge point id, close code, reason) of every WebSocket that ended, in order; code 1006: no close frame
        self.closes: list[tuple[str, int | None, str | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @staticmethod
    def tag_status(id_tag: str) -> str:
        return "Invalid" if id_tag.startswith("BAD") else "Accepted"

    # ---------------------------------------------------------------- thread
    def start(self, port: int = 0) -> int:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(port, ready)), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the ocpp-library CSMS did not start")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def _main(self, port: int, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with websockets.serve(self._on_connect, "127.0.0.1", port, subprotocols=["ocpp1.6"]) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stop.wait()

    async def _on_connect(self, ws: Any) -> None:
        if ws.subprotocol != "ocpp1.6":
            await ws.close()
            return
        cp_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        point = _Point(cp_id, ws, response_timeout=self.response_timeout)
        point.central = self
        self._points[cp_id] = point
        self.connections.append(cp_id)
        try:
            await point.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._points.get(cp_id) is point:
                del self._points[cp_id]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 5)
            with self._lock:
                self.closes.append((cp_id, ws.close_code, ws.close_reason))

    def _record(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)

    def _give(self, item: Started) -> None:
        with self._lock:
            self._started.append(item)

    # ------------------------------------------------------- test-thread API
    def received(self, cp: str | None = None, action: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if (cp is None or r.cp == cp) and (action is None or r.action == action)]

    def started(self, cp: str | None = None) -> list[Started]:
        """The StartTransactions answered so far (with the transactionId each got), in order."""
        with self._lock:
            return [s for s in self._started if cp is None or s.cp == cp]

    def connected(self) -> list[str]:
        return list(self._points)

    def records_since(self, received: int, started: int) -> tuple[list[Received], list[Started]]:
        """What it received and the transactions it started from those positions on (the lists only grow).

        For a reader that folds them as they come (its JSON API, an adapter) instead of copying all each time.
        """
        with self._lock:
            return self._received[received:], self._started[started:]

    def send(self, cp_id: str, request: Any, suppress: bool = False) -> Any:
        """Send a Call (a v16 `call.X`) to a connected charge point; blocks for the result.

        Raises asyncio.TimeoutError (as the library does) if it is not answered in
        time, and the library's OCPPError for a CallError unless `suppress`.
        """
        assert self._loop is not None
        coro = self._points[cp_id].call(request, suppress=suppress)
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(self.response_timeout + 5)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--interval", type=int, default=30, help="heartbeat interval given at boot")
    ap.add_argument("--seconds", type=float, default=3600, help="stop after this long")
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    central = LibCentral(heartbeat_interval=args.interval)
    central.start(args.port)
    print(f"libcsms listening on {central.url}/{{id}}", flush=True)
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    by_action: dict[str, int] = {}
    for r in central.received():
        by_action[r.action] = by_action.get(r.action, 0) + 1
    print(f"libcsms received {sorted(by_action.items())} from {len({r.cp for r in central.received()})} charge points")
    central.stop()
