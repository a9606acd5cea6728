"""Crash safety (issue 11 item 3): SIGKILL `csms serve` under a load of sessions, restart it, lose nothing.

A simulated fleet (simulator.Fleet, in-process under trio) runs many short sessions against a real
`csms serve`. Before every other SIGKILL the test holds the database's write lock for a moment, so the
server is killed with StartTransactions and StopTransactions received but not yet committed: those
must not have been acknowledged; the other kills land wherever the load is. The server is restarted on
the same database and ports, the
charge points reconnect and replay their queued transaction messages, traffic ends, and the
scenario oracle (scenarios/oracle.py over the simulator's trace) checks what the CSMS stored:
every acknowledged StartTransaction is stored, every acknowledged StopTransaction too with its
meterStop, no transaction twice, every transaction closed, and after start-up maintenance no
connector is falsely busy.

The mutant `stop_acked_before_commit` (tests.support.mutants: StopTransaction answered before its commit)
must make it fail: `test_acknowledging_before_the_commit_is_caught`.

The long variant (more charge points, more kills) is kept out of `make test`:
    CSMS_LONG_RUNS=1 .venv/bin/python -m pytest tests/e2e/test_crash_safety.py -m slow -s
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from scenarios.adapters.base import StoredTransaction
from scenarios.adapters.unstuck_rest import UnstuckRestAdapter
from scenarios.embedded import Timings
from scenarios.oracle import Judgement, Rules, Sample, judge
from scenarios.timeline import Timeline
from simulator import DriverSpec, Fleet, FleetSpec, GroupSpec, TraceWriter
from tests.support.db import writes_held
from tests.support.mutants import command
from tests.support.server import ADMIN_TOKEN, CsmsProcess, start_csms

PREFIX = "CRASH"
TIMINGS = Timings()  # the scenario harness's quick thresholds: maintenance heals within seconds
# Short visits, so that every moment some start and some stop; messages retried for long enough
# to outlive a restart.
DRIVER = DriverSpec(first_within=2.0, session=(2.0, 5.0), idle=(0.5, 2.0), linger=(0.2, 0.6), leave_share=0.3)
CONFIG = {"MeterValueSampleInterval": "1", "TransactionMessageAttempts": "20", "TransactionMessageRetryInterval": "1"}


# ---------------------------------------------------------------- pure: figures from the trace
@dataclass(frozen=True)
class KillFigures:
    """What was in the air when the server was killed, and what came of it after the restart."""

    t: float
    running: int  # sessions in flight: transactions really running at the kill
    starts_pending: int  # StartTransactions made before the kill, answered only after it (or never)
    stops_pending: int  # ... StopTransactions
    starts_recovered: int  # of the pending ones, acknowledged after the restart and stored
    stops_recovered: int
    held: bool = False  # commits were held back before this kill

    def line(self) -> str:
        return (
            f"kill at t={self.t:.1f}s{' (commits held)' if self.held else ''}: {self.running} sessions in flight, {self.starts_pending} starts and "  # noqa: E501
            f"{self.stops_pending} stops unanswered; recovered {self.starts_recovered}/{self.starts_pending} "
            f"starts, {self.stops_recovered}/{self.stops_pending} stops"
        )


def stop_acks(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], tuple[float, float | None]]:
    """(cp, transactionId) -> (first StopTransaction sent, when a CallResult answered one), from the frames."""
    calls: dict[tuple[str, str], int] = {}
    out: dict[tuple[str, int], tuple[float, float | None]] = {}
    for r in records:
        kind = r.get("kind")
        if kind not in ("in", "out"):
            continue
        try:
            msg = json.loads(r["frame"])
        except (ValueError, KeyError):
            continue
        if kind == "out" and msg[0] == 2 and msg[2] == "StopTransaction":
            key = (r["cp"], msg[3].get("transactionId"))
            calls[(r["cp"], msg[1])] = key[1]
            out.setdefault(key, (r["t"], None))
        elif kind == "in" and msg[0] == 3 and (r["cp"], msg[1]) in calls:
            key = (r["cp"], calls.pop((r["cp"], msg[1])))
            if out[key][1] is None:
                out[key] = (out[key][0], r["t"])
    return out


def kill_figures(
    records: list[dict[str, Any]], timeline: Timeline, kill_t: float, stored: dict[tuple[str, int], StoredTransaction]
) -> KillFigures:
    answered = {
        (r["cp"], r["local_id"]): r["t"] for r in records if r.get("kind") == "tx" and r.get("event") == "answered"
    }
    running = sum(
        1 for x in timeline.transactions if x.started_at <= kill_t and (x.ended_at is None or x.ended_at > kill_t)
    )
    starts = [
        x
        for x in timeline.transactions
        if x.started_at <= kill_t and answered.get((x.cp, x.local_id), float("inf")) > kill_t
    ]
    starts_ok = sum(1 for x in starts if x.transaction_id is not None and (x.cp, x.transaction_id) in stored)
    stops = [
        (key, acked)
        for key, (sent, acked) in stop_acks(records).items()
        if sent <= kill_t and (acked is None or acked > kill_t)
    ]
    stops_ok = sum(1 for key, acked in stops if acked is not None and key in stored and stored[key].closed)
    return KillFigures(kill_t, running, len(starts), len(stops), starts_ok, stops_ok)


# What the server said about replays: a start committed whose answer the kill lost comes again
# (start_repeated, answered with the same id); a stop likewise (stop_unknown would be a stop for a
# transaction it never stored); superseded means it still held a transaction open when the connector
# started the next one (a stop lost).
LOG_EVENTS = (
    "transaction.start_repeated",
    "transaction.superseded",
    "transaction.reconciled",
    "transaction.stop_unknown",
    "mutant.on",
)


def log_counts(log: str) -> dict[str, int]:
    return {event.removeprefix("transaction."): log.count(f" {event} ") for event in LOG_EVENTS}


# ---------------------------------------------------------------- shell
def _serve_args(extra: list[str]) -> list[str]:
    return ["--allow-unknown-chargers", "--max-auto-registered", "1000000", *TIMINGS.serve_args(), *extra]


@dataclass
class CrashRun:
    db_url: str
    workdir: Path
    charge_points: int
    kills: int
    load_seconds: float = 6.0  # traffic before each kill, and after the last restart
    hold_seconds: float = 1.5  # commits held back just before every other kill
    extra: list[str] = field(default_factory=list)
    command: list[str] | None = None  # a mutant instead of `python -m csms`
    seed: int = 11
    kill_times: list[float] = field(default_factory=list)
    restart_seconds: list[float] = field(default_factory=list)
    figures: list[KillFigures] = field(default_factory=list)
    judgement: Judgement | None = None
    acked_starts: int = 0
    acked_stops: int = 0
    lost_starts: int = 0
    lost_stops: int = 0
    stored: int = 0
    log_counts: dict[str, int] = field(default_factory=dict)

    async def _start(self, ports: tuple[int, int] | None) -> CsmsProcess:
        pinned = [] if ports is None else ["--ocpp-port", str(ports[0]), "--http-port", str(ports[1])]
        return await trio.to_thread.run_sync(
            lambda: start_csms(
                self.db_url, self.workdir, _serve_args([*self.extra, *pinned]), timeout=60, command=self.command
            )
        )

    async def run(self) -> None:
        csms = await self._start(None)
        ports = (urlsplit(csms.ocpp).port, urlsplit(csms.http).port)
        spec = FleetSpec(
            seed=self.seed,
            groups=(GroupSpec(prefix=f"{PREFIX}-", count=self.charge_points, connectors=1, config=CONFIG),),
            driver=DRIVER,
            ramp=200.0,
            call_timeout=TIMINGS.call_timeout + 2,
        )
        trace = TraceWriter(self.workdir / "trace.jsonl", keep=True)
        fleet = Fleet(spec, csms.ocpp, trace=trace)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(fleet.run)
                with trio.fail_after(30):
                    await fleet.wait_online()
                for k in range(self.kills):
                    # Every other kill holds the commits back first (received, not yet stored: none may have
                    # been answered); the others land wherever the load is (a commit whose answer is lost
                    # comes again and must be answered with the same id, not stored twice).
                    held = k % 2 == 0
                    await trio.sleep(self.load_seconds - (self.hold_seconds if held else 0.0))
                    with writes_held(self.db_url) if held else nullcontext():
                        if held:
                            await trio.sleep(self.hold_seconds)
                        self.kill_times.append(fleet.clock.now())
                        csms.proc.kill()  # SIGKILL: no shutdown, no flush
                        await trio.to_thread.run_sync(csms.proc.wait)
                    began = time.monotonic()
                    csms = await self._start(ports)
                    self.restart_seconds.append(time.monotonic() - began)
                await trio.sleep(self.load_seconds)
                with trio.fail_after(60):
                    await fleet.stop_driving()
                    for cp in fleet:
                        await cp.flush()
                idle_from = fleet.clock.now()
                await trio.sleep(TIMINGS.recovery_window + 1.0)  # start-up maintenance and every sweep had their go
                await self._judge(csms, fleet, trace, idle_from)
                nursery.cancel_scope.cancel()
        finally:
            trace.close()
            csms.stop()
            self.log_counts = log_counts(csms.log())

    async def _judge(self, csms: CsmsProcess, fleet: Fleet, trace: TraceWriter, idle_from: float) -> None:
        adapter = UnstuckRestAdapter(csms.ocpp, csms.http, ADMIN_TOKEN, cp_prefix=PREFIX)
        try:
            keys = [(cp.id, c) for cp in fleet for c in cp.connectors]
            asked = fleet.clock.now()
            verdicts = await adapter.verdicts(keys)
            answered = fleet.clock.now()
            stored = await adapter.transactions(PREFIX)
        finally:
            await adapter.aclose()
        samples = [Sample(asked, cp, c, verdicts[(cp, c)], answered) for cp, c in keys]
        records = list(trace.records or ())
        timeline = Timeline.from_records(
            records, end=fleet.clock.now(), connectors={cp.id: len(cp.connectors) for cp in fleet}
        )
        rules = Rules(
            recovery_window=fleet.clock.now() - idle_from - 0.5, recovery_from=self.kill_times[-1], check_free=False
        )
        judgement = judge(samples, timeline, stored, rules)
        # The kills themselves close every connection (1006): that is the test, not a finding.
        self.judgement = replace(
            judgement, violations=tuple(v for v in judgement.violations if v.kind != "dropped_charger")
        )
        by_id = {(t.cp, t.transaction_id): t for t in stored}
        acked = [x for x in timeline.transactions if x.transaction_id is not None]
        self.stored = len(stored)
        self.acked_starts = len(acked)
        self.lost_starts = sum(1 for x in acked if (x.cp, x.transaction_id) not in by_id)
        stops = [x for x in acked if x.stop_acked]
        self.acked_stops = len(stops)
        self.lost_stops = sum(
            1
            for x in stops
            if not (
                by_id.get((x.cp, x.transaction_id))
                and by_id[(x.cp, x.transaction_id)].closed
                and by_id[(x.cp, x.transaction_id)].meter_stop == x.stop_meter_sent
            )
        )
        self.figures = [
            replace(kill_figures(records, timeline, t, by_id), held=k % 2 == 0) for k, t in enumerate(self.kill_times)
        ]

    def report(self, name: str) -> str:
        j = self.judgement
        lines = [
            f"crash safety on {name}: {self.charge_points} charge points, {len(self.kill_times)} SIGKILLs "
            f"(restarts took {', '.join(f'{s:.1f}' for s in self.restart_seconds)} s)"
        ]
        lines += [f"  {f.line()}" for f in self.figures]
        lines.append(
            f"  acknowledged starts {self.acked_starts}, stops {self.acked_stops}; stored transactions "
            f"{self.stored}; lost starts {self.lost_starts}, lost stops {self.lost_stops}"
        )
        lines.append("  server log: " + ", ".join(f"{k} {v}" for k, v in self.log_counts.items()))
        if j is not None:
            lines.append(f"  oracle: {len(j.violations)} violation(s) ({j.checked})")
            lines += [v.describe() for v in j.violations[:10]]
        return "\n".join(lines)


def _db_name(db_url: str) -> str:
    return "SQLite" if db_url.startswith("sqlite") else "PostgreSQL"


def _assert_durable(run: CrashRun) -> None:
    text = run.report(_db_name(run.db_url))
    print(text)
    assert run.judgement is not None and run.judgement.passed, text
    assert run.lost_starts == 0 and run.lost_stops == 0, text
    assert run.log_counts["superseded"] == 0 and run.log_counts["stop_unknown"] == 0, text
    # The test proves something only if kills really caught messages in the air.
    assert sum(f.starts_pending + f.stops_pending for f in run.figures) > 0, text
    assert all(f.starts_recovered == f.starts_pending and f.stops_recovered == f.stops_pending for f in run.figures), (
        text
    )


async def test_sigkill_under_load_loses_no_acknowledged_transaction(db_url, tmp_path):
    run = CrashRun(db_url, tmp_path, charge_points=40, kills=2)
    await run.run()
    _assert_durable(run)


async def test_acknowledging_before_the_commit_is_caught(sqlite_url, tmp_path):
    """The mutation: StopTransaction answered before its commit. Killed while commits wait, acknowledged
    stops are gone, and the same checks fail."""
    run = CrashRun(sqlite_url, tmp_path, charge_points=30, kills=1, command=command("stop_acked_before_commit"))
    await run.run()
    print(run.report("SQLite, stop_acked_before_commit"))
    assert run.lost_stops > 0, run.report("SQLite, stop_acked_before_commit")
    kinds = {v.kind for v in run.judgement.violations}
    assert kinds & {"lost_stop", "unclosed_transaction"}, run.report("SQLite, stop_acked_before_commit")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CSMS_LONG_RUNS"), reason="long run: CSMS_LONG_RUNS=1 to run it")
async def test_long_crash_run(db_url, tmp_path):
    """The outside run's shape: hundreds of charge points, four kills (a few minutes per database)."""
    run = CrashRun(
        db_url,
        tmp_path,
        charge_points=int(os.environ.get("CSMS_CRASH_CPS", "300")),
        kills=int(os.environ.get("CSMS_CRASH_KILLS", "4")),
        load_seconds=20.0,
        hold_seconds=2.0,
    )
    await run.run()
    _assert_durable(run)
