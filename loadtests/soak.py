"""A memory soak: `csms serve` for hours under a faulty fleet, RSS and tracemalloc sampled as it goes.

    python -m loadtests.soak --minutes 120 --out reports/soak/sqlite               # fresh SQLite file in /tmp
    python -m loadtests.soak --minutes 120 --out reports/soak/pg \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test                      # a private schema, dropped after
    python -m loadtests.soak --minutes 15 --charge-points 50 --no-tracemalloc       # RSS only, no tracing overhead

Why in process: tracemalloc can only look at the process it runs in, and the product must not
carry a hook for it. So this process *is* the CSMS: it builds `Settings` from `csms serve`'s own
command line (`csms.cli`), runs `csms.server.serve` with the same GC tuning as `run_until_signal`,
and beside it a harness task that every `--sample-seconds` writes one CSV row: minutes, sessions
started and stopped (counted from the CSMS's `transaction.started` / `.stopped` log records), VmRSS,
VmHWM, open file descriptors, connected charge points, SQLite's own heap (`sqlite3_memory_used`, where each
connection's page cache lives), glibc malloc's blocks in use and the free ones it keeps (`mallinfo2`: native
memory, and the slack between it), the bytes tracemalloc traces (Python's heap, exact: not blurred by
malloc fragmentation) and tracemalloc's own overhead (so RSS minus it is the product's).

The fleet is `unstuck-sim` in a child process (its memory is not measured): `--charge-points` with
two connectors each, short visits (`--session`, `--idle`) so that many sessions complete, and
`loadtests.run.DEFAULT_FAULTS` (the faults a CSMS must heal by itself). The CSMS runs with
`loadtests.run.LOAD_TIMINGS` (maintenance every 2 s), so every healing path runs thousands of times.

Snapshots without disturbing what is measured: a snapshot is a Python list of every traced block
(~100 MB at a million blocks), and allocating it inside the CSMS would raise RSS for good (freed
small objects stay in the allocator's arenas). So each snapshot is taken in a `fork()` of this
process: the child inherits the traces copy-on-write, takes the snapshot, compares it with the one
written after `--warmup-minutes` and writes the top growth by traceback to OUT/tracemalloc.txt (and
keeps the last as OUT/tracemalloc-final.txt), then exits; the parent's RSS is untouched.

At the end OUT/summary.txt (and .json): RSS and traced bytes after warm-up and at the end, growth
per session (least squares over the samples after warm-up), the fds, and the top growth sites. The
SQLite file, the CSMS's log (INFO, stderr of this process) and the fleet's log stay in the work
folder (`--workdir`, default a fresh one in /tmp), not in OUT: OUT holds small files only.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Sample", "Growth", "growth", "main"]

SITES = 25  # growth sites written per snapshot


@dataclass(frozen=True)
class Sample:
    """One row of OUT/samples.csv."""

    minutes: float
    started: int  # transactions started so far (the CSMS's transaction.started log lines)
    stopped: int  # StopTransactions recorded so far (transaction.stopped): the sessions completed
    connected: int
    rss_kb: int
    hwm_kb: int
    fds: int
    traced_kb: int  # bytes of live blocks tracemalloc traces (0 without tracing)
    tracing_kb: int  # tracemalloc's own tables, part of RSS (0 without tracing)
    sqlite_kb: int = 0  # SQLite's own heap (sqlite3_memory_used: page caches, statements), outside tracemalloc
    malloc_used_kb: int = 0  # glibc malloc's blocks in use, all arenas and mmapped ones (SQLite's heap is in it)
    malloc_free_kb: int = 0  # free blocks malloc keeps in its arenas: slack that RSS counts, not a leak

    @property
    def product_rss_kb(self) -> int:
        return self.rss_kb - self.tracing_kb


@dataclass(frozen=True)
class Growth:
    """How a figure moved after warm-up: first and last value, and the least-squares slope per session."""

    at_warmup: float
    at_end: float
    sessions: int
    per_session_kb: float  # slope of value (kB) over sessions stopped
    per_hour_kb: float


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def growth(samples: Sequence[Sample], warmup_minutes: float, field: str) -> Growth:
    """The growth of `field` (a Sample attribute in kB) over the samples from the warm-up on. Pure."""
    after = [s for s in samples if s.minutes >= warmup_minutes] or list(samples[-1:])
    values = [float(getattr(s, field)) for s in after]
    sessions = [float(s.stopped) for s in after]
    hours = [s.minutes / 60 for s in after]
    return Growth(
        at_warmup=values[0] if values else 0.0,
        at_end=values[-1] if values else 0.0,
        sessions=int(sessions[-1] - sessions[0]) if sessions else 0,
        per_session_kb=_slope(sessions, values),
        per_hour_kb=_slope(hours, values),
    )


def _proc_status() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in kB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class _TransactionCounter(logging.Handler):
    """Counts the CSMS's `transaction.started` / `transaction.stopped` log lines: its public record of
    each (it has no counter of them), read without a hook in the product."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started = 0
        self.stopped = 0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("transaction.started"):
            self.started += 1
        elif msg.startswith("transaction.stopped"):
            self.stopped += 1


COUNTER = _TransactionCounter()


def _sqlite_heap_kb() -> int:
    """SQLite's heap in this process (every connection's page cache is in it), 0 where the library is not
    loadable: tracemalloc sees only Python's allocations, and this is the largest native one on SQLite."""
    global _SQLITE
    if _SQLITE is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
            lib.sqlite3_memory_used.restype = ctypes.c_int64
            _SQLITE = lib.sqlite3_memory_used
        except (OSError, AttributeError):
            _SQLITE = lambda: 0  # noqa: E731
    return int(_SQLITE()) // 1024


_SQLITE: Any = None


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _malloc_kb() -> tuple[int, int]:
    """(in use, free but kept) by glibc's malloc over all its arenas, in kB; (0, 0) elsewhere. Python's small
    objects live in pymalloc's own mmapped arenas, not here: what grows here is native (SQLite, OpenSSL, C
    extensions) or malloc's slack between them."""
    global _MALLINFO2
    if _MALLINFO2 is None:
        try:
            fn = ctypes.CDLL(None).mallinfo2
            fn.restype = _MallInfo2
            _MALLINFO2 = fn
        except (OSError, AttributeError):
            _MALLINFO2 = False
    if not _MALLINFO2:
        return 0, 0
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) // 1024, info.fordblks // 1024


_MALLINFO2: Any = None


def _connected() -> int:
    from prometheus_client import REGISTRY

    return int(REGISTRY.get_sample_value("csms_connected_charge_points") or 0)


def _sample(t0: float) -> Sample:
    rss, hwm = _proc_status()
    used, free = _malloc_kb()
    tracing = tracemalloc.is_tracing()
    return Sample(
        minutes=round((time.monotonic() - t0) / 60, 2),
        started=COUNTER.started,
        stopped=COUNTER.stopped,
        connected=_connected(),
        rss_kb=rss,
        hwm_kb=hwm,
        fds=len(os.listdir("/proc/self/fd")),
        traced_kb=tracemalloc.get_traced_memory()[0] // 1024 if tracing else 0,
        tracing_kb=tracemalloc.get_tracemalloc_memory() // 1024 if tracing else 0,
        sqlite_kb=_sqlite_heap_kb(),
        malloc_used_kb=used,
        malloc_free_kb=free,
    )


# ---------------------------------------------------------------- snapshots, in a forked child


def _harness(tb: tracemalloc.Traceback) -> bool:
    """The harness's own allocations and tracemalloc's (left out of the report; `filter_traces` over a
    million traces takes tens of seconds)."""
    return tb[0].filename in (__file__, tracemalloc.__file__)


def _dump_baseline(path: Path) -> None:
    """In the forked child: the snapshot every later one is compared with."""
    tmp = path.with_suffix(".tmp")
    tracemalloc.take_snapshot().dump(str(tmp))
    tmp.replace(path)


def _report_growth(baseline: Path, out: Path, minutes: float, frames: int) -> None:
    """In the forked child: snapshot, compare with the baseline dump, write the top growth sites."""
    snap = tracemalloc.take_snapshot()
    before = tracemalloc.Snapshot.load(str(baseline))
    lines = [f"tracemalloc growth at {minutes:.1f} min against the snapshot after warm-up (top {SITES} by size)"]
    for key in ("lineno", "traceback"):
        lines.append(f"\n== grouped by {key} ==")
        stats = [st for st in snap.compare_to(before, key) if not _harness(st.traceback)]
        for stat in stats[:SITES]:
            lines.append(
                f"{stat.size_diff / 1024:+10.1f} kB {stat.count_diff:+8d} blocks  (now {stat.size / 1024:.1f} kB)"
            )
            shown = stat.traceback.format(limit=frames if key == "traceback" else 1, most_recent_first=True)
            lines += ["      " + line.strip() for line in shown if line.strip()]
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)


def _in_child(work: Any) -> int:
    """Run `work()` in a fork of this process and return the child's pid; the parent's memory is untouched."""
    pid = os.fork()
    if pid == 0:
        # No collection in the child: a finaliser of a shared socket (a database connection's) could
        # speak on the parent's connection. The child only allocates and drops its own objects.
        gc.disable()
        code = 0
        try:
            work()
        except BaseException as exc:  # the child must never return into the parent's trio loop
            sys.stderr.write(f"soak: snapshot child failed: {exc!r}\n")
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


async def _wait_child(pid: int, timeout: float) -> None:
    import trio

    with trio.move_on_after(timeout):
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks)
            if done:
                return
            await trio.sleep(0.5)
    print(f"soak: snapshot child {pid} took over {timeout:.0f} s; killed", flush=True)
    os.kill(pid, 9)
    os.waitpid(pid, 0)  # noqa: ASYNC222 (killed: reaped at once)


class _Busy:
    """Whether a snapshot child is still working (one at a time)."""

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def clear(self) -> None:
        self._on = False

    def is_set(self) -> bool:
        return self._on


async def _snapshot_done(pid: int, what: str, busy: _Busy) -> None:
    try:
        await _wait_child(pid, 1800)
        print(f"soak: {what}", flush=True)
    finally:
        busy.clear()


# ---------------------------------------------------------------- the run


def _fleet_file(path: Path, args: argparse.Namespace) -> None:
    from loadtests.run import DEFAULT_FAULTS

    faults = []
    for spec in DEFAULT_FAULTS:
        name_rate, *rest = spec.split(",")
        name, rate = name_rate.split("=")
        keys = "".join(f"\n{k} = {_toml(v)}" for k, v in (item.split("=") for item in rest))
        faults.append(f'[[fault]]\nname = "{name}"\nprobability = {float(rate)}{keys}\n')
    session, idle = (tuple(float(x) for x in v.split(":")) for v in (args.session, args.idle))
    path.write_text(
        f"seed = {args.seed}\nramp = 20\n\n[driver]\nfirst_within = 30\nsession = [{session[0]}, {session[1]}]\n"
        f"idle = [{idle[0]}, {idle[1]}]\n\n"
        + "\n".join(faults)
        + f'\n[[group]]\nprefix = "SOAK"\ncount = {args.charge_points}\nconnectors = 2\n',
        encoding="utf-8",
    )


def _toml(value: str) -> str:
    if value in ("true", "false"):
        return value
    try:
        return str(float(value))
    except ValueError:
        return json.dumps(value)


def _pg_schema(base: str) -> tuple[str, str]:
    """A private schema (as tests/conftest.py isolates PostgreSQL tests): the URL that uses it, its name."""
    from sqlalchemy import create_engine, text

    schema = "soak_" + uuid.uuid4().hex[:10]
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


async def _soak(args: argparse.Namespace, db_url: str, workdir: Path, out: Path) -> list[Sample]:
    import trio

    from csms.cli import build_parser, settings_from_args
    from csms.server import serve, tune_gc
    from loadtests.run import LOAD_TIMINGS
    from scenarios.embedded import lab_args

    serve_args = [
        "serve",
        *lab_args(db_url),
        *LOAD_TIMINGS.serve_args(),
        *args.csms_arg,
    ]
    settings = settings_from_args(build_parser().parse_args(serve_args))
    tune_gc()  # as run_until_signal does for `csms serve`
    fleet = workdir / "fleet.toml"
    _fleet_file(fleet, args)
    t0 = time.monotonic()
    samples: list[Sample] = []
    baseline = workdir / "tracemalloc-warmup.snap"
    stop = trio.Event()
    busy = _Busy()
    with (out / "samples.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*Sample.__dataclass_fields__, "product_rss_kb"])
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(lambda task_status: serve(settings, shutdown=stop, task_status=task_status))
            sim_log = (workdir / "fleet.log").open("w", encoding="utf-8")
            sim = subprocess.Popen(  # noqa: ASYNC220 (starts at once; polled, never awaited)
                [
                    str(Path(sys.executable).with_name("unstuck-sim")),
                    "run",
                    "--csms",
                    addresses.ocpp,
                    "--fleet",
                    str(fleet),
                    "--progress",
                    "60",
                ],
                stdout=sim_log,
                stderr=subprocess.STDOUT,
            )
            print(f"soak: CSMS at {addresses.ocpp} ({db_url.split('?')[0]}); fleet pid {sim.pid}", flush=True)
            try:
                next_snapshot = args.warmup_minutes
                while (minutes := (time.monotonic() - t0) / 60) < args.minutes:
                    await trio.sleep(min(args.sample_seconds, max(0.0, (args.minutes - minutes) * 60)))
                    s = _sample(t0)
                    samples.append(s)
                    writer.writerow([*asdict(s).values(), s.product_rss_kb])
                    fh.flush()
                    print(
                        f"soak: {s.minutes:6.1f} min  sessions {s.stopped:7d}  connected {s.connected:4d}  "
                        f"RSS {s.rss_kb / 1024:6.1f} MB (product {s.product_rss_kb / 1024:6.1f})  "
                        f"traced {s.traced_kb / 1024:6.1f} MB  sqlite {s.sqlite_kb / 1024:5.1f} MB  "
                        f"malloc {s.malloc_used_kb / 1024:5.1f} + free {s.malloc_free_kb / 1024:5.1f} MB  fds {s.fds}",
                        flush=True,
                    )
                    if sim.poll() is not None:
                        print(f"soak: the fleet ended early (exit {sim.returncode}); see {workdir}/fleet.log")
                        break
                    if tracemalloc.is_tracing() and s.minutes >= next_snapshot and not busy.is_set():
                        gc.collect()  # retained, not garbage waiting for a full collection
                        if not baseline.exists():
                            pid = _in_child(lambda: _dump_baseline(baseline))
                            what = f"warm-up snapshot at {s.minutes:.1f} min"
                        else:
                            pid = _in_child(
                                lambda m=s.minutes: _report_growth(baseline, out / "tracemalloc.txt", m, args.frames)
                            )
                            what = f"growth sites at {s.minutes:.1f} min in {out}/tracemalloc.txt"
                        busy.set()
                        nursery.start_soon(_snapshot_done, pid, what, busy)
                        next_snapshot = s.minutes + args.snapshot_minutes
            finally:
                sim.send_signal(2)  # SIGINT: the fleet prints its summary
                try:
                    sim.wait(30)
                except subprocess.TimeoutExpired:
                    sim.kill()
                sim_log.close()
                while busy.is_set():
                    await trio.sleep(1)
                if tracemalloc.is_tracing() and baseline.exists():
                    gc.collect()
                    pid = _in_child(
                        lambda: _report_growth(
                            baseline,
                            out / "tracemalloc-final.txt",
                            (time.monotonic() - t0) / 60,
                            args.frames,
                        )
                    )
                    await _wait_child(pid, 900)
                stop.set()
    return samples


def _summary(samples: Sequence[Sample], args: argparse.Namespace, db: str, out: Path) -> str:
    if not samples:
        return "no samples\n"
    rss = growth(samples, args.warmup_minutes, "rss_kb")
    product = growth(samples, args.warmup_minutes, "product_rss_kb")
    traced = growth(samples, args.warmup_minutes, "traced_kb")
    last = samples[-1]
    warm = next((s for s in samples if s.minutes >= args.warmup_minutes), samples[-1])
    lines = [
        f"memory soak of csms serve on {db}: {last.minutes:.1f} min, {args.charge_points} charge points x 2 connectors",
        f"sessions: {last.started} started, {last.stopped} stopped ({last.stopped - warm.stopped} after the "
        f"{args.warmup_minutes:g} min warm-up)",
        f"fds: {warm.fds} after warm-up, {last.fds} at the end (min {min(s.fds for s in samples)}, "
        f"max {max(s.fds for s in samples)})",
    ]
    sqlite = growth(samples, args.warmup_minutes, "sqlite_kb")
    shown = [("VmRSS", rss), ("VmRSS - tracemalloc tables", product), ("traced Python heap", traced)]
    if last.sqlite_kb:
        shown.append(("SQLite heap (page caches)", sqlite))
    if last.malloc_used_kb:
        shown.append(
            ("malloc in use (native, SQLite's included)", growth(samples, args.warmup_minutes, "malloc_used_kb"))
        )
        shown.append(("malloc free but kept (slack)", growth(samples, args.warmup_minutes, "malloc_free_kb")))
    for name, g in shown:
        lines.append(
            f"{name}: {g.at_warmup / 1024:.1f} MB after warm-up -> {g.at_end / 1024:.1f} MB at the end; "
            f"slope {g.per_session_kb:+.3f} kB/session, {g.per_hour_kb / 1024:+.2f} MB/hour"
        )
    lines.append(f"VmHWM at the end: {last.hwm_kb / 1024:.1f} MB")
    final = out / "tracemalloc-final.txt"
    if final.exists():
        lines += ["", *final.read_text(encoding="utf-8").splitlines()[: 3 + 4 * 10]]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=120.0, help="how long (default %(default)s)")
    p.add_argument(
        "--warmup-minutes",
        type=float,
        default=15.0,
        help="growth is measured from here: caches, pools and allocator arenas fill first (default %(default)s)",
    )
    p.add_argument(
        "--db",
        help="database URL (default: a fresh SQLite file in the work folder); a PostgreSQL "
        "URL gets a private schema, dropped at the end",
    )
    p.add_argument("--charge-points", type=int, default=150, help="fleet size, 2 connectors each (default %(default)s)")
    p.add_argument("--session", default="5:20", help="a car's stay, MIN:MAX s (default %(default)s)")
    p.add_argument("--idle", default="2:10", help="a connector's idle gap, MIN:MAX s (default %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sample-seconds", type=float, default=60.0, help="one CSV row every (default %(default)s)")
    p.add_argument("--snapshot-minutes", type=float, default=20.0, help="growth sites every (default %(default)s)")
    p.add_argument("--frames", type=int, default=8, help="tracemalloc frames per traceback (default %(default)s)")
    p.add_argument("--no-tracemalloc", action="store_true", help="RSS and counters only (no tracing overhead)")
    p.add_argument(
        "--out", type=Path, default=Path("reports/soak/run"), help="small result files (default %(default)s)"
    )
    p.add_argument("--workdir", type=Path, help="SQLite file, CSMS and fleet logs (default: a fresh /tmp folder)")
    p.add_argument(
        "--csms-arg", action="append", default=[], metavar="ARG", help="one more `csms serve` argument (repeatable)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import trio

    import csms.cli
    import csms.server
    import loadtests.run
    from csms.logs import setup_logging

    del csms, loadtests  # imported before tracing starts: import-time blocks are not growth (and cost minutes)
    if not args.no_tracemalloc and not tracemalloc.is_tracing():
        tracemalloc.start(args.frames)

    setup_logging("INFO")
    logging.getLogger("csms").addHandler(COUNTER)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    schema = None
    base = args.db
    if base is None:
        db_url = f"sqlite:///{workdir / 'csms.db'}"
    elif base.startswith("postgresql"):
        db_url, schema = _pg_schema(base)
    else:
        db_url = base
    shown = db_url.split("?")[0] + (f" (schema {schema})" if schema else "")
    print(f"soak: work folder {workdir}, results in {out}, database {shown}", flush=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        samples = trio.run(_soak, args, db_url, workdir, out)
    finally:
        if schema is not None:
            _drop_schema(base, schema)
    text = _summary(samples, args, shown, out)
    text = f"started {started}, command: python -m loadtests.soak {' '.join(argv or sys.argv[1:])}\n" + text
    (out / "summary.txt").write_text(text, encoding="utf-8")
    summary = {
        "started": started,
        "db": shown,
        "minutes": samples[-1].minutes if samples else 0,
        "sessions": samples[-1].stopped if samples else 0,
        **{
            f: asdict(growth(samples, args.warmup_minutes, f))
            for f in ("rss_kb", "product_rss_kb", "traced_kb", "sqlite_kb", "malloc_used_kb", "malloc_free_kb", "fds")
            if samples
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
