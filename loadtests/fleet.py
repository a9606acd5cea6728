"""This process's charge points and its trace file (one per locust process).

A charge point belongs to the fleet, not to the locust user that created it: when
the users stop, their charge points stay connected, heartbeat and answer the CSMS
while it heals, because the oracle judges them after the traffic (a charger gone
is judged `offline`, so falsely busy could not be seen). `park` ends the traffic
(cars leave), `close` ends the connections. Every record's `t` counts from the
run's epoch, chosen by the master (or the local runner), so the traces of all
processes and the master's samples share one clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Group

from simulator.rng import Rng
from simulator.trace import TRACE_VERSION, TraceWriter

from .chargepoint import ChargePoint
from .options import LoadOptions

__all__ = ["Fleet", "current", "start", "close_current", "trace_path"]

RequestHook = Callable[[str, str, float, int, BaseException | None], None]
FLUSH_EVERY = 1.0  # s


def trace_path(opts: LoadOptions, proc: str) -> Path:
    return opts.report_dir / "load_traces" / f"{opts.run}-{proc}.jsonl"


class Fleet:
    def __init__(self, opts: LoadOptions, proc: str, on_request: RequestHook) -> None:
        self.opts = opts
        self.proc = proc
        self.on_request = on_request
        self.path = trace_path(opts, proc)
        self.trace = TraceWriter(self.path)
        mono0, offset = time.monotonic(), time.time() - opts.epoch
        self.trace.now = lambda: time.monotonic() - mono0 + offset
        self.trace.write(
            None,
            "header",
            version=TRACE_VERSION,
            epoch=opts.epoch,
            run=opts.run,
            process=proc,
            pid=os.getpid(),
            load=opts.to_mapping(),
        )
        self.rng = Rng(opts.seed)
        self.driver = opts.driver()
        self.group = opts.group()
        self.charge_points: dict[str, ChargePoint] = {}
        self.parked_at: float | None = None  # set once every car has left
        self.closed = False
        self._parking = False
        self._parked = Event()
        self._flusher = gevent.spawn(self._flush_loop)

    def now(self) -> float:
        return self.trace.now()

    @property
    def parking(self) -> bool:
        """The traffic is over (cars leaving or gone)."""
        return self._parking

    def add(self) -> ChargePoint:
        """A new charge point of this run (not started yet)."""
        cp_id = f"{self.opts.run_prefix}{self.proc}{len(self.charge_points) + 1:04d}"
        cp = ChargePoint(
            cp_id,
            url=self.opts.ocpp_url,
            connectors=self.opts.connectors,
            faults=self.opts.faults,
            rng=self.rng.child("cp", cp_id),
            driver=self.driver,
            group=self.group,
            trace=self.trace,
            now=self.now,
            epoch=self.opts.epoch,
            call_timeout=self.opts.call_timeout,
            meter_interval=self.opts.meter_interval,
            on_request=self.on_request,
        )
        self.charge_points[cp_id] = cp
        if self._parking:
            cp.driving = False
        return cp

    def record(self, kind: str, cp: str | None, **fields: Any) -> None:
        """A record of the app side (verdicts asked, sessions started) for the oracle."""
        self.trace.write(cp, kind, **fields)

    def park(self, flush_timeout: float = 15.0) -> dict[str, Any]:
        """The traffic ends: every car leaves (faults at the stop still fire); then wait for the outboxes.

        Returns what the master needs to judge this process: its trace, when it parked, its charge points.
        """
        if not self._parking:
            self._parking = True
            cps = list(self.charge_points.values())
            for cp in cps:
                cp.driving = False
            Group().map(lambda cp: cp.park(), cps)
            Group().map(lambda cp: cp.link.flush(flush_timeout), cps)
            self.parked_at = self.now()  # the oracle's recovery starts once the last car has left
            self.trace.write(None, "parked", charge_points=len(cps))
            self._parked.set()
        self._parked.wait()
        self.trace.flush()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "trace": str(self.path.resolve()),
            "parkedAt": self.parked_at,
            "process": self.proc,
            "chargePoints": {cp_id: len(cp.plugs) for cp_id, cp in self.charge_points.items()},
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        Group().map(lambda cp: cp.close(), list(self.charge_points.values()))
        self._flusher.kill(block=False)
        self.trace.close()

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(FLUSH_EVERY)
            self.trace.flush()


_current: Fleet | None = None


def start(opts: LoadOptions, proc: str, on_request: RequestHook) -> Fleet:
    """A fresh fleet for a new run in this process (the previous one, if any, is closed)."""
    global _current
    close_current()
    _current = Fleet(opts, proc, on_request)
    return _current


def current() -> Fleet | None:
    return _current


def close_current() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None
