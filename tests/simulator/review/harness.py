"""Scriptable in-process trio CSMS for the review (based on tests/simulator/test_autojump.py)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from contextlib import asynccontextmanager

import trio
from ocpp.routing import on
from trio_websocket import serve_websocket

from ocppj import OcppConnection

NOW = "2026-01-01T00:00:00Z"


class Central:
    def __init__(self, interval=60):
        self.interval = interval
        self.tx_ids = itertools.count(1)
        self.log = []  # (cp, action, payload)
        self.conns = {}  # cp -> OcppConnection
        self.accepts = defaultdict(int)
        self.override = {}  # action -> fn(payload) -> result dict or raise
        self.close_after_accept = False

    def handlers(self, cp):
        central = self

        def mk(name, action, default):
            def h(self, **kw):
                central.log.append((cp, action, kw))
                if action in central.override:
                    return central.override[action](kw)
                return default(kw)

            h.__name__ = name
            return on(action)(h)

        attrs = {
            "boot": mk(
                "boot",
                "BootNotification",
                lambda kw: {"currentTime": NOW, "interval": central.interval, "status": "Accepted"},
            ),
            "hb": mk("hb", "Heartbeat", lambda kw: {"currentTime": NOW}),
            "st": mk("st", "StatusNotification", lambda kw: {}),
            "au": mk("au", "Authorize", lambda kw: {"idTagInfo": {"status": "Accepted"}}),
            "start": mk(
                "start",
                "StartTransaction",
                lambda kw: {"transactionId": next(central.tx_ids), "idTagInfo": {"status": "Accepted"}},
            ),
            "stop": mk("stop", "StopTransaction", lambda kw: {}),
            "mv": mk("mv", "MeterValues", lambda kw: {}),
        }
        return type("H", (), attrs)()

    async def serve(self, request):
        ws = await request.accept(subprotocol="ocpp1.6")
        cp = request.path.rsplit("/", 1)[-1]
        self.accepts[cp] += 1
        if self.close_after_accept:
            await ws.aclose()
            return
        conn = OcppConnection(ws, peer=cp, handlers=self.handlers(cp), call_timeout=5)
        self.conns[cp] = conn
        await conn.run()

    def actions(self, cp=None):
        return [(a, p) for c, a, p in self.log if cp is None or c == cp]


async def start_central(nursery, **kw):
    c = Central(**kw)
    server = await nursery.start(serve_websocket, c.serve, "127.0.0.1", 0, None)
    c.url = f"ws://127.0.0.1:{server.port}/ocpp"
    return c


@asynccontextmanager
async def one_charge_point(central, *, connectors=1, faults=(), wait_online=True):
    """A seeded fleet of one charge point (no driver) against `central`; yields (fleet, cp)."""
    from simulator import Fleet, FleetSpec, GroupSpec, TraceWriter

    spec = FleetSpec(seed=1, groups=(GroupSpec(count=1, connectors=connectors),), driver=None, faults=tuple(faults))
    fleet = Fleet(spec, central.url, trace=TraceWriter(keep=True))
    async with trio.open_nursery() as run:
        await run.start(fleet.run)
        if wait_online:
            await fleet.wait_online()
        yield fleet, fleet["CP0001"]
        run.cancel_scope.cancel()
