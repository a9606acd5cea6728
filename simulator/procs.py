"""`unstuck-sim run --procs N`: one seeded fleet driven by N processes, one trace, one summary.

One trio process drives about as many charge points as one core can; past that
the fleet is split. The parent derives the fleet from the seed as one process
would and starts N children (`python -m simulator.procs`, each in its own
session so a terminal's Ctrl-C reaches only the parent). Each child builds only
its shard (`Shard`: place mod N) and talks JSON lines with the parent:

    parent -> child (stdin)    {"job": ...}   {"go": <epoch, unix s>}   {"stop": true} (or EOF)
    child -> parent (stdout)   {"ready": n, "digest": ..., "stats": ...}   {"stats": ...} each second   {"final": ...}

The parent plans the whole fleet from the seed (`plan_fleet`: ids, places, start
moments, random streams) and checks each child's digest of the shard it built
against its own. It starts the clock only when every child is ready (time 0 is the same
wall-clock moment in each), stops them at the end of `--duration` or on
Ctrl-C/SIGTERM, sums their stats, and merges their traces in time order into the
one trace a single process writes. A child that exits without its final report
fails the run; one that does not stop within `STOP_GRACE` s is killed. A child
whose parent vanished (stdin at EOF) stops by itself, so none is left behind.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import trio

from .clock import SimClock
from .fleet import Fleet
from .fleetspec import FleetSpec
from .shard import Shard, merge_trace_lines, plan_digest, plan_fleet, stats_to_mapping, sum_stats
from .stats import Stats
from .trace import TRACE_VERSION, TraceWriter

__all__ = ["ShardedRun", "run_sharded", "raise_fd_limit", "process_usage"]

READY_TIMEOUT = 600.0  # s to build a shard (20,000 charge points take a while on a busy core)
START_MARGIN = 0.2  # s between "go" and time 0, so every child hears it before then
STOP_GRACE = 60.0  # s a child may take to close its WebSockets and write its last report


def raise_fd_limit() -> None:
    """One socket per charge point: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


class _Lines:
    """JSON lines from a trio byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            nl = self._buf.find(b"\n")
            while nl < 0:
                chunk = await self._stream.receive_some(1 << 16)
                if not chunk:
                    return
                self._buf += chunk
                nl = self._buf.find(b"\n")
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if line.strip():
                yield json.loads(line)


def _dump(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


# ---------------------------------------------------------------------------------------------- parent


@dataclass
class _Child:
    shard: Shard
    proc: trio.Process
    ready: trio.Event = field(default_factory=trio.Event)
    stats: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    charge_points: int = 0
    killed_late: bool = False
    killed_on_request: bool = False  # a second Ctrl-C/SIGTERM: not a failure of the child
    planned: str = ""  # the parent's digest of this shard's plans
    mismatch: bool = False  # the child built another shard than the one planned

    def death(self) -> str | None:
        """Why this child failed, or None if it ended as asked."""
        code = self.proc.returncode
        if self.killed_on_request:
            return None
        if self.mismatch:
            return "built other charge points than the parent planned for it (a different version of the simulator?)"
        if self.killed_late:
            return f"did not stop within {STOP_GRACE:.0f} s and was killed"
        if self.final is not None and code == 0:
            return None
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return how + ("" if self.final is None else " after its last report") + " (its stderr is above)"


@dataclass
class ShardedRun:
    """What the parent hands back: the summed stats and how each process did."""

    stats: Stats
    elapsed: float
    exit_code: int
    failures: list[str]
    usage: list[dict[str, Any]]  # per child: pid, shard, charge_points, cpu, rss_mb


class _Parent:
    def __init__(self, spec: FleetSpec, procs: int, job: dict[str, Any], progress: float, err: TextIO) -> None:
        self.spec = spec
        self.procs = procs
        self.job = job
        self.progress = progress
        self.err = err
        self.children: list[_Child] = []
        self.go = trio.Event()
        self.stopping = trio.Event()
        self.epoch = 0.0
        self.interrupted = False

    def stats(self) -> Stats:
        return sum_stats(c.stats for c in self.children)

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._signals)
                async with trio.open_nursery() as tending:
                    for k in range(self.procs):
                        shard = Shard(k, self.procs)
                        proc = await trio.lowlevel.open_process(
                            [sys.executable, "-m", "simulator.procs"],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            start_new_session=True,
                        )
                        child = _Child(shard, proc, planned=plan_digest(plan_fleet(self.spec, shard)))
                        self.children.append(child)
                        tending.start_soon(self._tend, child)
                    tending.start_soon(self._start_clock)
                outer.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for child in self.children:
                    await _reap(child)

    async def _start_clock(self) -> None:
        with trio.move_on_after(READY_TIMEOUT):
            for child in self.children:
                await _first(child.ready, self.stopping)
        if self.stopping.is_set():
            return
        if not all(c.ready.is_set() for c in self.children):
            self.err.write(f"unstuck-sim: the processes were not ready within {READY_TIMEOUT:.0f} s\n")
            self.stopping.set()
            return
        self.epoch = time.time() + START_MARGIN
        self.go.set()
        async with trio.open_nursery() as nursery:
            if self.progress > 0:
                nursery.start_soon(self._progress)
            duration = self.job.get("duration")
            deadline = trio.current_time() + (self.epoch + float(duration) - time.time()) if duration else float("inf")
            with trio.move_on_at(deadline):
                await self.stopping.wait()
            self.stopping.set()
            nursery.cancel_scope.cancel()

    async def _tend(self, child: _Child) -> None:
        """One child from its job to its exit; a failure stops the others."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._command, child)
            assert child.proc.stdout is not None
            async for message in _Lines(child.proc.stdout):
                if "ready" in message:
                    child.charge_points = message["ready"]
                    child.stats = message["stats"]
                    if message.get("digest") != child.planned:
                        child.mismatch = True
                        self.stopping.set()
                    child.ready.set()
                elif "stats" in message:
                    child.stats = message["stats"]
                elif "final" in message:
                    child.final = message
                    child.stats = message["final"]
            await child.proc.wait()
            nursery.cancel_scope.cancel()
        if child.death() is not None:
            self.stopping.set()

    async def _command(self, child: _Child) -> None:
        """Send the job, then "go", then "stop"; give up on a child that stopped listening."""
        stdin = child.proc.stdin
        assert stdin is not None
        try:
            await stdin.send_all(_dump({"job": self.job, "shard": [child.shard.index, child.shard.count]}))
            await _first(self.go, self.stopping)
            if not self.stopping.is_set():
                await stdin.send_all(_dump({"go": self.epoch}))
            await self.stopping.wait()
            await stdin.send_all(_dump({"stop": True}))
            await stdin.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with trio.move_on_after(STOP_GRACE):
            await child.proc.wait()
            return
        child.killed_late = True
        child.proc.kill()

    async def _signals(self) -> None:
        """Ctrl-C or SIGTERM: stop every child cleanly; a second one kills them."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self.interrupted:
                    self.interrupted = True
                    self.err.write(f"\nunstuck-sim: {signal.Signals(signum).name}: stopping {self.procs} processes\n")
                    self.stopping.set()
                    continue
                self.err.write(f"\nunstuck-sim: {signal.Signals(signum).name} again: killing the processes\n")
                for child in self.children:
                    if child.proc.returncode is None:
                        child.killed_on_request = True
                        child.proc.kill()

    async def _progress(self) -> None:
        tty = self.err.isatty()
        while True:
            await trio.sleep(self.progress)
            line = self.stats().line(time.time() - self.epoch)
            self.err.write(("\r" + line + "   ") if tty else (line + "\n"))
            self.err.flush()


async def _first(*events: trio.Event) -> None:
    """Until any of the events is set."""
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)


async def _reap(child: _Child) -> None:
    """No orphans: a child still running when the parent leaves is killed and waited for."""
    if child.proc.returncode is None:
        child.proc.kill()
        await child.proc.wait()


def _shard_trace(trace: str, shard: Shard) -> Path:
    return Path(f"{trace}.shard{shard.index + 1}of{shard.count}")


def _merge_traces(trace: str, procs: int, header: dict[str, Any]) -> None:
    """The one trace: the parent's header, then every shard's records in time order."""
    writer = TraceWriter(trace)
    writer.write(None, "header", **header)
    writer.close()
    parts = [_shard_trace(trace, Shard(k, procs)) for k in range(procs)]
    files = [open(p, encoding="utf-8") if p.exists() else open(os.devnull, encoding="utf-8") for p in parts]  # noqa: SIM115
    try:
        with open(trace, "a", encoding="utf-8", buffering=1 << 20) as out:
            out.writelines(merge_trace_lines(files))
    finally:
        for f in files:
            f.close()
    for p in parts:
        p.unlink(missing_ok=True)


def run_sharded(
    spec: FleetSpec,
    csms: str,
    *,
    procs: int,
    duration: float | None,
    trace: str | None,
    frames: bool,
    password: str | None,
    ca_file: str | None,
    progress: float,
    run_info: dict[str, Any],
    err: TextIO,
) -> ShardedRun:
    """Run `spec` over `procs` child processes (blocking); merge the trace; sum the stats."""
    job = {
        "spec": spec.to_mapping(),
        "csms": csms,
        "duration": duration,
        "trace": trace,
        "frames": frames,
        # The children report more often than the parent prints, so a progress line is at most ~1 s old.
        "password": password,
        "ca_file": ca_file,
        "report_every": min(progress, 1.0) if progress > 0 else 0.0,
    }
    parent = _Parent(spec, procs, job, progress, err)
    started = time.time()
    trio.run(parent.run)
    if progress > 0 and err.isatty():
        err.write("\n")
    failures = [
        f"process {c.shard} (pid {c.proc.pid}) {why}" for c in parent.children if (why := c.death()) is not None
    ]
    if trace:
        epoch = parent.epoch or started
        _merge_traces(
            trace,
            procs,
            {
                "version": TRACE_VERSION,
                "epoch": SimClock(datetime.fromtimestamp(epoch, UTC), start=0.0).iso(0.0),
                "csms": csms.rstrip("/"),
                "spec": spec.to_mapping(),
                "run": {**run_info, "procs": procs},
            },
        )
    finals = [c.final for c in parent.children if c.final is not None]
    return ShardedRun(
        stats=parent.stats(),
        elapsed=max((f["elapsed"] for f in finals), default=0.0),
        exit_code=1 if failures else (130 if parent.interrupted else 0),
        failures=failures,
        usage=[
            {
                "pid": c.proc.pid,
                "shard": str(c.shard),
                "charge_points": c.charge_points,
                **({k: c.final[k] for k in ("cpu", "rss_mb")} if c.final else {}),
            }
            for c in parent.children
        ],
    )


# ---------------------------------------------------------------------------------------------- child


async def _child(proto: TextIO) -> int:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    messages = _Lines(stdin).__aiter__()
    try:
        first = await messages.__anext__()
    except StopAsyncIteration:
        return 1
    job, shard = first["job"], Shard(*first["shard"])

    def send(message: dict[str, Any]) -> bool:
        """False when the parent is gone (the pipe is broken): the caller stops the run."""
        try:
            proto.write(json.dumps(message, separators=(",", ":")) + "\n")
            proto.flush()
        except BrokenPipeError:
            return False
        return True

    trace = TraceWriter(_shard_trace(job["trace"], shard), frames=job["frames"]) if job["trace"] else TraceWriter()
    context = ssl.create_default_context(cafile=job["ca_file"]) if job["ca_file"] else None
    fleet = Fleet(
        FleetSpec.from_mapping(job["spec"]),
        job["csms"],
        trace=trace,
        password=job["password"],
        ssl_context=context,
        shard=shard,
    )
    send({"ready": len(fleet), "digest": plan_digest(fleet.plans), "stats": stats_to_mapping(fleet.stats)})
    try:
        go = await messages.__anext__()
    except StopAsyncIteration:
        trace.close()
        return 1
    if "go" not in go:  # stopped before the start
        trace.close()
        send(
            {
                "final": stats_to_mapping(fleet.stats),
                "elapsed": 0.0,
                "cpu": process_usage()[0],
                "rss_mb": process_usage()[1],
            }
        )
        return 0
    fleet.epoch = datetime.fromtimestamp(go["go"], UTC)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fleet.run)
            nursery.start_soon(_until_told_to_stop, messages, nursery.cancel_scope)
            nursery.start_soon(_until_signalled, nursery.cancel_scope)
            every = float(job.get("report_every") or 0)
            if every > 0:
                nursery.start_soon(_report, fleet, every, send, nursery.cancel_scope)
    finally:
        trace.close()
    cpu, rss = process_usage()
    send({"final": stats_to_mapping(fleet.stats), "elapsed": fleet.elapsed, "cpu": cpu, "rss_mb": rss})
    return 0


async def _until_told_to_stop(messages: AsyncIterator[dict[str, Any]], scope: trio.CancelScope) -> None:
    """A "stop" line, or the parent gone (EOF): end the run."""
    async for message in messages:
        if message.get("stop"):
            break
    scope.cancel()


async def _until_signalled(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()


async def _report(fleet: Fleet, every: float, send: Callable[[dict[str, Any]], bool], scope: trio.CancelScope) -> None:
    while True:
        await trio.sleep(every)
        if not send({"stats": stats_to_mapping(fleet.stats)}):
            scope.cancel()  # the parent is gone: stop as if told to
            return


def child_main(argv: Sequence[str] | None = None) -> int:
    """A shard process: the protocol on the real stdout; anything else printed goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    raise_fd_limit()
    try:
        return trio.run(_child, proto)
    finally:
        try:
            proto.close()
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    sys.exit(child_main())
