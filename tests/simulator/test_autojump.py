"""Ten simulated minutes with the default driver, in about a second of wall time.

The fleet only uses trio's clock, so under `autojump_clock` it runs against an
in-process trio central system (the shared OcppConnection over trio-websocket on
loopback) as fast as the CPU allows.
"""

from __future__ import annotations

import itertools
from collections import Counter

import trio
from ocpp.routing import on
from trio_websocket import serve_websocket

from ocppj import OcppConnection
from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter, parse_fault_option

NOW = "2026-01-01T00:00:00Z"


class Central:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.tx_ids = itertools.count(1)

    def handlers(self, cp: str) -> object:
        central = self

        class Handlers:
            @on("BootNotification")
            def boot(self, **_):
                central.calls[(cp, "BootNotification")] += 1
                return {"currentTime": NOW, "interval": 60, "status": "Accepted"}

            @on("Heartbeat")
            def heartbeat(self):
                central.calls[(cp, "Heartbeat")] += 1
                return {"currentTime": NOW}

            @on("StatusNotification")
            def status(self, **_):
                central.calls[(cp, "StatusNotification")] += 1
                return {}

            @on("Authorize")
            def authorize(self, **_):
                return {"idTagInfo": {"status": "Accepted"}}

            @on("StartTransaction")
            def start(self, **_):
                central.calls[(cp, "StartTransaction")] += 1
                return {"transactionId": next(central.tx_ids), "idTagInfo": {"status": "Accepted"}}

            @on("StopTransaction")
            def stop(self, **_):
                central.calls[(cp, "StopTransaction")] += 1
                return {}

            @on("MeterValues")
            def meter_values(self, **_):
                central.calls[(cp, "MeterValues")] += 1
                return {}

        return Handlers()

    async def serve(self, request) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        cp = request.path.rsplit("/", 1)[-1]
        await OcppConnection(ws, peer=cp, handlers=self.handlers(cp)).run()


async def test_ten_minutes_of_default_sessions_under_autojump(autojump_clock, nursery):
    central = Central()
    server = await nursery.start(serve_websocket, central.serve, "127.0.0.1", 0, None)
    spec = FleetSpec(
        seed=2,
        groups=(GroupSpec(count=5, connectors=2),),
        driver=DriverSpec(),
        ramp=10,
        faults=(parse_fault_option("drop_stop_transaction=0.2"),),
    )
    fleet = Fleet(spec, f"ws://127.0.0.1:{server.port}/ocpp", trace=TraceWriter(keep=True))
    start = trio.current_time()
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        await trio.sleep(600)
        for cp in fleet:
            await cp.flush()
        truth = fleet.truth()
        run.cancel_scope.cancel()
    assert trio.current_time() - start >= 600
    assert fleet.stats.errors == {}
    for cp in fleet.ids:
        assert central.calls[(cp, "BootNotification")] == 1
        assert 8 <= central.calls[(cp, "Heartbeat")] <= 10  # every 60 s, as the central said
        assert central.calls[(cp, "StartTransaction")] >= 2 * 5  # each connector: a session every ~1-2 min
        assert central.calls[(cp, "MeterValues")] >= 20  # every 10 s while charging
    first = {}
    for r in fleet.trace.records:
        if r["kind"] == "tx" and r["event"] == "start":
            first.setdefault((r["cp"], r["connector"]), r["t"])
    assert len(first) == 10 and max(first.values()) <= 30 + 0.5 + 1  # within its first 30 s (+ stagger)
    dropped = fleet.stats.faults["drop_stop_transaction"]
    stops = sum(n for (_cp, action), n in central.calls.items() if action == "StopTransaction")
    assert dropped and stops + dropped == fleet.stats.sessions_done
    assert all(
        c.state in ("unplugged", "plugged", "charging", "suspended", "finishing") for t in truth for c in t.connectors
    )
