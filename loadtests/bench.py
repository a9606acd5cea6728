"""`python -m loadtests.bench`: drive N raw OCPP 1.6J connections at a CSMS and measure it.

The load generator is deliberately cheap so that it measures the server, not
itself: asyncio + the `websockets` client (C-accelerated framing), OCPP-J
frames built by hand with `json`, no `ocpp` library and no schema validation
on this side. Each connection has at most one outstanding Call (the OCPP-J
rule) and waits for its CallResult; a CallError, a 10 s timeout or a closed
connection counts as an error.

Without --url it starts a fresh `csms serve` subprocess on free ports and a
temporary SQLite file (or --db), measures that process's CPU time (all
threads, from /proc/PID/stat) and its peak RSS (VmHWM), reports server CPU ms
per call, and stops it with SIGTERM. With --url it drives an already running
CSMS (loopback only); add --server-pid to measure that process too.

Phases: ramp (connections opened at --ramp-rate per second; each sends
BootNotification and, except in hold mode, one StatusNotification Available
per connector), then all connections start the measured window (--duration)
at the same moment. Modes:
  mixed      per connector: Authorize, SN Preparing, StartTransaction,
             SN Charging, 3x MeterValues, StopTransaction, SN Available
             (9 calls), the connectors interleaved step by step, back to back.
             Transactions still open at the deadline are stopped afterwards
             (not counted).
  heartbeat  Heartbeat back to back.
  hold       one Heartbeat per connection every --hold-interval s (random
             phase): open-loop; reports connections held and server RSS.

calls/s counts CallResults received inside the window. Latency is send ->
matching CallResult. By default this is a closed loop: with many connections
latency is mostly queueing (Little's law: latency ~ connections / throughput).
--rate paces the calls instead, so p99 is service time at that load.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import ipaddress
import json
import math
import multiprocessing as mp
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scenarios.embedded import lab_args, launch_csms

__all__ = ["main", "build_parser"]

EXAMPLES = """examples:
  python -m loadtests.bench                              # 100 connections, mixed, 15 s, own csms serve + SQLite
  python -m loadtests.bench --cps 500 --duration 15      # saturate: how many calls/s, at what latency
  python -m loadtests.bench --cps 500 --rate 5000        # paced: 10 calls/s per connection; p99 of service time
  python -m loadtests.bench --cps 1000 --mode heartbeat --json
  python -m loadtests.bench --cps 10000 --mode hold --duration 60 --ramp-rate 500   # held connections + RSS
  python -m loadtests.bench --db postgresql+psycopg://postgres@127.0.0.1:5432/bench --cps 200
  python -m loadtests.bench --url ws://127.0.0.1:9000/ocpp --server-pid 12345 --cps 200
  python -m loadtests.bench --server-arg=--log-level=INFO   # extra `csms serve` flags (repeatable)

figures:
  calls/s        CallResults received inside the window / window length
  p50..p99, max  ms from sending a Call to its CallResult (window calls)
  errors         CallError:<code>, timeout (10 s), closed, bad_result:<Action>
  failed/dropped connections that could not open / that closed in the window
  srv CPU%       server CPU time (all threads) in the window / window (100 = one core);
                 main = the trio thread, other = worker threads (database writer, ...)
  srv ms/call    server CPU ms per call: window only, and over the whole run (setup,
                 window and cleanup calls, without the server's start-up)
  VmHWM          server peak resident memory; VmRSS at the end of the window
  drv CPU%       driver CPU in the window; near 100 % of one core = the driver is the limit

Only loopback targets are accepted (127.0.0.1, ::1, localhost), for --url and --db.
"""

CALL_TIMEOUT = 10.0  # s per Call; longer counts as an error ("timeout")
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 30.0
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_LOADS = json.loads

# Answers to Calls the CSMS itself sends (TriggerMessage, GetConfiguration, ...).
_SERVER_CALL_ANSWERS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {"configurationKey": [], "unknownKey": []},
    "ChangeConfiguration": {"status": "Accepted"},
    "TriggerMessage": {"status": "Rejected"},
    "ChangeAvailability": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "DataTransfer": {"status": "UnknownVendorId"},
    "GetLocalListVersion": {"listVersion": 0},
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Unknown"},
    "RemoteStartTransaction": {"status": "Rejected"},
    "RemoteStopTransaction": {"status": "Rejected"},
    "Reset": {"status": "Rejected"},
    "UnlockConnector": {"status": "NotSupported"},
}

# Shared progress counters, one row per driver process.
_P_OPENED, _P_FAILED, _P_SETUP, _P_CALLS, _P_STAGE, _P_WIDTH = range(6)
_STAGE_RAMP, _STAGE_WINDOW, _STAGE_DONE = 0, 1, 2

_ts_cache: list[Any] = [0, ""]


def _now_iso() -> str:
    """UTC ISO-8601 timestamp, cached per second."""
    t = int(time.time())
    if t != _ts_cache[0]:
        _ts_cache[0] = t
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return _ts_cache[1]


# --------------------------------------------------------------------- system


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (inherited by the server we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _is_loopback_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _check_loopback_url(url: str) -> None:
    host = urlsplit(url.replace("{id}", "X")).hostname
    if not host:
        raise SystemExit(f"loadtests.bench: no host in URL {url!r}")
    if not _is_loopback_host(host):
        raise SystemExit(f"loadtests.bench: refusing non-loopback target {host!r} (only 127.0.0.1, ::1, localhost)")


def _check_loopback_db(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        return
    try:
        from sqlalchemy.engine import make_url

        host = make_url(db_url).host
    except Exception as exc:  # noqa: BLE001 - any parse problem is a usage error
        raise SystemExit(f"loadtests.bench: cannot parse --db {db_url!r}: {exc}") from None
    if host and not host.startswith("/") and not _is_loopback_host(host):
        raise SystemExit(f"loadtests.bench: refusing non-loopback database host {host!r}")


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all threads, dead ones included), seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmHWM, VmRSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_threads(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class CpuSample:
    t: float
    total: float | None  # whole process
    main: float | None  # the main (trio) thread


def sample_server(pid: int | None) -> CpuSample:
    t = time.monotonic()
    if pid is None:
        return CpuSample(t, None, None)
    return CpuSample(t, proc_cpu_seconds(pid), _thread_cpu(pid, pid))


def _thread_cpu(pid: int, tid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# ---------------------------------------------------------------------- driver


class Stats:
    """Per-process statistics; `to_dict` is what crosses the process boundary."""

    def __init__(self) -> None:
        self.lat: dict[str, array] = {}  # action -> ms, window calls
        self.errors: Counter[str] = Counter()
        self.setup_errors: Counter[str] = Counter()
        self.setup_lat = array("d")
        self.sched_lat = array("d")  # --rate: ms from the scheduled send time to the CallResult
        self.send_lag = array("d")  # --rate: ms the send was behind its schedule
        self.opened = 0
        self.open_failed: Counter[str] = Counter()
        self.setup_done = 0
        self.dropped = 0
        self.held = 0
        self.ok_in_window = 0
        self.completed = 0  # every CallResult/CallError, all phases (progress)
        self.server_calls = 0
        self.unmatched = 0
        self.cleanup_calls = 0
        self.no_subprotocol = 0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["lat"] = {k: v.tolist() for k, v in self.lat.items()}
        d["setup_lat"] = self.setup_lat.tolist()
        d["sched_lat"] = self.sched_lat.tolist()
        d["send_lag"] = self.send_lag.tolist()
        for k in ("errors", "setup_errors", "open_failed"):
            d[k] = dict(d[k])
        return d


class Dropped(Exception):
    """The connection closed under us."""


class Conn:
    __slots__ = ("ws", "cp_id", "st", "seq", "phase", "deadline", "closed_exc", "interval", "next_slot")

    def __init__(self, ws: Any, cp_id: str, st: Stats, closed_exc: type[BaseException]) -> None:
        self.ws = ws
        self.cp_id = cp_id
        self.st = st
        self.seq = 0
        self.phase = "setup"  # setup | window | cleanup
        self.deadline = 0.0
        self.closed_exc = closed_exc
        self.interval = 0.0  # --rate: seconds between this connection's calls in the window (0 = back to back)
        self.next_slot = 0.0

    def err(self, kind: str) -> None:
        if self.phase == "window":
            self.st.errors[kind] += 1
        elif self.phase == "setup":
            self.st.setup_errors[kind] += 1
        else:
            self.st.errors["cleanup:" + kind] += 1

    async def _answer_server_call(self, msg: list) -> None:
        self.st.server_calls += 1
        try:
            payload = _SERVER_CALL_ANSWERS.get(msg[2])
            frame = [4, msg[1], "NotImplemented", "bench driver", {}] if payload is None else [3, msg[1], payload]
            await self.ws.send(_DUMPS(frame))
        except (IndexError, TypeError):
            pass

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Send one Call and wait for its answer; the CallResult payload, or None on error."""
        st = self.st
        slot = 0.0
        if self.interval and self.phase == "window":  # paced (--rate): wait for this connection's next slot
            slot = self.next_slot
            now = time.monotonic()
            if slot >= self.deadline:
                await asyncio.sleep(max(0.0, self.deadline - now))
                return None
            if slot > now:
                await asyncio.sleep(slot - now)
            elif now - slot > self.interval:  # fell behind by more than a slot: do not burst to catch up
                self.next_slot = now
            self.next_slot += self.interval
        self.seq += 1
        uid = str(self.seq)
        frame = _DUMPS([2, uid, action, payload])
        ws = self.ws
        t0 = time.perf_counter()
        m0 = time.monotonic()
        try:
            await ws.send(frame)
            async with asyncio.timeout(CALL_TIMEOUT):
                for _ in range(10_000):  # bounded: server calls / stray answers in between
                    raw = await ws.recv()
                    try:
                        msg = _LOADS(raw)
                        mtype = msg[0]
                        mid = msg[1]
                    except (ValueError, TypeError, IndexError, KeyError):
                        self.err("bad_frame")
                        continue
                    if mtype == 2:
                        await self._answer_server_call(msg)
                        continue
                    if mid != uid:
                        st.unmatched += 1
                        continue
                    break
                else:
                    self.err("too_many_frames")
                    return None
        except TimeoutError:
            self.err("timeout")
            return None
        except self.closed_exc:
            self.err("closed")
            raise Dropped() from None
        t1 = time.perf_counter()
        st.completed += 1
        if mtype == 3:
            if self.phase == "window":
                lat = st.lat.get(action)
                if lat is None:
                    lat = st.lat[action] = array("d")
                lat.append((t1 - t0) * 1000.0)
                m1 = time.monotonic()
                if m1 <= self.deadline:
                    st.ok_in_window += 1
                if slot:
                    # from the scheduled send time: includes the wait for a late slot (no coordinated omission)
                    st.sched_lat.append((m1 - slot) * 1000.0)
                    st.send_lag.append((m0 - slot) * 1000.0)
            elif self.phase == "setup":
                st.setup_lat.append((t1 - t0) * 1000.0)
            else:
                st.cleanup_calls += 1
            res = msg[2] if len(msg) > 2 else None
            if not isinstance(res, dict):
                self.err("bad_result:" + action)
                return None
            return res
        if mtype == 4:
            self.err(f"CallError:{msg[2] if len(msg) > 2 else '?'}")
            return None
        self.err("bad_frame")
        return None


def _accepted(res: dict[str, Any] | None) -> bool:
    try:
        return res["idTagInfo"]["status"] == "Accepted"  # type: ignore[index]
    except (KeyError, TypeError):
        return False


def _sn(k: int, status: str) -> dict[str, Any]:
    return {"connectorId": k, "errorCode": "NoError", "status": status, "timestamp": _now_iso()}


async def run_mixed(c: Conn, ncon: int, rnd: random.Random) -> None:
    """The charging cycle per connector, connectors interleaved step by step."""
    conns = list(range(1, ncon + 1))
    register = {k: rnd.randint(0, 10_000_000) for k in conns}
    tag = {k: f"TAG{c.cp_id[-12:]}{k}"[:20] for k in conns}
    tx: dict[int, int] = {}

    def over() -> bool:
        return time.monotonic() >= c.deadline

    try:
        for _cycle in range(10_000_000):
            if over():
                break
            active = []
            for k in conns:
                if over():
                    break
                res = await c.call("Authorize", {"idTag": tag[k]})
                if res is None:
                    continue
                if not _accepted(res):
                    c.err("rejected:Authorize")
                    continue
                active.append(k)
            for k in list(active):
                if over():
                    break
                await c.call("StatusNotification", _sn(k, "Preparing"))
            for k in list(active):
                if over():
                    active = [a for a in active if a in tx]
                    break
                res = await c.call(
                    "StartTransaction",
                    {"connectorId": k, "idTag": tag[k], "meterStart": register[k], "timestamp": _now_iso()},
                )
                tid = res.get("transactionId") if res is not None else None
                if res is None or not isinstance(tid, int) or not _accepted(res):
                    if res is not None:
                        c.err("bad_result:StartTransaction")
                    active.remove(k)
                    continue
                tx[k] = tid
            for k in active:
                if over():
                    break
                await c.call("StatusNotification", _sn(k, "Charging"))
            for _ in range(3):
                for k in active:
                    if over():
                        break
                    register[k] += rnd.randint(50, 500)
                    await c.call(
                        "MeterValues",
                        {
                            "connectorId": k,
                            "transactionId": tx[k],
                            "meterValue": [
                                {
                                    "timestamp": _now_iso(),
                                    "sampledValue": [
                                        {
                                            "value": str(register[k]),
                                            "context": "Sample.Periodic",
                                            "measurand": "Energy.Active.Import.Register",
                                            "location": "Outlet",
                                            "unit": "Wh",
                                        }
                                    ],
                                }
                            ],
                        },
                    )
            for k in active:
                if over():
                    break
                res = await c.call(
                    "StopTransaction",
                    {
                        "transactionId": tx[k],
                        "idTag": tag[k],
                        "meterStop": register[k],
                        "timestamp": _now_iso(),
                        "reason": "Local",
                    },
                )
                if res is not None:
                    tx.pop(k)
                await c.call("StatusNotification", _sn(k, "Available"))
        c.phase = "cleanup"  # not counted: stop what is still open
        for k, tid in list(tx.items()):
            await c.call(
                "StopTransaction",
                {
                    "transactionId": tid,
                    "idTag": tag[k],
                    "meterStop": register[k],
                    "timestamp": _now_iso(),
                    "reason": "Local",
                },
            )
            await c.call("StatusNotification", _sn(k, "Available"))
    except Dropped:
        if c.phase == "window":
            c.st.dropped += 1


async def run_heartbeat(c: Conn) -> None:
    try:
        for _ in range(100_000_000):
            if time.monotonic() >= c.deadline:
                break
            await c.call("Heartbeat", {})
    except Dropped:
        c.st.dropped += 1


async def run_hold(c: Conn, rnd: random.Random, t_start: float, interval: float) -> None:
    """One Heartbeat every `interval` s, random phase, until the deadline (open loop)."""
    from websockets.protocol import State

    try:
        nxt = t_start + rnd.random() * interval
        for _ in range(10_000_000):
            if nxt >= c.deadline:
                await asyncio.sleep(max(0.0, c.deadline - time.monotonic()))
                break
            wait = nxt - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await c.call("Heartbeat", {})
            nxt += interval
        if c.ws.state is State.OPEN:
            c.st.held += 1
        else:
            c.st.dropped += 1
    except Dropped:
        c.st.dropped += 1


class _Go(asyncio.Event):
    t_start = 0.0
    deadline = 0.0


async def _connection_main(
    idx: int,
    cp_id: str,
    args: argparse.Namespace,
    st: Stats,
    ready: list,
    go: _Go,
    t_open: float,
    connect_kw: dict[str, Any],
) -> Any:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    rnd = random.Random(idx)
    delay = t_open - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        ws = await connect(args.url_template.replace("{id}", cp_id), **connect_kw)
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, InvalidHandshake, ...
        st.open_failed[type(exc).__name__] += 1
        _mark_ready(ready)
        return None
    st.opened += 1
    if ws.subprotocol != "ocpp1.6":
        st.no_subprotocol += 1
    c = Conn(ws, cp_id, st, ConnectionClosed)
    ok = True
    try:
        res = await c.call(
            "BootNotification",
            {
                "chargePointVendor": "BenchVendor",
                "chargePointModel": "BenchModel",
                "chargePointSerialNumber": cp_id[-25:],
                "firmwareVersion": "bench-1.0",
            },
        )
        if res is not None and res.get("status") != "Accepted":
            c.err(f"boot_not_accepted:{res.get('status')}")
        if args.mode != "hold" or args.hold_status:
            for k in range(1, args.connectors + 1):
                await c.call("StatusNotification", _sn(k, "Available"))
    except Dropped:
        ok = False
        st.setup_errors["dropped_in_setup"] += 1
    if ok:
        st.setup_done += 1
    _mark_ready(ready)
    if not ok:
        return ws
    await go.wait()
    c.deadline = go.deadline
    c.phase = "window"
    if args.rate and args.mode != "hold":
        c.interval = args.cps / args.rate
        c.next_slot = go.t_start + rnd.random() * c.interval
    if args.mode == "mixed":
        await run_mixed(c, args.connectors, rnd)
    elif args.mode == "heartbeat":
        await run_heartbeat(c)
    else:
        await run_hold(c, rnd, go.t_start, args.hold_interval)
    return ws


def _mark_ready(ready: list) -> None:
    ready[0] += 1
    if ready[0] >= ready[1]:
        ready[2].set()


def _connect_kwargs() -> dict[str, Any]:
    from websockets.asyncio.client import connect

    kw: dict[str, Any] = dict(
        subprotocols=["ocpp1.6"],
        compression=None,
        open_timeout=CALL_TIMEOUT,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=2,
        max_queue=64,
    )
    if "proxy" in inspect.signature(connect).parameters:  # websockets >= 15 reads proxy env vars
        kw["proxy"] = None
    return kw


async def _worker_async(
    args: argparse.Namespace,
    proc_idx: int,
    nprocs: int,
    ids: list[str],
    barrier: Any,
    progress: Any,
    server_pid: int | None,
) -> dict[str, Any]:
    st = Stats()
    n = len(ids)
    rate = max(1e-3, args.ramp_rate / nprocs)
    go = _Go()
    ready: list[Any] = [0, n, asyncio.Event()]
    if n == 0:
        ready[2].set()
    row = proc_idx * _P_WIDTH

    async def ticker() -> None:
        for _ in range(10_000_000):
            progress[row + _P_OPENED] = st.opened
            progress[row + _P_FAILED] = sum(st.open_failed.values())
            progress[row + _P_SETUP] = st.setup_done
            progress[row + _P_CALLS] = st.completed - calls_before_window
            await asyncio.sleep(0.25)

    calls_before_window = 0
    tick = asyncio.create_task(ticker())
    connect_kw = _connect_kwargs()
    t0 = time.monotonic()
    offset = proc_idx / max(args.ramp_rate, 1e-3)
    tasks = [
        asyncio.create_task(_connection_main(i, cp_id, args, st, ready, go, t0 + offset + i / rate, connect_kw))
        for i, cp_id in enumerate(ids)
    ]
    ramp_bound = n / rate + (args.connectors + 4) * CALL_TIMEOUT
    try:
        await asyncio.wait_for(ready[2].wait(), ramp_bound)
    except TimeoutError:
        st.setup_errors["ramp_timeout"] += 1
    ramp_s = time.monotonic() - t0
    loop = asyncio.get_running_loop()
    if barrier is not None:
        try:
            await loop.run_in_executor(None, barrier.wait, ramp_bound + 30)
        except Exception:  # noqa: BLE001 - BrokenBarrierError, timeout
            st.setup_errors["barrier_broken"] += 1
    srv: dict[str, Any] = {}
    measure_server = proc_idx == 0 and server_pid is not None
    if measure_server:
        srv["go"] = sample_server(server_pid).__dict__
    progress[row + _P_OPENED] = st.opened
    progress[row + _P_FAILED] = sum(st.open_failed.values())
    progress[row + _P_SETUP] = st.setup_done
    calls_before_window = st.completed
    cpu0 = _self_cpu()
    go.t_start = time.monotonic()
    go.deadline = go.t_start + args.duration
    progress[row + _P_STAGE] = _STAGE_WINDOW
    go.set()
    if measure_server:

        def at_deadline() -> None:
            srv["deadline"] = sample_server(server_pid).__dict__
            srv["vmrss_kb"] = proc_status_kb(server_pid, "VmRSS")
            srv["threads"] = proc_threads(server_pid)

        loop.call_at(go.deadline, at_deadline)
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, go.deadline - time.monotonic()) + 4 * CALL_TIMEOUT)
    t_end = time.monotonic()
    cpu1 = _self_cpu()
    for t in pending:
        t.cancel()
        st.errors["task_overrun"] += 1
    if pending:
        await asyncio.wait(pending, timeout=5)
    wss = []
    for t in done:
        if t.cancelled():
            continue
        if t.exception() is not None:
            st.errors["task_exc:" + type(t.exception()).__name__] += 1
        elif t.result() is not None:
            wss.append(t.result())
    if wss:
        await asyncio.wait([asyncio.create_task(w.close()) for w in wss], timeout=10)
    tick.cancel()
    progress[row + _P_STAGE] = _STAGE_DONE
    d = st.to_dict()
    d.update(
        ramp_s=ramp_s,
        tail_s=t_end - go.deadline,
        measured_wall_s=t_end - go.t_start,
        cpu_window_s=cpu1 - cpu0,
        n=n,
        server_window=srv,
    )
    return d


def _worker_entry(
    args: argparse.Namespace,
    proc_idx: int,
    nprocs: int,
    ids: list[str],
    barrier: Any,
    progress: Any,
    server_pid: int | None,
    q: Any,
) -> None:
    raise_nofile()
    try:
        d = asyncio.run(_worker_async(args, proc_idx, nprocs, ids, barrier, progress, server_pid))
    except BaseException as exc:  # noqa: BLE001 - report instead of hanging the parent
        d = {"fatal": repr(exc)}
    q.put(d)


# ---------------------------------------------------------------------- server


class ServerProcess:
    """A `csms serve` subprocess on free ports, stopped with SIGTERM."""

    def __init__(self, db_url: str, workdir: Path, extra: list[str], log_level: str) -> None:
        self.api_token = secrets.token_hex(16)  # for --probe-occupancy; this process's server only
        self.http = ""
        self.tokens_file = workdir / "api-tokens"
        self.tokens_file.write_text(f"admin:bench:{self.api_token}\n", encoding="utf-8")
        self.tokens_file.chmod(0o600)
        self.db_url = db_url
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self.args = [
            *lab_args(db_url),
            "--log-level",
            log_level,
            # A benchmark drives each charge point far faster than a charger would: no rate limit.
            "--ocpp-messages-per-second",
            "0",
            "--api-tokens-file",
            str(self.tokens_file),
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.ocpp = ""
        self.returncode: int | None = None

    def start(self) -> None:
        launched = launch_csms(
            self.args,
            self.workdir,
            log_path=self.log_path,
            timeout=SERVER_START_TIMEOUT,
            new_session=True,
            cwd=self.workdir,
        )
        self.proc, self.ocpp, self.http = launched.proc, launched.ocpp, launched.http

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        return self.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def log_problems(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if " ERROR " in line or " CRITICAL " in line:
                        counts["error_lines"] += 1
                    elif " WARNING " in line:
                        counts["warning_lines"] += 1
                    if line.startswith("Traceback"):
                        counts["tracebacks"] += 1
        except OSError:
            pass
        return dict(counts)


# --------------------------------------------------------------------- results


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = max(0, min(len(sorted_vals) - 1, int(math.ceil(q * len(sorted_vals))) - 1))
    return round(sorted_vals[i], 3)


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def merge(parts: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    setup_errors: Counter[str] = Counter()
    open_failed: Counter[str] = Counter()
    lat_by_action: dict[str, list[float]] = {}
    setup_lat: list[float] = []
    sched_lat: list[float] = []
    send_lag: list[float] = []
    tot: Counter[str] = Counter()
    cpu_window, mwall, ramp, fatal = [], [], [], []
    srv_window: dict[str, Any] = {}
    for p in parts:
        if "fatal" in p:
            fatal.append(p["fatal"])
            continue
        errors.update(p["errors"])
        setup_errors.update(p["setup_errors"])
        open_failed.update(p["open_failed"])
        for a, v in p["lat"].items():
            lat_by_action.setdefault(a, []).extend(v)
        setup_lat.extend(p["setup_lat"])
        sched_lat.extend(p["sched_lat"])
        send_lag.extend(p["send_lag"])
        for k in (
            "opened",
            "setup_done",
            "dropped",
            "held",
            "ok_in_window",
            "server_calls",
            "unmatched",
            "cleanup_calls",
            "no_subprotocol",
            "n",
        ):
            tot[k] += p[k]
        cpu_window.append(p["cpu_window_s"])
        mwall.append(p["measured_wall_s"])
        ramp.append(p["ramp_s"])
        srv_window = p.get("server_window") or srv_window
    all_lat = sorted(x for v in lat_by_action.values() for x in v)
    setup_lat.sort()
    completed = len(all_lat)
    window = args.duration
    long_enough = bool(mwall) and min(mwall) >= 1.0
    res: dict[str, Any] = {
        "mode": args.mode,
        "cps": args.cps,
        "procs": args.procs,
        "connectors": args.connectors,
        "duration_s": window,
        "url": args.url_template,
        "calls_per_s": round(tot["ok_in_window"] / window, 1),
        "calls_ok_in_window": tot["ok_in_window"],
        "calls_completed": completed,
        "lat_ms": {
            "p50": _pct(all_lat, 0.50),
            "p95": _pct(all_lat, 0.95),
            "p99": _pct(all_lat, 0.99),
            "max": round(all_lat[-1], 3) if all_lat else None,
            "mean": round(sum(all_lat) / completed, 3) if completed else None,
        },
        "lat_by_action_ms": {
            a: {"n": len(s), "p50": _pct(s, 0.5), "p99": _pct(s, 0.99)}
            for a, v in sorted(lat_by_action.items())
            for s in [sorted(v)]
        },
        "errors": dict(errors),
        "errors_total": sum(errors.values()),
        "connections": {
            "requested": args.cps,
            "opened": tot["opened"],
            "failed": sum(open_failed.values()),
            "failed_by_kind": dict(open_failed),
            "setup_done": tot["setup_done"],
            "dropped": tot["dropped"],
            "no_subprotocol": tot["no_subprotocol"],
        },
        "ramp": {
            "ramp_s": round(max(ramp), 3) if ramp else None,
            "ramp_rate": args.ramp_rate,
            "setup_calls": len(setup_lat),
            "setup_p50_ms": _pct(setup_lat, 0.5),
            "setup_p99_ms": _pct(setup_lat, 0.99),
            "setup_errors": dict(setup_errors),
        },
        "driver_cpu": {
            "window_cpu_s": round(sum(cpu_window), 3),
            "pct_of_one_core": _r(100 * sum(cpu_window) / max(mwall)) if long_enough else None,
            "max_proc_pct": _r(100 * max(c / w for c, w in zip(cpu_window, mwall, strict=True)))
            if long_enough
            else None,
        },
        "server_calls": tot["server_calls"],
        "unmatched": tot["unmatched"],
        "cleanup_calls": tot["cleanup_calls"],
        "_server_window": srv_window,
    }
    if args.rate and args.mode != "hold":
        sched_lat.sort()
        send_lag.sort()
        res["paced"] = {
            "target_calls_per_s": args.rate,
            "per_connection_interval_ms": round(1000 * args.cps / args.rate, 3),
            "achieved_ratio": round(res["calls_per_s"] / args.rate, 3),
            "sched_lat_ms": {
                "p50": _pct(sched_lat, 0.5),
                "p99": _pct(sched_lat, 0.99),
                "max": round(sched_lat[-1], 3) if sched_lat else None,
            },
            "send_lag_ms": {"p50": _pct(send_lag, 0.5), "p99": _pct(send_lag, 0.99)},
        }
    if args.mode == "hold":
        res["hold"] = {
            "requested": args.cps,
            "held_to_end": tot["held"],
            "all_held": tot["held"] == args.cps,
            "interval_s": args.hold_interval,
        }
    if fatal:
        res["fatal"] = fatal
    return res


def add_server_figures(
    res: dict[str, Any],
    pid: int | None,
    s_start: CpuSample,
    s_end: CpuSample,
    hwm_kb: int | None,
    rss_start_kb: int | None,
) -> None:
    """Server CPU and memory: window (sampled by driver 0 at go/deadline) and whole run."""
    sw = res.pop("_server_window", {}) or {}
    if pid is None:
        res["server"] = None
        return
    out: dict[str, Any] = {"pid": pid}
    go, dl = sw.get("go"), sw.get("deadline")
    if go and dl and go["total"] is not None and dl["total"] is not None:
        wall = max(1e-9, dl["t"] - go["t"])
        cpu = dl["total"] - go["total"]
        main = (dl["main"] - go["main"]) if go["main"] is not None and dl["main"] is not None else None
        calls = res["calls_ok_in_window"]
        out.update(
            window_cpu_s=round(cpu, 3),
            cpu_pct=_r(100 * cpu / wall),
            main_thread_pct=_r(100 * main / wall) if main is not None else None,
            other_threads_pct=_r(100 * (cpu - main) / wall) if main is not None else None,
            ms_per_call=round(1000 * cpu / calls, 4) if calls else None,
        )
    if go and s_start.total is not None and go["total"] is not None:
        conns = res["connections"]["opened"]
        ramp_cpu = go["total"] - s_start.total
        out["ramp_cpu_s"] = round(ramp_cpu, 3)
        out["ramp_cpu_ms_per_connection"] = round(1000 * ramp_cpu / conns, 3) if conns else None
    if s_start.total is not None and s_end.total is not None:
        cpu = s_end.total - s_start.total
        wall = max(1e-9, s_end.t - s_start.t)
        calls = res["calls_completed"] + res["ramp"]["setup_calls"] + res["cleanup_calls"]
        out.update(
            run_cpu_s=round(cpu, 3),
            run_wall_s=round(wall, 2),
            run_cpu_pct=_r(100 * cpu / wall),
            run_ms_per_call=round(1000 * cpu / calls, 4) if calls else None,
        )
    out["vmhwm_mb"] = _r(hwm_kb / 1024) if hwm_kb is not None else None
    rss = sw.get("vmrss_kb")
    out["vmrss_start_mb"] = _r(rss_start_kb / 1024) if rss_start_kb is not None else None
    out["vmrss_window_end_mb"] = _r(rss / 1024) if rss is not None else None
    if rss is not None and rss_start_kb is not None and res["connections"]["opened"]:
        # growth over the idle server / connections: the marginal memory of one connection
        out["rss_kb_per_connection"] = round((rss - rss_start_kb) / res["connections"]["opened"], 1)
    out["threads_at_window_end"] = sw.get("threads")
    res["server"] = out


def human(r: dict[str, Any]) -> str:
    L, c, rp, s = r["lat_ms"], r["connections"], r["ramp"], r.get("server")
    tgt = r.get("target", {})
    lines = [
        f"loadtests.bench mode={r['mode']} connections={r['cps']} connectors={r['connectors']} "
        f"window={r['duration_s']}s procs={r['procs']}",
        f"target     : {r['url']}" + (f"  ({tgt.get('started')} db={tgt.get('db')})" if tgt.get("started") else ""),
        f"ramp       : {c['opened']}/{c['requested']} opened, {c['failed']} failed {c['failed_by_kind'] or ''}"
        f"in {rp['ramp_s']} s; {rp['setup_calls']} setup calls p50={rp['setup_p50_ms']} p99={rp['setup_p99_ms']} ms"
        f"{'; setup errors ' + str(rp['setup_errors']) if rp['setup_errors'] else ''}",
        f"throughput : {r['calls_per_s']} calls/s ({r['calls_ok_in_window']} in the window, "
        f"{r['calls_completed']} completed)",
        f"latency ms : p50={L['p50']} p95={L['p95']} p99={L['p99']} max={L['max']} mean={L['mean']}",
        f"errors     : {r['errors_total']} {r['errors'] or ''}  dropped={c['dropped']} "
        f"no_subprotocol={c['no_subprotocol']} server_calls={r['server_calls']}",
        f"driver CPU : {r['driver_cpu']['pct_of_one_core']}% of one core "
        f"(busiest process {r['driver_cpu']['max_proc_pct']}%)",
    ]
    if "paced" in r:
        pc = r["paced"]
        lines.append(
            f"paced      : target {pc['target_calls_per_s']} calls/s ({pc['per_connection_interval_ms']} ms "
            f"between a connection's calls), achieved x{pc['achieved_ratio']}; from the scheduled send: "
            f"p50={pc['sched_lat_ms']['p50']} p99={pc['sched_lat_ms']['p99']} ms; "
            f"send lag p99={pc['send_lag_ms']['p99']} ms"
        )
    if "hold" in r:
        h = r["hold"]
        lines.append(
            f"hold       : {h['held_to_end']}/{h['requested']} held to the end (heartbeat every {h['interval_s']} s)"
        )
    if s:
        lines.append(
            f"server CPU : {s.get('cpu_pct')}% of one core in the window (main thread {s.get('main_thread_pct')}%, "
            f"other threads {s.get('other_threads_pct')}%), {s.get('ms_per_call')} ms/call; "
            f"whole run {s.get('run_ms_per_call')} ms/call, ramp {s.get('ramp_cpu_ms_per_connection')} ms/connection"
        )
        lines.append(
            f"server mem : VmHWM {s.get('vmhwm_mb')} MB, VmRSS {s.get('vmrss_start_mb')} MB idle -> "
            f"{s.get('vmrss_window_end_mb')} MB at window end ({s.get('rss_kb_per_connection')} kB/connection), "
            f"threads {s.get('threads_at_window_end')}"
        )
    if tgt.get("started"):
        lines.append(
            f"server log : {tgt.get('log') or '(temp dir removed; --keep keeps it)'} "
            f"{tgt.get('log_problems') or ''} rc={tgt.get('returncode')}"
        )
    if "occupancy_probe_ms" in r:
        o = r["occupancy_probe_ms"]
        lines.append(
            f"occupancy  : {o['n']} GETs at {o['rate_per_s']:g}/s in the window, status {o['status']}; "
            f"p50={o['p50']} p95={o['p95']} p99={o['p99']} max={o['max']} ms"
        )
    for a, v in r["lat_by_action_ms"].items():
        lines.append(f"  {a:20s} n={v['n']:8d} p50={v['p50']} p99={v['p99']}")
    if "fatal" in r:
        lines.append(f"FATAL: {r['fatal']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------ main


def _progress_printer(progress: Any, procs: int, args: argparse.Namespace, stop: threading.Event) -> None:
    t0 = time.monotonic()
    last_stage = _STAGE_RAMP
    last_print = 0.0
    t_window = t0
    bound = args.cps / args.ramp_rate + args.duration + 600
    while not stop.wait(0.5) and time.monotonic() - t0 < bound:
        rows = [progress[i * _P_WIDTH : (i + 1) * _P_WIDTH] for i in range(procs)]
        opened, failed, setup, calls = (sum(r[k] for r in rows) for k in (_P_OPENED, _P_FAILED, _P_SETUP, _P_CALLS))
        stage = min(r[_P_STAGE] for r in rows)
        now = time.monotonic()
        if stage == _STAGE_RAMP and now - last_print >= 1.0:
            print(
                f"[bench] ramp {now - t0:5.1f}s: {opened}/{args.cps} connected, {failed} failed, {setup} set up",
                file=sys.stderr,
                flush=True,
            )
            last_print = now
        elif stage == _STAGE_WINDOW and last_stage == _STAGE_RAMP:
            t_window = now
            print(
                f"[bench] ramp done: {opened}/{args.cps} connected, {failed} failed, {setup} set up; "
                f"measuring {args.duration:g} s ({args.mode})",
                file=sys.stderr,
                flush=True,
            )
            last_print = now
        elif stage == _STAGE_WINDOW and now - last_print >= 5.0:
            print(f"[bench] window {now - t_window:4.1f}s: {calls} calls answered so far", file=sys.stderr, flush=True)
            last_print = now
        last_stage = max(last_stage, stage)
        if stage == _STAGE_DONE:
            return


class OccupancyProbe(threading.Thread):
    """GET /api/connectors/{station}/1/occupancy at a fixed rate while the window runs (--probe-occupancy).

    A thread of its own with a keep-alive http.client connection: the REST API's latency under the
    OCPP load, measured from the send of each request to the end of its answer. Station ids are
    the charge point ids (lab mode registers a station per charge point).
    """

    def __init__(
        self, http_url: str, token: str, ids: list[str], rate: float, progress: Any, procs: int, bound_s: float
    ) -> None:
        super().__init__(daemon=True)
        u = urlsplit(http_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.token, self.ids, self.rate = token, ids, rate
        self.progress, self.procs, self.bound_s = progress, procs, bound_s
        self.lat: list[float] = []
        self.status: Counter[str] = Counter()

    def _stage(self) -> int:
        return min(self.progress[i * _P_WIDTH + _P_STAGE] for i in range(self.procs))

    def run(self) -> None:
        import http.client

        t_end = time.monotonic() + self.bound_s
        while self._stage() == _STAGE_RAMP and time.monotonic() < t_end:
            time.sleep(0.05)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=CALL_TIMEOUT)
        headers = {"Authorization": f"Bearer {self.token}"}
        rnd = random.Random(7)
        nxt = time.monotonic()
        while self._stage() == _STAGE_WINDOW and time.monotonic() < t_end:
            nxt += 1.0 / self.rate
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/api/connectors/{rnd.choice(self.ids)}/1/occupancy", headers=headers)
                resp = conn.getresponse()
                resp.read()
                self.lat.append(1000 * (time.perf_counter() - t0))
                self.status[str(resp.status)] += 1
            except (OSError, http.client.HTTPException) as exc:
                self.status[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=CALL_TIMEOUT)
        conn.close()

    def figures(self) -> dict[str, Any]:
        v = sorted(self.lat)
        return {
            "rate_per_s": self.rate,
            "n": len(v),
            "status": dict(self.status),
            "p50": _pct(v, 0.50),
            "p95": _pct(v, 0.95),
            "p99": _pct(v, 0.99),
            "max": _r(v[-1], 3) if v else None,
        }


def run_driver(
    args: argparse.Namespace, server_pid: int | None, probe_to: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    width = max(4, len(str(args.cps)))
    ids = [f"{args.id_prefix}{i:0{width}d}" for i in range(1, args.cps + 1)]
    procs = min(args.procs, args.cps)
    progress = mp.RawArray("q", procs * _P_WIDTH)
    stop = threading.Event()
    show = not args.quiet and (args.progress or args.cps >= 200 or args.cps / args.ramp_rate >= 2)
    args.probe = None
    if args.probe_occupancy and probe_to is not None:
        args.probe = OccupancyProbe(
            probe_to[0],
            probe_to[1],
            ids,
            args.probe_occupancy,
            progress,
            procs,
            args.cps / args.ramp_rate + args.duration + 600,
        )
        args.probe.start()
    if procs == 1:
        printer = threading.Thread(target=_progress_printer, args=(progress, 1, args, stop), daemon=True)
        if show:
            printer.start()
        try:
            return [asyncio.run(_worker_async(args, 0, 1, ids, None, progress, server_pid))]
        finally:
            stop.set()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    barrier = ctx.Barrier(procs)
    ps = [
        ctx.Process(
            target=_worker_entry, daemon=True, args=(args, i, procs, ids[i::procs], barrier, progress, server_pid, q)
        )
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    printer = threading.Thread(target=_progress_printer, args=(progress, procs, args, stop), daemon=True)
    if show:
        printer.start()
    per_proc = math.ceil(args.cps / procs)
    bound = (
        per_proc / (args.ramp_rate / procs)
        + (args.connectors + 4) * CALL_TIMEOUT
        + 30
        + args.duration
        + 4 * CALL_TIMEOUT
        + 60
    )
    parts = []
    t_bound = time.monotonic() + bound
    try:
        for _ in range(procs):
            try:
                parts.append(q.get(timeout=max(1.0, t_bound - time.monotonic())))
            except Exception:  # noqa: BLE001 - queue.Empty
                parts.append({"fatal": "driver process result timeout"})
    finally:
        stop.set()
        for p in ps:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    return parts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--cps", type=int, default=100, metavar="N", help="connections (charge points), default 100")
    ap.add_argument("--duration", type=float, default=15.0, metavar="S", help="measured window in s, default 15")
    ap.add_argument("--mode", choices=("mixed", "heartbeat", "hold"), default="mixed", help="default mixed")
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="CALLS_PER_S",
        help="mixed/heartbeat: pace the window at this many calls/s in total (each connection sends "
        "one call every cps/rate s, random phase) instead of back to back, so latency is service "
        "time, not queueing. Default 0 = back to back (closed loop: latency ~ cps / calls/s)",
    )
    ap.add_argument("--connectors", type=int, default=2, help="connectors per charge point (mixed), default 2")
    ap.add_argument(
        "--procs",
        type=int,
        default=1,
        metavar="K",
        help="driver processes, default 1 (more only helps with more than 2 cores)",
    )
    ap.add_argument(
        "--ramp-rate",
        type=float,
        default=500.0,
        metavar="R",
        help="connections opened per second, all processes together, default 500",
    )
    ap.add_argument(
        "--hold-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="hold mode: heartbeat period per connection, default 10 s",
    )
    ap.add_argument(
        "--hold-status", action="store_true", help="hold mode: also send StatusNotification per connector at setup"
    )
    ap.add_argument(
        "--probe-occupancy",
        type=float,
        default=0.0,
        metavar="PER_S",
        help="also GET /api/connectors/{id}/1/occupancy this many times a second during the window "
        "(one keep-alive HTTP connection in a thread) and report its latency; default 0 = off",
    )
    ap.add_argument("--id-prefix", default="BENCH", help="charge point ids are PREFIX0001...; default BENCH")
    tg = ap.add_argument_group("target")
    tg.add_argument(
        "--url",
        metavar="WS_URL",
        help="an already running CSMS, e.g. ws://127.0.0.1:9000/ocpp (the id is appended; or put "
        "{id} in the URL). Loopback only. Default: start a fresh `csms serve`",
    )
    tg.add_argument(
        "--http-url",
        metavar="URL",
        help="with --url and --probe-occupancy: the CSMS's REST base "
        "URL (loopback); the admin token comes from the environment variable CSMS_BENCH_API_TOKEN",
    )
    tg.add_argument("--server-pid", type=int, metavar="PID", help="with --url: measure this process's CPU/RSS")
    tg.add_argument(
        "--db",
        metavar="URL",
        help="database of the server started here (default: sqlite in a temp dir), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/bench (loopback only)",
    )
    tg.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `csms serve` argument, repeatable (e.g. --server-arg=--heartbeat-interval=60)",
    )
    tg.add_argument("--server-log-level", default="WARNING", help="default WARNING")
    tg.add_argument(
        "--workdir",
        metavar="DIR",
        help="where the temp db, ports file and server.log go (default: a new temp dir, removed afterwards)",
    )
    tg.add_argument("--keep", action="store_true", help="keep the temp dir (database, server.log)")
    og = ap.add_argument_group("output")
    og.add_argument("--json", action="store_true", help="also print the result as one JSON line (last line)")
    og.add_argument("--progress", action="store_true", help="progress on stderr even for small runs")
    og.add_argument("--quiet", action="store_true", help="no progress lines")
    return ap


def _validate(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.cps <= 100_000:
        ap.error("--cps must be in 1..100000")
    if not 1 <= args.procs <= 64:
        ap.error("--procs must be in 1..64")
    if not 0 < args.duration <= 3600:
        ap.error("--duration must be in (0, 3600]")
    if not 1 <= args.connectors <= 100:
        ap.error("--connectors must be in 1..100")
    if not 0 < args.ramp_rate <= 100_000:
        ap.error("--ramp-rate must be in (0, 100000]")
    if not 0 <= args.rate <= 1_000_000:
        ap.error("--rate must be in [0, 1000000]")
    if not 0 <= args.probe_occupancy <= 1000:
        ap.error("--probe-occupancy must be in [0, 1000]")
    if args.http_url and not args.url:
        ap.error("--http-url goes with --url")
    if args.http_url:
        _check_loopback_url(args.http_url)
    if not 0.1 <= args.hold_interval <= 3600:
        ap.error("--hold-interval must be in [0.1, 3600]")
    if args.url and (args.db or args.server_arg or args.workdir):
        ap.error("--url drives a running CSMS: --db, --server-arg and --workdir are for the server started here")
    if args.server_pid is not None and not args.url:
        ap.error("--server-pid goes with --url")


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _validate(ap, args)
    try:
        import websockets  # noqa: F401
        from websockets.asyncio.client import connect  # noqa: F401
    except ImportError:
        print("loadtests.bench needs websockets >= 13: pip install -e '.[load]'", file=sys.stderr)
        return 2
    nofile = raise_nofile()
    if args.cps + 256 > nofile:
        print(f"warning: RLIMIT_NOFILE={nofile} is below connections+256; raise the hard limit", file=sys.stderr)

    server: ServerProcess | None = None
    tmp: Path | None = None
    target: dict[str, Any] = {}
    if args.url:
        _check_loopback_url(args.url)
        base = args.url.rstrip("/")
        args.url_template = base if "{id}" in base else base + "/{id}"
        server_pid = args.server_pid
        target["started"] = None
    else:
        if args.db:
            _check_loopback_db(args.db)
        if args.workdir:
            tmp = Path(args.workdir)
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="csms-bench-"))
        db_url = args.db or f"sqlite:///{tmp / 'bench.db'}"
        server = ServerProcess(db_url, tmp, list(args.server_arg), args.server_log_level)
        try:
            server.start()
        except RuntimeError as exc:
            print(f"loadtests.bench: {exc}", file=sys.stderr)
            _cleanup_dir(tmp, args, keep=True)
            return 1
        _check_loopback_url(server.ocpp)
        args.url_template = server.ocpp + "/{id}"
        server_pid = server.pid
        target.update(started="csms serve", db=db_url, pid=server.pid)
        if args.keep or args.workdir:
            target["log"] = str(server.log_path)

    rc = 0
    try:
        s_start = sample_server(server_pid)
        rss_start = proc_status_kb(server_pid, "VmRSS") if server_pid is not None else None
        probe_to = None
        if args.probe_occupancy:
            http = server.http if server is not None else args.http_url
            token = server.api_token if server is not None else os.environ.get("CSMS_BENCH_API_TOKEN", "")
            probe_to = (http, token) if http and token else None
            if probe_to is None:
                print(
                    "warning: --probe-occupancy with --url needs --http-url and CSMS_BENCH_API_TOKEN (an admin "
                    "token); not probing",
                    file=sys.stderr,
                )
        parts = run_driver(args, server_pid, probe_to)
        s_end = sample_server(server_pid)
        hwm = proc_status_kb(server_pid, "VmHWM") if server_pid is not None else None
        res = merge(parts, args)
        add_server_figures(res, server_pid, s_start, s_end, hwm, rss_start)
        if server is not None:
            if not server.alive():
                res.setdefault("fatal", []).append(f"csms serve exited early (rc={server.proc.returncode})")
            target["returncode"] = server.stop()
            target["log_problems"] = server.log_problems()
        if getattr(args, "probe", None) is not None:
            args.probe.join(timeout=CALL_TIMEOUT + 5)
            res["occupancy_probe_ms"] = args.probe.figures()
        res["target"] = target
        res["ok"] = (
            res["errors_total"] == 0
            and res["connections"]["failed"] == 0
            and res["connections"]["dropped"] == 0
            and not res["ramp"]["setup_errors"]
            and "fatal" not in res
        )
        print(human(res), flush=True)
        if args.json:
            print(json.dumps(res, separators=(",", ":")), flush=True)
        if "fatal" in res or res["connections"]["opened"] == 0:
            rc = 1
            if server is not None:
                print(f"--- server log tail ({server.log_path}) ---\n{server.log_tail()}", file=sys.stderr)
    except KeyboardInterrupt:
        rc = 130
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            _cleanup_dir(tmp, args, keep=args.keep or rc not in (0, 130) or bool(args.workdir))
    return rc


def _cleanup_dir(tmp: Path, args: argparse.Namespace, *, keep: bool) -> None:
    if keep:
        if not args.quiet:
            print(f"[bench] kept {tmp}", file=sys.stderr)
        return
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
